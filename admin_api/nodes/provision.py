"""Atomic node provisioning and decommissioning: one call, one transaction.

POST /hsm/v2/nodes/{id}/provision makes the node, its interfaces, its own
boot parameters and cloud-init payload exactly what the body says.
POST /hsm/v2/nodes/{id}/decommission takes it out of service (or, with
`purge=true`, out of the inventory).  `dryRun=true` runs the same
transaction, reports what it would change, and rolls it back.

Both are write:smd routes that also write other domains: boot parameters
need write:bss and a cloud-init payload write:cloudinit, whether the body
sets them, removes them (null) or decommissioning deletes them, dry run or not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api import dryrun
from admin_api.auth.guard import require_scopes
from admin_api.http import field_problem, json_response, problem, query_flag
from admin_api.nodes.schemas import NodeProvision, check_boot_params, check_cloud_init
from admin_api.routing import Param, Router, request_body
from admin_api.scoped import entry_scopes
from admin_api.smd import components, interfaces
from admin_api.smd.components import ComponentSpec
from core import events, inventory
from core.envelope import Resource
from core.identity import is_valid_id

router = Router("nodes")
BASE = "/hsm/v2/nodes/{id}"
Entry = TypeVar("Entry")


class Plan(msgspec.Struct, rename="camel"):
    kind: str
    node_id: str
    dry_run: bool
    changes: list[str]
    node: Resource[ComponentSpec] | None = None


def _node_id(request: Request) -> str:
    node_id = request.path_params["id"]
    if not is_valid_id(node_id):
        raise field_problem("id", f"{node_id[:255]!r} is not a valid component id", 404)
    return node_id


async def _provision(conn, node_id: str, body: NodeProvision, nics: list, changes: list[str]) -> None:
    spec = ComponentSpec(**{f.name: getattr(body, f.name) for f in msgspec.structs.fields(ComponentSpec)})
    component = components.to_component(spec)
    if await inventory.fetch_component(conn, node_id, lock=True):
        await inventory.replace_component(conn, node_id, component, inventory.ADMIN)
        changes.append(f"updated component {node_id}")
    else:
        await inventory.create_component(conn, node_id, component, inventory.ADMIN)
        changes.append(f"created component {node_id}")

    # Interfaces: exactly the ones given, matched by MAC.
    current = {r["mac"]: r for r in await conn.fetch(
        "SELECT id, mac, ip_addrs, description FROM smd.ethernet_interfaces WHERE component_id = $1", node_id)}
    wanted = {nic.mac: nic for nic in nics}
    for mac in sorted(set(current) - set(wanted)):
        await inventory.delete_interface(conn, current[mac]["id"], inventory.ADMIN)
        changes.append(f"removed interface {mac}")
    new = [nic for mac, nic in wanted.items() if mac not in current]
    await inventory.create_interfaces(conn, node_id, new, inventory.ADMIN)
    changes.extend(f"added interface {nic.mac}" for nic in new)
    for mac, nic in wanted.items():
        row = current.get(mac)
        if row is not None and (row["ip_addrs"] != nic.ip_addrs or row["description"] != nic.description):
            # The interface keeps its id: it is matched by MAC.
            await inventory.replace_interface(conn, node_id, dataclasses.replace(nic, id=row["id"]), inventory.ADMIN)
            changes.append(f"updated interface {mac}")

    await _set_own_entry(conn, node_id, changes, body.boot_params, "bss.boot_params", "bss", "bootparams",
                         "boot parameters", f"{node_id}-boot",
                         lambda bp: {"kernel": bp.kernel, "initrd": bp.initrd, "cmdline": bp.cmdline},
                         lambda bp: msgspec.to_builtins(bp))
    await _set_own_entry(conn, node_id, changes, body.cloud_init, "cloudinit.payloads", "cloudinit", "payloads",
                         "cloud-init payload", f"{node_id}-cloud-init",
                         lambda ci: {"user_data": ci.user_data, "meta_data": ci.meta_data, "vendor_data": ci.vendor_data},
                         lambda _ci: {"componentId": node_id})


async def _set_own_entry(conn, node_id: str, changes: list[str], wanted: Entry | None | msgspec.UnsetType,
                         table: str, domain: str, resource: str, what: str, default_id: str,
                         columns: Callable[[Entry], dict[str, Any]], event_data: Callable[[Entry], Any]) -> None:
    """The node's own boot parameters or payload: left out keeps it, null removes it, a value sets it."""
    if wanted is msgspec.UNSET:
        return
    existing = await conn.fetchval(f"SELECT id FROM {table} WHERE component_id = $1", node_id)
    if wanted is None:
        if existing:
            await conn.execute(f"DELETE FROM {table} WHERE id = $1", existing)
            await events.emit(conn, domain, resource, "deleted", existing)
            changes.append(f"removed {what} {existing}")
        return
    entry_id = existing or default_id
    values = columns(wanted)
    names = list(values)
    await conn.execute(
        f"INSERT INTO {table} (id, component_id, {', '.join(names)}) "
        f"VALUES ($1, $2, {', '.join(f'${i + 3}' for i in range(len(names)))}) ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{n} = excluded.{n}" for n in names) + ", updated_at = now()",
        entry_id, node_id, *values.values())
    action = "updated" if existing else "created"
    await events.emit(conn, domain, resource, action, entry_id, event_data(wanted))
    changes.append(f"{action} {what} {entry_id}")


