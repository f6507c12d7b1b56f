"""ochami's cloud-init commands against /openchami/cloud-init, request for request.

ochami sends JSON without a Content-Type, `User-Agent: ochami/<v>`, and a
token (HandleToken), except to /version.  Bodies are what Go's json.Marshal
of its structs gives.  The boot path runs as a real server: what a group set
through the face holds is what it serves the node, and impersonation answers
with the same bytes.
"""

import asyncio
import base64
import json

import httpx
import pytest

from core.config import load_config
from tests.helpers.keys import SECRETS
from tests.helpers.polling import wait_until
from tests.helpers.seed import add_node
from tests.helpers.tokens import token_for

BASE = "/openchami/cloud-init"
AGENT = {"User-Agent": "ochami/0.5.0"}
PREVIEW = {"X-Chamicore-Preview": "1"}  # the test's own looks at the boot path are not the node asking
NODE = "x1000c1s7b0n0"
COMPUTE = "#cloud-config\npackages: [slurm]\nruncmd: [echo compute]\n"
SLURM = "## template: jinja\n#cloud-config\nruncmd: [echo {{ ds.meta_data['local-hostname'] }}]\n"
DEFAULTS = {"cloud_provider": "openchami", "region": "r1", "availability-zone": "az1", "cluster-name": "demo",
            "public-keys": ["ssh-ed25519 AAAAC3Nza user@demo-head"], "base-url": "http://demo.openchami.cluster/cloud-init/",
            "short-name": "nid", "nid-length": 3}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def group(name: str, text: str, description: str = "", meta: dict | None = None) -> dict:
    """cistore.GroupData as ochami marshals it: `file` always, `filename` even when empty."""
    body: dict = {"name": name}
    if description:
        body["description"] = description
    if meta:
        body["meta-data"] = meta
    body["file"] = {"content": b64(text), "filename": "", "encoding": "base64"}
    return body


class Ochami:
    """ochami's requests: compact JSON bodies, no Content-Type, its User-Agent, the cluster's token."""

    def __init__(self, client: httpx.AsyncClient, token: str | None) -> None:
        self.client, self.token = client, token

    async def __call__(self, method: str, path: str, body=None) -> httpx.Response:
        headers = dict(AGENT)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        response = await self.client.request(method, BASE + path, content=content, headers=headers)
        assert "content-type" not in response.request.headers
        return response


@pytest.fixture
async def ochami(api, anonymous, dsn) -> Ochami:
    return Ochami(anonymous, await token_for(anonymous, dsn, "ochami-admin", ["admin"]))


@pytest.fixture
async def cluster(dsn, boot_server):
    """A boot path, and the admin API (in-process) that reaches it at CHAMICORE_BOOT_URL."""
    from admin_api.app import create_app

    boot = boot_server()
    app = create_app(load_config({"CHAMICORE_DATABASE_URL": dsn, **SECRETS, "CHAMICORE_BOOT_URL": boot.url}))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://admin") as client:
        yield boot, Ochami(client, await token_for(client, dsn, "ochami-admin", ["admin"]))


def created(response: httpx.Response) -> None:
    assert response.status_code == 201, response.text
    assert response.content == b""


async def test_defaults_set_merges_and_get_shows_only_defaults(ochami, conn):
    created(await ochami("POST", "/admin/cluster-defaults", DEFAULTS))
    response = await ochami("GET", "/admin/cluster-defaults")
    assert response.status_code == 200
    assert response.json() == {**DEFAULTS, "base-url": "http://demo.openchami.cluster/cloud-init"}
    # Only non-empty keys overwrite; what is not a default (a native site key) is neither shown nor lost.
    await conn.execute("UPDATE cloudinit.payloads SET meta_data = meta_data || '{\"ntp\": \"pool\"}' "
                       "WHERE scope = 'site'")
    created(await ochami("POST", "/admin/cluster-defaults", {"region": "r2", "cluster-name": "", "nid-length": 0}))
    shown = (await ochami("GET", "/admin/cluster-defaults")).json()
    assert shown["region"] == "r2" and shown["cluster-name"] == "demo" and shown["nid-length"] == 3
    assert "ntp" not in shown
    meta = await conn.fetchval("SELECT meta_data FROM cloudinit.payloads WHERE scope = 'site'")
    assert meta["ntp"] == "pool" and meta["short-name"] == "nid"


