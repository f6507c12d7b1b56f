"""The MCP tools through a real admin server, with the SDK's own client, over both transports:
streamable HTTP at /mcp and stdio through `chamicore mcp`."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.helpers.api import NODE, create
from tests.helpers.tokens import token_for
from tests.mcp.conftest import READ_TOOLS, WRITE_TOOLS

KERNEL = "http://images.example/vmlinuz"
BOOT = {"componentId": "node-1", "kernel": KERNEL, "initrd": "http://images.example/initrd", "cmdline": "console=ttyS0"}


def problem(result) -> dict:
    assert result.is_error, result
    body = result.structured_content["problem"]
    assert json.loads(result.content[0].text) == body  # the same problem as text, for clients that read only that
    return body


async def seed(rest) -> None:
    await create(rest, "/hsm/v2/State/Components", NODE)
    await create(rest, "/hsm/v2/State/Components", {"metadata": {"id": "node-2"}, "spec": {"type": "Node", "nid": 2}})


async def audit_of(conn, tool: str) -> list:
    return await conn.fetch("SELECT * FROM auth.audit WHERE action = $1 ORDER BY seq", f"MCP {tool}")


async def test_tools_are_listed_by_mode(admin_server, connect, transport, dsn):
    read_only = admin_server()
    token = await token_for(read_only.url, dsn, "agent", ["admin"])
    async with connect(read_only, token) as session:
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(listed) == READ_TOOLS
    components = listed["smd.components.list"]
    assert components.input_schema["properties"]["type"]["type"] == "string"  # the route's own filters
    assert components.meta["chamicore/scopes"] == ["read:smd"] and components.annotations.read_only_hint

    read_write = admin_server(CHAMICORE_MCP_MODE="read-write", CHAMICORE_MCP_ENABLE_WRITE="true")
    token = await token_for(read_write.url, dsn, "agent-2", ["admin"])  # each server issues its own
    async with connect(read_write, token, CHAMICORE_MCP_MODE="read-write", CHAMICORE_MCP_ENABLE_WRITE="true") \
            as session:
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(listed) == READ_TOOLS | WRITE_TOOLS
    delete = listed["bss.bootparams.delete"]
    assert "confirm" in delete.input_schema["properties"] and delete.annotations.destructive_hint
    assert delete.meta["chamicore/scopes"] == ["write:bss"]
    assert listed["bss.bootparams.upsert"].input_schema["$defs"]["BootParamsSpec"]["required"] == ["kernel"]


async def test_a_client_asking_read_only_gets_read_only_from_a_read_write_server(admin_server_rw, rest, dsn):
    """`chamicore mcp` in its default mode: the stricter of the two modes applies."""
    token = await token_for(admin_server_rw.url, dsn, "agent", ["admin"])
    await seed(rest)
    from tests.mcp.conftest import stdio_session

    async with stdio_session(admin_server_rw.url, token) as session:
        assert {tool.name for tool in (await session.list_tools()).tools} == READ_TOOLS
        refused = problem(await session.call_tool("smd.groups.members.add", {"group": "g", "id": "node-1"}))
    assert refused["status"] == 403 and "read-only" in refused["detail"]


async def test_a_read_tool_returns_the_seeded_nodes(admin_server_rw, rest, connect, dsn):
    await seed(rest)
    token = await token_for(admin_server_rw.url, dsn, "viewer-agent", ["viewer"])
    async with connect(admin_server_rw, token) as session:
        listed = await session.call_tool("smd.components.list", {"type": "Node", "sort": "nid"})
        one = await session.call_tool("smd.components.get", {"id": "node-1"})
        missing = await session.call_tool("smd.components.get", {"id": "node-9"})
        summary = await session.call_tool("cluster.health_summary", {"minutes": 5})
    assert not listed.is_error
    assert [item["metadata"]["id"] for item in listed.structured_content["items"]] == ["node-1", "node-2"]
    assert listed.structured_content["metadata"]["total"] == 2
    assert one.structured_content["spec"]["role"] == "Compute" and one.structured_content["spec"]["nid"] == 1
    assert problem(missing)["status"] == 404  # the REST problem, unchanged
    assert summary.structured_content["nodes"] == 2
    assert summary.structured_content["bootPath"]["reachable"] is False  # no boot path in this test: said so
    assert summary.structured_content["adminApi"]["readiness"]["status"] == "ready"


async def test_a_write_tool_is_refused_in_read_only_mode(admin_server, connect, dsn, conn):
    server = admin_server()
    token = await token_for(server.url, dsn, "agent", ["admin"])
    async with connect(server, token) as session:
        refused = await session.call_tool("smd.groups.members.add", {"group": "rack1", "id": "node-1"})
    body = problem(refused)
    assert body["status"] == 403 and "CHAMICORE_MCP_ENABLE_WRITE=true" in body["detail"]
    assert await conn.fetchval("SELECT count(*) FROM smd.group_members") == 0
    [entry] = await audit_of(conn, "smd.groups.members.add")
    assert entry["outcome"] == "denied" and entry["detail"]["mode"] == "read-only"


async def test_a_delete_needs_confirm(admin_server_rw, rest, connect, transport, dsn, conn):
    await seed(rest)
    entry = await create(rest, "/boot/v1/bootparams", {"metadata": {"id": "bp-node-1"}, "spec": BOOT})
    token = await token_for(admin_server_rw.url, dsn, "agent", ["operator"])
    async with connect(admin_server_rw, token, **READ_WRITE_ENV) as session:
        unconfirmed = problem(await session.call_tool("bss.bootparams.delete", {"id": "bp-node-1"}))
        assert (await rest.get("/boot/v1/bootparams/bp-node-1")).json() == entry  # nothing changed
        confirmed = await session.call_tool("bss.bootparams.delete", {"id": "bp-node-1", "confirm": True})
    assert unconfirmed["status"] == 428
    assert "would delete boot parameters 'bp-node-1'" in unconfirmed["detail"]
    assert '"confirm": true' in unconfirmed["detail"]
    assert not confirmed.is_error and confirmed.structured_content == {"deleted": "bp-node-1"}
    assert (await rest.get("/boot/v1/bootparams/bp-node-1")).status_code == 404
    refused, done = await audit_of(conn, "bss.bootparams.delete")
    assert (refused["status"], refused["outcome"]) == (428, "failure")
    assert (done["status"], done["outcome"], done["resource"]) == (204, "success", "/boot/v1/bootparams/bp-node-1")
    assert done["detail"]["operations"] == ["DELETE /boot/v1/bootparams/{id}"]
    assert done["detail"]["transport"] == transport and done["actor"] == "agent"
    # The REST delete the tool ran is not recorded a second time.
    assert await conn.fetchval("SELECT count(*) FROM auth.audit WHERE action LIKE 'DELETE %'") == 0


READ_WRITE_ENV = {"CHAMICORE_MCP_MODE": "read-write", "CHAMICORE_MCP_ENABLE_WRITE": "true"}


async def test_a_viewer_cannot_write(admin_server_rw, rest, connect, dsn, conn):
    await seed(rest)
    token = await token_for(admin_server_rw.url, dsn, "viewer-agent", ["viewer"])
    async with connect(admin_server_rw, token, **READ_WRITE_ENV) as session:
        refused = problem(await session.call_tool("bss.bootparams.upsert", {"spec": BOOT}))
        confirmed = problem(await session.call_tool("bss.bootparams.delete", {"id": "x", "confirm": True}))
    assert refused["status"] == confirmed["status"] == 403
    assert "'write:bss'" in refused["detail"] and refused["type"] == "urn:chamicore:problem:insufficient-scope"
    assert await conn.fetchval("SELECT count(*) FROM bss.boot_params") == 0


async def test_upsert_creates_then_replaces_the_entry_of_the_scope(admin_server_rw, rest, connect, dsn, conn):
    await seed(rest)
    token = await token_for(admin_server_rw.url, dsn, "agent", ["operator"])
    async with connect(admin_server_rw, token, **READ_WRITE_ENV) as session:
        made = await session.call_tool("bss.bootparams.upsert", {"spec": BOOT})
        changed = await session.call_tool("bss.bootparams.upsert", {"spec": {**BOOT, "cmdline": "quiet"}})
        bad = problem(await session.call_tool("bss.bootparams.upsert", {"spec": {**BOOT, "kernel": "ftp://x/k"}}))
        shape = problem(await session.call_tool("bss.bootparams.upsert", {"spec": {"kernel": 3}}))
    assert made.structured_content["created"] is True and changed.structured_content["created"] is False
    entry_id = made.structured_content["resource"]["metadata"]["id"]
    assert changed.structured_content["resource"]["metadata"]["id"] == entry_id
    assert [dict(r) for r in await conn.fetch("SELECT id, cmdline FROM bss.boot_params")] == [
        {"id": entry_id, "cmdline": "quiet"}]
    assert bad["status"] == 422 and bad["errors"][0]["field"] == "$.spec.kernel"  # the REST validation
    assert shape["status"] == 422 and shape["errors"][0]["field"] == "$.spec.kernel"  # the tool's schema
    [created] = await conn.fetch("SELECT detail FROM auth.audit WHERE action = 'MCP bss.bootparams.upsert' "
                                 "AND status = 201")
    assert created["detail"]["arguments"] == {"spec": "[redacted]"}
    assert created["detail"]["targets"] == ["node-1"]


async def test_every_call_is_audited_once(admin_server_rw, rest, connect, transport, dsn, conn):
    await seed(rest)
    token = await token_for(admin_server_rw.url, dsn, "agent", ["operator"])
    before = await conn.fetchval("SELECT max(seq) FROM auth.audit")
    calls = [("smd.components.list", {}), ("smd.groups.members.add", {"group": "nope", "id": "node-1"}),
             ("bss.bootparams.delete", {"id": "nope"}), ("audit.list", {}), ("no.such.tool", {}),
             ("smd.components.get", {"id": "node-1", "extra": 1}), ("cluster.health_summary", {})]
    async with connect(admin_server_rw, token, **READ_WRITE_ENV) as session:
        results = [await session.call_tool(name, args) for name, args in calls]
    assert [r.is_error for r in results] == [False, True, True, True, True, True, False]
    rows = await conn.fetch("SELECT * FROM auth.audit WHERE seq > $1 ORDER BY seq", before)
    assert [(r["action"], r["status"]) for r in rows] == [
        ("MCP smd.components.list", 200), ("MCP smd.groups.members.add", 404),
        ("MCP bss.bootparams.delete", 428), ("MCP audit.list", 403), ("MCP no.such.tool", 404),
        ("MCP smd.components.get", 422), ("MCP cluster.health_summary", 200)]
    for row in rows:
        assert row["actor"] == "agent" and row["detail"]["transport"] == transport
        assert row["detail"]["via"] == "mcp" and row["detail"]["durationMs"] >= 0
    assert rows[-1]["detail"]["operations"][:2] == ["GET /readiness", "GET /version"]


async def test_the_endpoint_needs_a_token(admin_server):
    server = admin_server()
    status, headers, body = server.get("/mcp")
    assert status == 401 and {k.lower(): v for k, v in headers.items()}["www-authenticate"].startswith("Bearer")
    assert json.loads(body)["status"] == 401


@pytest.mark.parametrize("env", [{}, {"CHAMICORE_MCP_ENABLE_WRITE": "false"}])
def test_read_write_without_the_second_key_does_not_start(dsn, env):
    from admin_api.app import create_app
    from core.config import ConfigError, load_config
    from tests.helpers.keys import SECRETS

    config = load_config({"CHAMICORE_DATABASE_URL": dsn, "CHAMICORE_MCP_MODE": "read-write", **SECRETS, **env})
    with pytest.raises(ConfigError, match="CHAMICORE_MCP_ENABLE_WRITE=true"):
        create_app(config)


async def test_boot_script_preview_is_the_boot_paths_answer(admin_server, boot_server, dsn, connect):
    boot = boot_server()
    server = admin_server(CHAMICORE_BOOT_URL=boot.url)
    token = await token_for(server.url, dsn, "agent", ["viewer"])
    async with httpx.AsyncClient(base_url=server.url, timeout=30, headers={
            "Authorization": f"Bearer {await token_for(server.url, dsn, 'seeder', ['admin'])}"}) as rest:
        await create(rest, "/hsm/v2/State/Components", {**NODE, "spec": {
            **NODE["spec"], "networkInterfaces": [{"macAddr": "aa:bb:cc:00:00:01"}]}})
        await create(rest, "/boot/v1/bootparams", {"spec": BOOT})
        assert (await rest.put("/auth/v1/roles/boot-reader", json={"scopes": ["read:bss"]})).status_code == 200
    reader = await token_for(server.url, dsn, "boot-reader", ["boot-reader"])
    async with connect(server, reader) as session:  # no read:cloudinit: the node's seed token is not shown
        hidden = (await session.call_tool("boot.script.preview", {"mac": "aa:bb:cc:00:00:01"})).structured_content
    assert "/cloud-init/node-1/<seed-token-hidden:needs-read:cloudinit>/" in hidden["script"]
    async with connect(server, token) as session:
        by_mac = await session.call_tool("boot.script.preview", {"mac": "AA-BB-CC-00-00-01"})
        by_id = await session.call_tool("boot.script.preview", {"componentId": "node-1"})
        neither = problem(await session.call_tool("boot.script.preview", {}))
    status, _, body = boot.get("/boot/v1/bootscript?mac=aa:bb:cc:00:00:01", {"X-Chamicore-Preview": "1"})
    assert status == 200 and by_mac.structured_content["script"] == body.decode()  # the same bytes
    assert by_mac.structured_content["script"].startswith("#!ipxe") and KERNEL in by_mac.structured_content["script"]
    assert KERNEL in by_id.structured_content["script"]
    assert neither["status"] == 400


async def test_the_hardware_tools_filter_and_show_changes(admin_server_rw, rest, connect, dsn, conn):
    await seed(rest)
    # What a redfish scan stores (tests/hardware/test_inventory.py scans for real): node-1 has a GPU.
    for node, gpus in (("node-1", ["NVIDIA H100"]), ("node-2", [])):
        await conn.execute("INSERT INTO smd.hardware (component_id, document, gpu_models) VALUES ($1, $2, $3)",
                           node, {"processors": [{"id": f"/redfish/v1/Systems/{node}/Processors/GPU0", "type": "GPU",
                                                  "model": m} for m in gpus]}, gpus)
    await conn.execute("INSERT INTO smd.hardware_changes (component_id, scan_id, changes) VALUES ('node-1', 'scan-1', "
                       "$1)", [{"category": "firmware", "id": "/redfish/v1/UpdateService/FirmwareInventory/BMC",
                                "action": "changed", "before": {"version": "1.0"}, "after": {"version": "1.1"}}])
    token = await token_for(admin_server_rw.url, dsn, "viewer-agent", ["viewer"])
    async with connect(admin_server_rw, token) as session:
        listed = await session.call_tool("smd.hardware.list", {"gpuModel": "h100"})
        changes = await session.call_tool("smd.hardware.changes", {"id": "node-1"})
        bad = await session.call_tool("smd.hardware.list", {"firmwareBelow": "1.2"})
    assert [item["metadata"]["id"] for item in listed.structured_content["items"]] == ["node-1"]
    [change_set] = changes.structured_content["items"]
    assert change_set["scanId"] == "scan-1" and change_set["changes"][0]["after"] == {"version": "1.1"}
    assert problem(bad)["status"] == 400


async def test_profile_tools_write_explain_and_delete_through_the_rest_rules(admin_server_rw, rest, connect, dsn,
                                                                             conn):
    """Boot profiles through the agents' face: the REST routes' own checks (template 422, tie 409) and scopes."""
    await seed(rest)
    profile = {"selector": {"role": "Compute"}, "kernel": KERNEL, "cmdline": "console=ttyS0 host={{ hostname }}"}
    operator = await token_for(admin_server_rw.url, dsn, "agent", ["operator"])
    viewer = await token_for(admin_server_rw.url, dsn, "viewer-agent", ["viewer"])
    async with connect(admin_server_rw, viewer, **READ_WRITE_ENV) as session:
        refused = problem(await session.call_tool("bss.profiles.upsert", {"id": "compute", "spec": profile}))
    assert refused["status"] == 403 and "'write:bss'" in refused["detail"]
    async with connect(admin_server_rw, operator, **READ_WRITE_ENV) as session:
        made = await session.call_tool("bss.profiles.upsert", {"id": "compute", "spec": profile})
        changed = await session.call_tool("bss.profiles.upsert",
                                          {"id": "compute", "spec": {**profile, "cmdline": "quiet"}})
        template = problem(await session.call_tool("bss.profiles.upsert", {"id": "compute", "spec": {
            **profile, "cmdline": "quiet\n{{ secrets }}"}}))
        tie = problem(await session.call_tool("bss.profiles.upsert", {"id": "other", "spec": profile}))
        listed = await session.call_tool("bss.profiles.list", {})
        got = await session.call_tool("bss.profiles.get", {"id": "compute"})
        why = await session.call_tool("boot.node.profile", {"id": "node-1"})
        unconfirmed = problem(await session.call_tool("bss.profiles.delete", {"id": "compute"}))
        kept = await conn.fetchval("SELECT cmdline FROM bss.profiles WHERE id = 'compute'")
        deleted = await session.call_tool("bss.profiles.delete", {"id": "compute", "confirm": True})
    assert made.structured_content["created"] is True and changed.structured_content["created"] is False
    assert template["status"] == 422 and template["errors"][0]["field"] == "$.spec.cmdline"
    assert "line 2" in template["errors"][0]["detail"] and "secrets" in template["errors"][0]["detail"]
    assert tie["status"] == 409
    assert [item["metadata"]["id"] for item in listed.structured_content["items"]] == ["compute"]
    assert got.structured_content["spec"]["cmdline"] == "quiet"
    assert why.structured_content["profile"] == "compute" and why.structured_content["matchedBy"] == [
        "role = 'Compute'"]
    assert unconfirmed["status"] == 428 and "would delete boot profile 'compute'" in unconfirmed["detail"]
    assert kept == "quiet"  # the refused template and the unconfirmed delete changed nothing
    assert deleted.structured_content == {"deleted": "compute"}
    assert await conn.fetchval("SELECT count(*) FROM bss.profiles") == 0
