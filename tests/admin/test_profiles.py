"""/boot/v1/profiles and /boot/v1/effective/{id}/profile: profiles written through the API (ties refused at
write time, nothing changed), labels on components, the explanation, and what a running boot path serves."""

import asyncio
import time

import httpx

from tests.helpers.api import create, problem_of
from tests.helpers.tokens import token_for

NODES = "/hsm/v2/State/Components"
PROFILES = "/boot/v1/profiles"


def node(node_id, mac, **spec):
    return {"metadata": {"id": node_id}, "spec": {"type": "Node", "state": "Ready", "role": "Compute",
                                                  "networkInterfaces": [{"macAddr": mac}], **spec}}


def profile(profile_id, selector, **spec):
    return {"metadata": {"id": profile_id}, "spec": {"selector": selector, **spec}}


async def test_labels_are_validated_and_kept(api, conn):
    problem = problem_of(await api.post(NODES, json=node("n1", "aa:00:00:00:00:01", labels={"Bad Key": "x"})), 422)
    assert problem["errors"][0]["field"] == "$.spec.labels.Bad Key"
    problem_of(await api.post(NODES, json=node("n1", "aa:00:00:00:00:01", labels={"gpu": "a b"})), 422)
    problem_of(await api.post(NODES, json=node("n1", "aa:00:00:00:00:01",
                                               labels={f"k{i}": "v" for i in range(33)})), 422)
    problem_of(await api.post(NODES, json=node("n1", "aa:00:00:00:00:01", labels={"gpu": "x" * 129})), 422)
    assert await conn.fetchval("SELECT count(*) FROM smd.components") == 0
    created = await create(api, NODES, node("n1", "aa:00:00:00:00:01", labels={"gpu": "a100", "tier": "prod"}))
    assert created["spec"]["labels"] == {"gpu": "a100", "tier": "prod"}
    patched = await api.patch(f"{NODES}/n1", json={"spec": {"labels": {"tier": None}}},
                              headers={"Content-Type": "application/merge-patch+json"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["spec"]["labels"] == {"gpu": "a100"}
    assert await conn.fetchval("SELECT labels FROM smd.components WHERE id = 'n1'") == {"gpu": "a100"}


async def test_ties_are_refused_when_written_and_explained(api, conn):
    await create(api, NODES, node("n1", "aa:00:00:00:00:01", labels={"gpu": "a100"}))
    await create(api, "/hsm/v2/groups", {"spec": {"name": "g1", "members": ["n1"]}})
    await create(api, PROFILES, profile("compute", {"role": "Compute"}, kernel="http://img/compute"))
    await create(api, PROFILES, profile("gpu", {"role": "Compute", "labels": {"gpu": "a100"}},
                                        kernel="http://img/gpu"))
    # Same weight (2) as `gpu`, and a node could be both: refused, and nothing is written.
    before = await conn.fetchval("SELECT count(*) FROM events.outbox")
    tie = problem_of(await api.post(PROFILES, json=profile("g1", {"groups": ["g1"], "arch": "amd64"},
                                                           kernel="http://img/g1")), 409)
    assert "'gpu'" in tie["detail"]
    assert await conn.fetchval("SELECT count(*) FROM bss.profiles") == 2
    assert await conn.fetchval("SELECT count(*) FROM events.outbox") == before
    # A different role cannot be on the same node: no tie.  Changing `compute` into a tie is refused too.
    await create(api, PROFILES, profile("storage", {"role": "Storage", "arch": "x86_64"}, kernel="http://img/s"))
    refused = await api.patch(f"{PROFILES}/compute", json={"spec": {"selector": {"labels": {"gpu": "a100"}}}},
                              headers={"Content-Type": "application/merge-patch+json"})
    problem_of(refused, 409)
    assert (await api.get(f"{PROFILES}/compute")).json()["spec"]["selector"] == {"role": "Compute"}
    bad = problem_of(await api.post(PROFILES, json=profile("bad", {"arch": "sparc"}, kernel="http://k")), 422)
    assert bad["errors"][0]["field"] == "$.spec.selector.arch"
    problem_of(await api.post(PROFILES, json=profile("bad", {}, kernel="http://k\nshell")), 422)
    problem_of(await api.post(PROFILES, json=profile("bad", {}, arches={"mips": {"kernel": "http://k"}})), 422)
    # Templates are compiled when written: the problem names the field and the line; nothing is stored.
    bad = problem_of(await api.post(PROFILES, json=profile("bad", {}, kernel="http://k",
                                                           cmdline="quiet\n{{ nope }}")), 422)
    assert bad["errors"][0]["field"] == "$.spec.cmdline" and bad["errors"][0]["detail"].startswith("line 2: unknown")
    bad = problem_of(await api.post(PROFILES, json=profile("bad", {}, userData="#cloud-config\n{% include 'x' %}")),
                     422)
    assert bad["errors"][0]["field"] == "$.spec.userData" and bad["errors"][0]["detail"].startswith("line 2: ")
    problem_of(await api.post(PROFILES, json=profile("bad", {}, vendorData="{{ ''.__class__ }}")), 422)
    # The iPXE script template: checked when written, with the line; what it prints must be safe in a script.
    for script, detail in (
            ("echo hi", "an iPXE script starts with the line #!ipxe"),
            ("#!ipxe\nkernel {{ kernel | upper }}", "line 2: kernel, initrd, params, baseUrl and seedUrl are filled"),
            ("#!ipxe\necho {{ 'x || shell' }}", "line 2: a printed value must not contain the word '||'"),
            ("#!ipxe\n:retry\nshell", "line 2: the label :retry is the boot path's"),
            ("#!ipxe\necho ok\r\nshell", "line 2: a line break, carriage return"),
            ("#!ipxe\n\n{{ token }}", "line 3: unknown variable 'token'")):
        bad = problem_of(await api.post(PROFILES, json=profile("bad", {}, script=script)), 422)
        assert bad["errors"][0]["field"] == "$.spec.script" and bad["errors"][0]["detail"].startswith(detail), bad
    assert not await conn.fetchval("SELECT count(*) FROM bss.profiles WHERE id = 'bad'")
    script = "#!ipxe\necho {{ id }}\nkernel {{ kernel }} {{ params }} || goto retry\nboot || goto retry\n"
    created = await create(api, PROFILES, profile("scripted", {"componentId": "n9"}, kernel="http://k",
                                                  script=script))
    assert created["spec"]["script"] == script
    assert await conn.fetchval("SELECT script FROM bss.profiles WHERE id = 'scripted'") == script

    explained = (await api.get("/boot/v1/effective/n1/profile")).json()
    assert explained["profile"] == "gpu" and explained["specificity"] == 2
    assert explained["matchedBy"] == ["role = 'Compute'", "labels.gpu = 'a100'"]
    assert explained["pinnedBy"] == []
    by_id = {c["id"]: c for c in explained["candidates"]}
    assert by_id["compute"]["matches"] and by_id["storage"]["unmet"] == ["role: not 'Storage'"]
    await create(api, "/boot/v1/bootparams", {"metadata": {"id": "pin"},
                                              "spec": {"componentId": "n1", "kernel": "http://img/pin"}})
    assert (await api.get("/boot/v1/effective/n1/profile")).json()["pinnedBy"] == ["component:n1"]
    problem_of(await api.get("/boot/v1/effective/nobody/profile"), 404)
    assert (await api.delete(f"{PROFILES}/gpu")).status_code == 204
    assert (await api.get("/boot/v1/effective/n1/profile")).json()["profile"] == "compute"


async def test_a_running_boot_path_serves_profiles_per_architecture(admin_server, boot_server, dsn):
    boot = boot_server(CHAMICORE_TELEMETRY_NODE_INTERVAL_S="0")
    server = admin_server(CHAMICORE_BOOT_URL=boot.url)
    token = await token_for(server.url, dsn, "seeder", ["admin"])
    async with httpx.AsyncClient(base_url=server.url, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as api, \
            httpx.AsyncClient(base_url=boot.url, timeout=30) as nodes:
        await create(api, NODES, node("arm-1", "aa:00:00:00:00:11", arch="aarch64", labels={"rack": "r7"}))
        await create(api, PROFILES, profile("r7", {"labels": {"rack": "r7"}}, cmdline="console=ttyAMA0", arches={
            "arm64": {"kernel": "http://img/arm64/Image", "initrd": "http://img/arm64/initrd"},
            "x86_64": {"kernel": "http://img/x86/vmlinuz"}}))

        async def script(arch):
            deadline = time.monotonic() + 10
            while True:
                answer = await nodes.get("/boot/v1/bootscript", params={"mac": "aa:00:00:00:00:11", "arch": arch})
                assert answer.status_code == 200, answer.text
                if "Image" in answer.text or time.monotonic() > deadline:
                    return answer.text
                await asyncio.sleep(0.02)

        assert "kernel --name kernel http://img/arm64/Image console=ttyAMA0" in await script("arm64")
        riscv = (await nodes.get("/boot/v1/bootscript", params={"mac": "aa:00:00:00:00:11",
                                                                  "arch": "riscv64"})).text
        assert riscv.startswith("#!ipxe\necho Chamicore: node arm-1: profile r7 has no kernel for architecture "
                                "riscv64 (it has arm64, x86_64)")
        # An edit of the profile through the API reaches the running boot path.
        edited = await api.patch(f"{PROFILES}/r7", json={"spec": {"arches": {"arm64": {
            "kernel": "http://img/arm64-v2/Image"}}}}, headers={"Content-Type": "application/merge-patch+json"})
        assert edited.status_code == 200, edited.text
        started = time.monotonic()
        while "arm64-v2" not in (await nodes.get("/boot/v1/bootscript", params={"mac": "aa:00:00:00:00:11",
                                                                                  "arch": "arm64"})).text:
            assert time.monotonic() - started < 10, "the edit never reached the boot path"
            await asyncio.sleep(0.01)