async def test_defaults_empty_and_refused(ochami, conn):
    response = await ochami("GET", "/admin/cluster-defaults")
    assert response.status_code == 200 and response.json() == {}
    assert (await ochami("POST", "/admin/cluster-defaults", {"short-name": "n id"})).status_code == 422
    assert (await ochami("POST", "/admin/cluster-defaults", {"nid-length": "3"})).status_code == 422
    raw = await ochami.client.post(BASE + "/admin/cluster-defaults", content=b"{",
                                   headers={**AGENT, "Authorization": f"Bearer {ochami.token}"})
    assert raw.status_code == 400
    assert await conn.fetchval("SELECT count(*) FROM cloudinit.payloads") == 0


async def test_group_add_get_set_delete(ochami, conn):
    response = await ochami("POST", "/admin/groups", group("compute", COMPUTE, "The compute group", {"slurm": "head"}))
    created(response)
    assert response.headers["location"] == "/groups/compute"
    # The SMD group it needs was made, empty; the file is the payload's user-data, decoded.
    assert await conn.fetchval("SELECT count(*) FROM smd.groups WHERE name = 'compute'") == 1
    stored = await conn.fetchrow("SELECT user_data, meta_data FROM cloudinit.payloads WHERE group_name = 'compute'")
    assert (stored["user_data"], stored["meta_data"]) == (COMPUTE, {"slurm": "head"})

    listed = await ochami("GET", "/admin/groups")
    assert listed.status_code == 200
    assert listed.json() == {"compute": {"name": "compute", "description": "The compute group",
                                         "meta-data": {"slurm": "head"},
                                         "file": {"content": b64(COMPUTE), "filename": "", "encoding": "base64"}}}
    one = await ochami("GET", "/admin/groups/compute")
    assert one.status_code == 200 and one.json() == listed.json()["compute"]

    plain = {"name": "compute", "file": {"content": SLURM, "filename": "compute.yaml", "encoding": "plain"}}
    created(await ochami("PUT", "/admin/groups/compute", plain))
    assert (await ochami("GET", "/admin/groups/compute")).json() == plain  # replaced: no description, no meta-data

    assert (await ochami("DELETE", "/admin/groups/compute")).status_code == 200
    assert (await ochami("GET", "/admin/groups/compute")).status_code == 404
    assert (await ochami("GET", "/admin/groups")).json() == {}
    assert (await ochami("DELETE", "/admin/groups/compute")).status_code == 200  # already gone: still 200
    assert await conn.fetchval("SELECT count(*) FROM smd.groups WHERE name = 'compute'") == 1  # SMD's stays


async def test_duplicate_group_is_409(ochami):
    created(await ochami("POST", "/admin/groups", group("compute", COMPUTE)))
    response = await ochami("POST", "/admin/groups", group("compute", SLURM))
    assert response.status_code == 409
    assert response.json()["detail"] == "group 'compute' not added as it already exists"
    assert (await ochami("GET", "/admin/groups/compute")).json()["file"]["content"] == b64(COMPUTE)


