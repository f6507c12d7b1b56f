"""/boot/v1/effective and /cloud-init/effective: which entries apply to a node and which wins, checked against
what a running boot path serves; the script preview is not counted as the node booting."""

import asyncio
import time

import asyncpg
import httpx

from tests.helpers.api import create, problem_of
from tests.helpers.tokens import token_for

NODES = "/hsm/v2/State/Components"
MAC_1, MAC_2 = "aa:bb:cc:00:00:01", "aa:bb:cc:00:00:02"


def kernel(name: str) -> str:
    return f"http://images.example/{name}/vmlinuz"


async def until(read, timeout: float = 10.0):
    """Poll an async read until it is truthy (the boot path hears of changes through the feed)."""
    deadline = time.monotonic() + timeout
    while not (value := await read()):
        assert time.monotonic() < deadline, "the boot path never served it"
        await asyncio.sleep(0.05)
    return value


async def test_precedence_matches_what_the_boot_path_serves(admin_server, boot_server, dsn):
    boot = boot_server(CHAMICORE_TELEMETRY_NODE_INTERVAL_S="0")
    server = admin_server(CHAMICORE_BOOT_URL=boot.url)
    token = await token_for(server.url, dsn, "seeder", ["admin"])
    async with httpx.AsyncClient(base_url=server.url, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as api:
        await create(api, NODES, {"metadata": {"id": "node-1"}, "spec": {
            "type": "Node", "state": "Ready", "role": "Compute", "nid": 7,
            "networkInterfaces": [{"macAddr": MAC_1}, {"macAddr": MAC_2}]}})
        await create(api, NODES, {"metadata": {"id": "node-2"}, "spec": {"type": "Node", "state": "Ready"}})
        for group in ("g-a", "g-b"):
            await create(api, "/hsm/v2/groups", {"spec": {"name": group, "members": ["node-1"]}})
        for scope, name in (({}, "site"), ({"role": "Compute"}, "role"), ({"group": "g-b"}, "gb"),
                            ({"mac": MAC_2.upper()}, "mac"), ({"role": "Storage"}, "other-role")):
            await create(api, "/boot/v1/bootparams", {"metadata": {"id": f"bp-{name}"},
                                                      "spec": {**scope, "kernel": kernel(name)}})

        async def effective() -> dict:
            answer = await api.get("/boot/v1/effective/node-1")
            assert answer.status_code == 200, answer.text
            return answer.json()

        async def script(**query) -> str:
            answer = await api.get("/boot/v1/effective/node-1/script", params=query)
            assert answer.status_code == 200, answer.text
            return answer.text

        found = await effective()
        assert [(c["id"], c["scopeKind"]) for c in found["candidates"]] == [
            ("bp-mac", "mac"), ("bp-gb", "group"), ("bp-role", "role"), ("bp-site", "site")]
        assert found["served"] and found["winner"] == "bp-gb"
        assert found["byMac"] == [{"mac": MAC_1, "winner": "bp-gb"}, {"mac": MAC_2, "winner": "bp-mac"}]
        assert kernel("gb") in await until(lambda: script_with(script, kernel("gb")))
        assert kernel("mac") in await until(lambda: script_with(script, kernel("mac"), mac=MAC_2.replace(":", "-")))

        # Each more specific scope takes over, in the boot path's order: the first group by name, NID, component.
        for scope, name in (({"group": "g-a"}, "ga"), ({"nid": 7}, "nid"), ({"componentId": "node-1"}, "own")):
            await create(api, "/boot/v1/bootparams", {"metadata": {"id": f"bp-{name}"},
                                                      "spec": {**scope, "kernel": kernel(name)}})
            found = await effective()
            assert found["winner"] == f"bp-{name}" and found["byMac"][1]["winner"] == "bp-mac"
            assert kernel(name) in await until(lambda n=name: script_with(script, kernel(n)))
        assert [c["scopeKind"] for c in found["candidates"]] == \
            ["mac", "component", "nid", "group", "group", "role", "site"]

        # The seed token opens the node's cloud-init documents: only who may read those sees it.
        seed = await conn_fetch(dsn, "SELECT cloud_init_token FROM smd.components WHERE id = 'node-1'")
        assert f"/cloud-init/node-1/{seed}/" in await script(mac=MAC_1)  # asked by MAC, as a node boots
        await api.put("/auth/v1/roles/boot-reader", json={"scopes": ["read:bss"]})
        reader = await token_for(server.url, dsn, "boot-reader", ["boot-reader"])
        hidden = await api.get("/boot/v1/effective/node-1/script", params={"mac": MAC_1},
                               headers={"Authorization": f"Bearer {reader}"})
        assert hidden.status_code == 200 and kernel("own") in hidden.text
        assert seed not in hidden.text and "/cloud-init/node-1/<seed-token-hidden:needs-read:cloudinit>/" in hidden.text

        await api.patch(f"{NODES}/node-1", json={"spec": {"enabled": False}},
                        headers={"Content-Type": "application/merge-patch+json"})
        found = await effective()
        assert not found["served"] and "disabled" in found["reason"] and found["winner"] is None

        problem_of(await api.get("/boot/v1/effective/nobody"), 404)
        problem_of(await api.get("/boot/v1/effective/node-1/script", params={"mac": "aa:bb:cc:00:00:09"}), 404)

        # Previews are not the node booting; a node's own request (node-2) is counted.
        status, _, _ = boot.get("/boot/v1/bootscript?name=node-2")
        assert status == 200
        conn = await asyncpg.connect(dsn)
        try:
            await until(lambda: conn.fetchval("SELECT true FROM bss.boot_telemetry WHERE component_id = 'node-2'"))
            assert await conn.fetchval("SELECT count(*) FROM bss.boot_telemetry WHERE component_id = 'node-1'") == 0
        finally:
            await conn.close()


async def conn_fetch(dsn: str, query: str):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def script_with(script, wanted: str, **query) -> str | None:
    text = await script(**query)
    return text if wanted in text else None


async def test_cloud_init_candidates_and_what_each_gives(api):
    await create(api, NODES, {"metadata": {"id": "node-1"}, "spec": {"type": "Node", "role": "Compute"}})
    for group in ("g-a", "g-b"):
        await create(api, "/hsm/v2/groups", {"spec": {"name": group, "members": ["node-1"]}})
    for scope, name, spec in (
            ({}, "site", {"userData": "#cloud-config\n", "vendorData": "#cloud-config\n", "metaData": {"a": 1}}),
            ({"role": "Compute"}, "role", {"userData": "#cloud-config\n", "metaData": {"a": 2, "b": 2}}),
            ({"group": "g-a"}, "ga", {"userData": "#cloud-config\n"}),
            ({"group": "g-b"}, "gb", {"userData": "#cloud-config\n", "metaData": {"b": 3}})):
        await create(api, "/cloud-init/payloads", {"metadata": {"id": f"ci-{name}"}, "spec": {**scope, **spec}})
    answer = await api.get("/cloud-init/effective/node-1")
    assert answer.status_code == 200, answer.text
    got = [(c["id"], c["scopeKind"], c["gives"], c["metaKeys"]) for c in answer.json()["candidates"]]
    # The groups' user-data are combined; vendor-data falls through to the site; meta-data keys merge.
    assert got == [("ci-ga", "group", ["userData"], []), ("ci-gb", "group", ["userData", "metaData"], ["b"]),
                   ("ci-role", "role", ["metaData"], ["a"]), ("ci-site", "site", ["vendorData"], [])]
    problem_of(await api.get("/cloud-init/effective/nobody"), 404)