async def _run(request: Request, node_id: str, dry_run: bool, work) -> Plan:
    changes: list[str] = []
    node = None
    async with request.app.state.pool.acquire() as conn, dryrun.transaction(conn, dry_run):
        await work(conn, changes)
        row = await conn.fetchrow(f"SELECT {components.COLUMNS} FROM smd.components WHERE id = $1", node_id)
        node = components.to_resource(row) if row else None
    return Plan(kind="NodePlan", node_id=node_id, dry_run=dry_run, changes=changes, node=node)


@router.post(BASE + "/provision", scope="write:smd", status=200, request=NodeProvision, response=Plan,
             summary="Create or update a node, its interfaces, boot parameters and cloud-init payload at once",
             params=(dryrun.PARAM,))
async def provision_node(request: Request) -> Response:
    node_id = _node_id(request)
    body = await request_body(request)
    nics = [interfaces.prepare_inline(nic, f"$.networkInterfaces[{i}]")
            for i, nic in enumerate(body.network_interfaces)]
    interfaces.check_distinct_macs(nics, "$.networkInterfaces")
    check_boot_params(body.boot_params, "$.bootParams")
    check_cloud_init(body.cloud_init, "$.cloudInit")
    # Setting or removing (null) the node's own entries writes their domains: the body needs their scopes.
    require_scopes(request, {scope for given, scope in ((body.boot_params, "write:bss"),
                                                        (body.cloud_init, "write:cloudinit"))
                             if given is not msgspec.UNSET}, "the body sets bootParams or cloudInit")
    plan = await _run(request, node_id, dryrun.requested(request),
                      lambda conn, changes: _provision(conn, node_id, body, nics, changes))
    return json_response(plan)


@router.post(BASE + "/decommission", scope="write:smd", status=200, response=Plan,
             summary="Take a node out of service: interfaces, own boot parameters and payload, memberships",
             params=(Param("purge", "true: delete the component itself too"),
                     dryrun.PARAM))
async def decommission_node(request: Request) -> Response:
    node_id = _node_id(request)
    purge = query_flag(request, "purge")

    async def work(conn, changes: list[str]) -> None:
        current = await inventory.fetch_component(conn, node_id, lock=True)
        if current is None:
            raise problem(404, f"no component {node_id!r}")
        require_scopes(request, await entry_scopes(conn, "component_id", node_id),
                       "the node has boot parameters or a cloud-init payload of its own, which this deletes")
        changes.extend(f"removed interface {nic_id}"
                       for nic_id in await inventory.delete_interfaces_of(conn, node_id, inventory.ADMIN))
        for table, domain, resource, what in (
                ("bss.boot_params", "bss", "bootparams", "boot parameters"),
                ("cloudinit.payloads", "cloudinit", "payloads", "cloud-init payload")):
            for row in await conn.fetch(f"DELETE FROM {table} WHERE component_id = $1 RETURNING id", node_id):
                await events.emit(conn, domain, resource, "deleted", row["id"])
                changes.append(f"removed {what} {row['id']}")
        for row in await conn.fetch("DELETE FROM smd.group_members WHERE component_id = $1 RETURNING group_name",
                                    node_id):
            changes.append(f"left group {row['group_name']}")
        if purge:
            await inventory.delete_component(conn, node_id, inventory.ADMIN)
            changes.append(f"deleted component {node_id}")
        else:
            out_of_service = dataclasses.replace(inventory.Component.from_row(current), enabled=False, state="Empty")
            await inventory.replace_component(conn, node_id, out_of_service, inventory.ADMIN, action="decommissioned")
            changes.append(f"disabled component {node_id} (state Empty)")

    plan = await _run(request, node_id, dryrun.requested(request), work)
    return json_response(plan)
