"""Atomic node provisioning and decommissioning: one call, one transaction.

POST /hsm/v2/nodes/{id}/provision makes the node, its interfaces, its own
boot parameters and cloud-init payload exactly what the body says.
POST /hsm/v2/nodes/{id}/decommission takes it out of service (or, with
`purge=true`, out of the inventory).  `dryRun=true` runs the same
transaction, reports what it would change, and rolls it back.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import field_problem, json_response, problem, query_list, read_json
from admin_api.nodes.schemas import NodeProvision, check_boot_params, check_cloud_init
from admin_api.routing import Param, Router
from admin_api.smd import components, interfaces
from admin_api.smd.components import ComponentSpec
from core import events
from core.envelope import Resource
from core.identity import is_valid_id

router = Router("nodes")
BASE = "/hsm/v2/nodes/{id}"


class Plan(msgspec.Struct, rename="camel"):
    kind: str
    node_id: str
    dry_run: bool
    changes: list[str]
    node: Resource[ComponentSpec] | None = None


class _Rollback(Exception):
    """Raised inside the transaction of a dry run, so nothing it did remains."""


def _flag(request: Request, name: str) -> bool:
    return (query_list(request, name) or ["false"])[0].lower() in ("1", "true", "yes")


def _node_id(request: Request) -> str:
    node_id = request.path_params["id"]
    if not is_valid_id(node_id):
        raise field_problem("id", f"{node_id[:255]!r} is not a valid component id", 404)
    return node_id


async def _provision(conn, node_id: str, body: NodeProvision, nics: list, changes: list[str]) -> None:
    spec = ComponentSpec(**{f.name: getattr(body, f.name) for f in msgspec.structs.fields(ComponentSpec)})
    await components.check_references(conn, spec, node_id)
    exists = await conn.fetchval("SELECT true FROM smd.components WHERE id = $1 FOR UPDATE", node_id)
    values = components.component_values(spec)
    if exists:
        await conn.execute(
            "UPDATE smd.components SET type = $2, state = $3, role = $4, sub_role = $5, nid = $6, arch = $7, "
            "enabled = $8, parent_id = $9, rack = $10, unit = $11, slot = $12, sub_slot = $13, updated_at = now() "
            "WHERE id = $1", node_id, *values)
        await events.emit(conn, "smd", "components", "updated", node_id, msgspec.to_builtins(spec))
        changes.append(f"updated component {node_id}")
    else:
        await conn.execute(
            "INSERT INTO smd.components (id, type, state, role, sub_role, nid, arch, enabled, parent_id, rack, unit, "
            "slot, sub_slot) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)", node_id, *values)
        await events.emit(conn, "smd", "components", "created", node_id, msgspec.to_builtins(spec))
        changes.append(f"created component {node_id}")

    # Interfaces: exactly the ones given, matched by MAC.
    current = {r["mac"]: r for r in await conn.fetch(
        "SELECT id, mac, ip_addrs, description FROM smd.ethernet_interfaces WHERE component_id = $1", node_id)}
    wanted = {nic[1]: nic for nic in nics}
    for mac in sorted(set(current) - set(wanted)):
        await conn.execute("DELETE FROM smd.ethernet_interfaces WHERE id = $1", current[mac]["id"])
        await events.emit(conn, "smd", "ethernetinterfaces", "deleted", current[mac]["id"], {"macAddr": mac})
        changes.append(f"removed interface {mac}")
    await interfaces.check_macs_free(conn, [m for m in wanted if m not in current])
    new = [nic for mac, nic in wanted.items() if mac not in current]
    await interfaces.insert_many(conn, node_id, new)
    changes.extend(f"added interface {nic[1]}" for nic in new)
    for mac, nic in wanted.items():
        row = current.get(mac)
        if row is not None and (row["ip_addrs"] != nic[2] or row["description"] != nic[3]):
            await conn.execute("UPDATE smd.ethernet_interfaces SET ip_addrs = $2, description = $3, updated_at = now() "
                               "WHERE id = $1", row["id"], nic[2], nic[3])
            await events.emit(conn, "smd", "ethernetinterfaces", "updated", row["id"], {"macAddr": mac,
                                                                                       "ipAddrs": nic[2]})
            changes.append(f"updated interface {mac}")

    if body.boot_params is not msgspec.UNSET:
        existing = await conn.fetchval("SELECT id FROM bss.boot_params WHERE component_id = $1", node_id)
        if body.boot_params is None:
            if existing:
                await conn.execute("DELETE FROM bss.boot_params WHERE id = $1", existing)
                await events.emit(conn, "bss", "bootparams", "deleted", existing)
                changes.append(f"removed boot parameters {existing}")
        else:
            bp = body.boot_params
            params_id = existing or f"{node_id}-boot"
            await conn.execute(
                "INSERT INTO bss.boot_params (id, component_id, kernel, initrd, cmdline) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (id) DO UPDATE SET kernel = excluded.kernel, initrd = excluded.initrd, "
                "cmdline = excluded.cmdline, updated_at = now()", params_id, node_id, bp.kernel, bp.initrd, bp.cmdline)
            await events.emit(conn, "bss", "bootparams", "updated" if existing else "created", params_id,
                              msgspec.to_builtins(bp))
            changes.append(f"{'updated' if existing else 'created'} boot parameters {params_id}")

    if body.cloud_init is not msgspec.UNSET:
        existing = await conn.fetchval("SELECT id FROM cloudinit.payloads WHERE component_id = $1", node_id)
        if body.cloud_init is None:
            if existing:
                await conn.execute("DELETE FROM cloudinit.payloads WHERE id = $1", existing)
                await events.emit(conn, "cloudinit", "payloads", "deleted", existing)
                changes.append(f"removed cloud-init payload {existing}")
        else:
            ci = body.cloud_init
            payload_id = existing or f"{node_id}-cloud-init"
            await conn.execute(
                "INSERT INTO cloudinit.payloads (id, component_id, user_data, meta_data, vendor_data) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET user_data = excluded.user_data, "
                "meta_data = excluded.meta_data, vendor_data = excluded.vendor_data, updated_at = now()",
                payload_id, node_id, ci.user_data, ci.meta_data, ci.vendor_data)
            await events.emit(conn, "cloudinit", "payloads", "updated" if existing else "created", payload_id,
                              {"componentId": node_id})
            changes.append(f"{'updated' if existing else 'created'} cloud-init payload {payload_id}")


async def _run(request: Request, node_id: str, dry_run: bool, work) -> Plan:
    changes: list[str] = []
    node = None
    async with request.app.state.pool.acquire() as conn:
        try:
            async with conn.transaction():
                await work(conn, changes)
                row = await conn.fetchrow(f"SELECT {components.COLUMNS} FROM smd.components WHERE id = $1", node_id)
                node = components.to_resource(row) if row else None
                if dry_run:
                    raise _Rollback()
        except _Rollback:
            pass
    return Plan(kind="NodePlan", node_id=node_id, dry_run=dry_run, changes=changes, node=node)


@router.post(BASE + "/provision", scope="write:smd", status=200, request=NodeProvision, response=Plan,
             summary="Create or update a node, its interfaces, boot parameters and cloud-init payload at once",
             params=(Param("dryRun", "true: report the changes, make none"),))
async def provision_node(request: Request) -> Response:
    node_id = _node_id(request)
    body = await read_json(request, NodeProvision)
    nics = [interfaces.prepare_inline(nic, f"$.networkInterfaces[{i}]")
            for i, nic in enumerate(body.network_interfaces)]
    interfaces.check_distinct_macs(nics, "$.networkInterfaces")
    check_boot_params(body.boot_params, "$.bootParams")
    check_cloud_init(body.cloud_init, "$.cloudInit")
    plan = await _run(request, node_id, _flag(request, "dryRun"),
                      lambda conn, changes: _provision(conn, node_id, body, nics, changes))
    return json_response(plan)


@router.post(BASE + "/decommission", scope="write:smd", status=200, response=Plan,
             summary="Take a node out of service: interfaces, own boot parameters and payload, memberships",
             params=(Param("purge", "true: delete the component itself too"),
                     Param("dryRun", "true: report the changes, make none")))
async def decommission_node(request: Request) -> Response:
    node_id = _node_id(request)
    purge = _flag(request, "purge")

    async def work(conn, changes: list[str]) -> None:
        if not await conn.fetchval("SELECT true FROM smd.components WHERE id = $1 FOR UPDATE", node_id):
            raise problem(404, f"no component {node_id!r}")
        for table, domain, resource, what in (
                ("smd.ethernet_interfaces", "smd", "ethernetinterfaces", "interface"),
                ("bss.boot_params", "bss", "bootparams", "boot parameters"),
                ("cloudinit.payloads", "cloudinit", "payloads", "cloud-init payload")):
            for row in await conn.fetch(f"DELETE FROM {table} WHERE component_id = $1 RETURNING id", node_id):
                await events.emit(conn, domain, resource, "deleted", row["id"])
                changes.append(f"removed {what} {row['id']}")
        for row in await conn.fetch("DELETE FROM smd.group_members WHERE component_id = $1 RETURNING group_name",
                                    node_id):
            changes.append(f"left group {row['group_name']}")
        if purge:
            children = await conn.fetchval("SELECT count(*) FROM smd.components WHERE parent_id = $1", node_id)
            if children:
                raise problem(409, f"component {node_id!r} is the parent of {children} components; re-parent them")
            await conn.execute("DELETE FROM smd.components WHERE id = $1", node_id)
            await events.emit(conn, "smd", "components", "deleted", node_id)
            changes.append(f"deleted component {node_id}")
        else:
            await conn.execute("UPDATE smd.components SET enabled = false, state = 'Empty', updated_at = now() "
                               "WHERE id = $1", node_id)
            await events.emit(conn, "smd", "components", "decommissioned", node_id)
            changes.append(f"disabled component {node_id} (state Empty)")

    plan = await _run(request, node_id, _flag(request, "dryRun"), work)
    return json_response(plan)