@pytest.mark.parametrize("body", [
    {"name": "compute", "file": {"content": "not base64!", "filename": "", "encoding": "base64"}},
    {"name": "compute", "file": {"content": b64("hello, no cloud-config"), "filename": "", "encoding": "base64"}},
    {"name": "compute", "file": {"content": "#cloud-config\n[unclosed", "filename": "", "encoding": "plain"}},
    {"name": "compute", "file": {"content": b64(COMPUTE), "filename": "", "encoding": "gzip"}},
    {"file": {"content": b64(COMPUTE), "filename": "", "encoding": "base64"}},
    {"name": "no such/name", "file": {"content": b64(COMPUTE), "filename": "", "encoding": "base64"}},
    {"name": "compute", "meta-data": {"instance-id": "i-1"}},
    "[not an object]",
])
async def test_bad_group_is_422_and_stores_nothing(ochami, conn, body):
    response = await ochami("POST", "/admin/groups", body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await conn.fetchval("SELECT count(*) FROM cloudinit.payloads") == 0
    assert await conn.fetchval("SELECT count(*) FROM smd.groups") == 0


async def test_undecodable_body_is_422(ochami):
    response = await ochami.client.post(BASE + "/admin/groups", content=b'{"name": "compute",',
                                        headers={**AGENT, "Authorization": f"Bearer {ochami.token}"})
    assert response.status_code == 422


async def test_scopes(anonymous, conn, dsn):
    viewer = Ochami(anonymous, await token_for(anonymous, dsn, "ochami-viewer", ["viewer"]))
    response = await viewer("POST", "/admin/groups", group("compute", COMPUTE))
    assert response.status_code == 403 and "write:cloudinit" in response.json()["detail"]
    assert (await viewer("GET", "/admin/groups")).status_code == 200
    assert (await Ochami(anonymous, None)("GET", "/admin/groups")).status_code == 401
    # A group unknown to SMD is created there too, which needs write:smd as well.
    await conn.execute("INSERT INTO auth.roles (name, description, scopes) "
                       "VALUES ('cloud-init-only', 'cloud-init only', ARRAY['read:cloudinit', 'write:cloudinit'])")
    writer = Ochami(anonymous, await token_for(anonymous, dsn, "ci-writer", ["cloud-init-only"]))
    response = await writer("POST", "/admin/groups", group("compute", COMPUTE))
    assert response.status_code == 403 and "'write:smd'" in response.json()["detail"]
    assert await conn.fetchval("SELECT count(*) FROM smd.groups") == 0
    await conn.execute("INSERT INTO smd.groups (name) VALUES ('compute')")
    created(await writer("POST", "/admin/groups", group("compute", COMPUTE)))


async def test_instance_info_sets_the_nodes_own_keys(ochami, conn):
    await add_node(conn, NODE, ["52:54:00:00:00:07"], nid=7)
    info = {"id": NODE, "instance-id": "i-kept-by-chamicore", "local-hostname": "login1", "hostname": "login1.demo",
            "region": "r9", "public-keys": ["ssh-ed25519 BBBB own"]}
    created(await ochami("PUT", f"/admin/instance-info/{NODE}", info))
    meta = await conn.fetchval("SELECT meta_data FROM cloudinit.payloads WHERE component_id = $1", NODE)
    assert meta == {"local-hostname": "login1", "hostname": "login1.demo", "region": "r9",
                    "public-keys": ["ssh-ed25519 BBBB own"]}
    # Replaced whole: what is left out is no longer the node's own; other meta-data keys stay.
    await conn.execute("UPDATE cloudinit.payloads SET meta_data = meta_data || '{\"rack\": \"r1\"}' "
                       "WHERE component_id = $1", NODE)
    created(await ochami("PUT", f"/admin/instance-info/{NODE}", {"id": NODE, "instance-id": "", "region": "r8"}))
    meta = await conn.fetchval("SELECT meta_data FROM cloudinit.payloads WHERE component_id = $1", NODE)
    assert meta == {"region": "r8", "rack": "r1"}
    assert (await ochami("PUT", "/admin/instance-info/x9c0s0b0n0", {"id": "x9c0s0b0n0"})).status_code == 404
    assert (await ochami("PUT", f"/admin/instance-info/{NODE}", {"local-hostname": "no spaces"})).status_code == 422


async def test_version_needs_no_token(anonymous):
    response = await Ochami(anonymous, None)("GET", "/version")
    assert response.status_code == 200
    body = response.json()
    assert body["process_name"] == "chamicore" and body["build_info"].startswith("Version: ")
    assert body["uptime"].endswith("s") and body["runtime_host"] and body["bytes_allocated"] > 0


async def test_a_node_in_two_groups_as_the_boot_path_serves_it(cluster, conn):
    boot, ochami = cluster
    await add_node(conn, NODE, ["52:54:00:00:00:07"], nid=7, ips=["10.0.0.7"], groups=["slurm"])
    await add_node(conn, "x1000c1s7b1n0", ["52:54:00:00:00:08"], nid=8)
    token = await conn.fetchval("SELECT cloud_init_token FROM smd.components WHERE id = $1", NODE)
    created(await ochami("POST", "/admin/cluster-defaults", DEFAULTS))
    created(await ochami("POST", "/admin/groups", group("slurm", SLURM, "Slurm nodes")))
    created(await ochami("POST", "/admin/groups", group("compute", COMPUTE, meta={"role": "batch"})))
    await conn.execute("INSERT INTO smd.group_members (group_name, component_id) VALUES ('compute', $1)", NODE)

    def served(document: str) -> bytes:
        status, _, body = boot.get(f"/cloud-init/{NODE}/{token}/{document}", PREVIEW)
        assert status == 200, body
        return body

    user_data = wait_until(lambda: (body := served("user-data")).startswith(b"Content-Type: multipart") and body)
    response = await ochami("GET", f"/admin/impersonation/{NODE}/user-data")
    assert response.status_code == 200 and response.content == user_data
    assert token not in response.text
    parts = user_data.split(b"Content-Disposition: attachment; filename=")
    assert [part.split(b"\n", 1)[0] for part in parts[1:]] == [b'"compute"', b'"slurm"']  # name order
    assert COMPUTE.encode() in parts[1] and SLURM.encode() in parts[2]

    response = await ochami("GET", f"/admin/impersonation/{NODE}/meta-data")
    assert response.status_code == 200 and response.content == served("meta-data")
    meta = response.json()
    assert (meta["local-hostname"], meta["cluster-name"], meta["role"]) == ("nid007", "demo", "batch")
    assert meta["public-keys"] == DEFAULTS["public-keys"]
    groups = meta["instance_data"]["v1"]["vendor_data"]["groups"]
    assert groups == {"compute": {"Description": "No description Found", "role": "batch"},
                      "slurm": {"Description": "Slurm nodes"}}
    response = await ochami("GET", f"/admin/impersonation/{NODE}/vendor-data")
    assert response.status_code == 200 and response.content == served("vendor-data")

    response = await ochami("GET", f"/admin/impersonation/{NODE}/slurm.yaml")
    assert response.status_code == 200 and response.text == SLURM
    assert (await ochami("GET", "/admin/impersonation/x1000c1s7b1n0/slurm.yaml")).status_code == 404
    assert (await ochami("GET", f"/admin/impersonation/{NODE}/passwd")).status_code == 404
    assert (await ochami("GET", "/admin/impersonation/x9c0s0b0n0/user-data")).status_code == 404

    # A group set through the face changes what the node is served.
    created(await ochami("PUT", "/admin/groups/compute", group("compute", "#cloud-config\npackages: [lustre]\n")))
    wait_until(lambda: b"lustre" in served("user-data"))

    # Impersonation is not the node asking: once a request the other node made after it has been recorded,
    # the boot path's telemetry still has none from this one.
    other = await conn.fetchval("SELECT cloud_init_token FROM smd.components WHERE id = 'x1000c1s7b1n0'")
    assert boot.get(f"/cloud-init/x1000c1s7b1n0/{other}/meta-data")[0] == 200
    await recorded(conn, "x1000c1s7b1n0")
    assert await conn.fetchval("SELECT count(*) FROM bss.boot_telemetry WHERE component_id = $1", NODE) == 0


async def recorded(conn, node_id: str, timeout: float = 10.0) -> None:
    """Wait until the boot path's telemetry (flushed every 0.2 s in tests) has a row for `node_id`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await conn.fetchval("SELECT true FROM bss.boot_telemetry WHERE component_id = $1", node_id):
        assert asyncio.get_running_loop().time() < deadline, f"no telemetry for {node_id}"
        await asyncio.sleep(0.05)
