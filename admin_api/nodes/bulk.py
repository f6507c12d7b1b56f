"""POST /hsm/v2/import: register up to 10,000 nodes in one all-or-nothing request.

The body is a JSON array or NDJSON (one node per line).  Every item is
checked before anything is written, and every bad item is reported by its
index; then the whole batch goes in with one statement per table, in one
transaction.

An item may name its BMC (`bmc`: address, credentialId, insecure): the node's
parentId becomes a BMC component with that endpoint, so power control
reaches the node through it.  An address that already is an endpoint is
reused as it stands; otherwise the BMC is the node's xname parent
(`x1000c1s7b0n0` -> `x1000c1s7b0`) or `<node id>-bmc`, created unless it
exists without an endpoint.  Items sharing an address share the BMC.  An item
may also join groups (`groups`): they must exist (an unknown one is a 422
naming the item; the import creates no group), and partitions are joined
through their own routes.  The answer (and the dry run's) lists the nodes,
the BMCs and the group memberships the import makes.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import re

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api import dryrun
from admin_api.auth.binding import check_binding
from admin_api.auth.guard import require_scopes
from admin_api.http import (
    MAX_BODY,
    MAX_BULK_BODY,
    check_values,
    field_problem,
    json_response,
    validation_error,
)
from admin_api.nodes.schemas import NodeImport, check_boot_params, check_cloud_init
from admin_api.routing import Router, request_bytes
from admin_api.smd import components
from admin_api.smd.groups import GROUPS
from admin_api.smd.redfish import ENDPOINTS, address_of, insert_endpoints
from admin_api.smd.schemas import checked_interface
from core import inventory, xname
from core.discovery import BadAddress
from core.identity import ComponentType, generate_id, is_valid_id
from core.problems import FieldError, ProblemError

router = Router("import")
MAX_ITEMS = 10_000
MAX_REPORTED = 1_000
# Values (numbers, strings, objects, arrays) all the nodes of one import may hold: a node with its interfaces,
# boot parameters and metaData holds a few dozen; 32 MiB of `{}` in metaData would be 11 million objects.
MAX_VALUES = 1_000_000
# Events of imported components and interfaces say so (`imported`, as before the write layer).
IMPORT = inventory.Origin("import", {"imported": True})
CONTENT_TYPES = ("application/json", "application/x-ndjson")
_item_decoder = msgspec.json.Decoder(NodeImport)


class ImportedBmc(msgspec.Struct, rename="camel"):
    id: str
    address: str
    # created: the BMC component and its endpoint; endpoint-added: the component existed;
    # reused: the address already was this BMC's endpoint (left as it is)
    action: str
    nodes: list[str]


class ImportResult(msgspec.Struct, rename="camel"):
    kind: str
    created: int
    ids: list[str]
    dry_run: bool = False
    bmcs: list[ImportedBmc] = msgspec.field(default_factory=list)
    groups: dict[str, list[str]] = msgspec.field(default_factory=dict)  # group -> the imported nodes joining it


@dataclasses.dataclass(slots=True)
class Prepared:
    index: int
    id: str
    item: NodeImport
    nics: list[inventory.Interface]
    values: int  # what the item holds, counted towards MAX_VALUES
    bmc_address: str | None = None  # as stored (redfish.address_of)


@dataclasses.dataclass(slots=True)
class BmcPlan:
    """One BMC the batch names (by address), first declared by item `first`."""

    id: str
    address: str
    credential_id: str | None
    insecure: bool
    first: int
    nodes: list[str]
    action: str = "created"


class ItemErrors:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.bad_items: set[int] = set()
        self.conflicts_only = True  # 409 when every error is a clash with what exists, else 422

    def add(self, index: int, field: str, detail: str, status: int = 422) -> None:
        self.bad_items.add(index)
        self.conflicts_only &= status == 409
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(FieldError(field, detail))

    def raise_if_any(self, total: int) -> None:
        if self.errors:
            raise ProblemError(409 if self.conflicts_only else 422,
                               f"{len(self.bad_items)} of {total} items cannot be imported; nothing was "
                               f"imported (each is listed in errors[] by index)", errors=self.errors)


_NDJSON_LINE = re.compile(rb"^[^\n]*\S[^\n]*$", re.MULTILINE)


@functools.cache
def _array_head() -> msgspec.json.Decoder:
    """A decoder of the first MAX_ITEMS + 1 items of a JSON array, each kept as raw JSON.

    msgspec decodes an array into a list completely before it checks its length,
    so `[{},{},...]` in 32 MiB made 11 million objects before being refused.  An
    array-like struct with MAX_ITEMS + 1 fields takes the first items and skips
    the rest without building anything: counting costs at most 10,001 objects.
    """
    fields = [(f"item{i}", msgspec.Raw, msgspec.Raw()) for i in range(MAX_ITEMS + 1)]
    return msgspec.json.Decoder(msgspec.defstruct("ImportArrayHead", fields, array_like=True))


def _raw_items(body: bytes, ndjson: bool) -> list[bytes]:
    """The items of the body, at most MAX_ITEMS + 1 of them (one more tells the caller there are too many)."""
    if ndjson:
        return [m.group() for m in itertools.islice(_NDJSON_LINE.finditer(body), MAX_ITEMS + 1)]
    try:
        head = _array_head().decode(body)
        return [raw for raw in msgspec.structs.astuple(head) if raw]  # an absent item is an empty Raw
    except msgspec.ValidationError:
        raise ProblemError(422, "the body must be a JSON array of nodes (or NDJSON, one node per line)") from None
    except msgspec.DecodeError as exc:
        raise ProblemError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProblemError(400, "the body is nested too deeply") from None


def _prepare(index: int, raw: bytes, errors: ItemErrors) -> Prepared | None:
    where = f"$[{index}]"
    if len(raw) > MAX_BODY:  # what creating this node alone may send; decoding more builds objects by the million
        errors.add(index, where, f"the item is larger than {MAX_BODY} bytes, the most one node may hold")
        return None
    try:
        item = _item_decoder.decode(raw)
        values = check_values(item, where)
        nics = []
        for j, nic in enumerate(item.network_interfaces):
            mac, addresses = checked_interface(nic, f"{where}.networkInterfaces[{j}]")
            nics.append(inventory.Interface(nic.id or inventory.default_interface_id(mac), mac, addresses,
                                            nic.description))
        check_boot_params(item.boot_params, f"{where}.bootParams")
        check_cloud_init(item.cloud_init, f"{where}.cloudInit")
        bmc_address = _checked_bmc(item, where)
        for j, group in enumerate(item.groups):
            if group in item.groups[:j]:
                raise field_problem(f"{where}.groups[{j}]", f"group {group!r} is listed twice")
    except msgspec.ValidationError as exc:
        error = validation_error(exc, where)
        errors.add(index, error.field, error.detail)
        return None
    except msgspec.DecodeError as exc:
        errors.add(index, where, f"not valid JSON: {exc}")
        return None
    except RecursionError:
        errors.add(index, where, "nested too deeply")
        return None
    except ProblemError as exc:
        first = exc.problem.errors[0] if exc.problem.errors else FieldError(where, exc.problem.detail or "")
        errors.add(index, first.field, first.detail)
        return None
    return Prepared(index, item.id or generate_id(item.type.value), item, nics, values, bmc_address)


def _checked_bmc(item: NodeImport, where: str) -> str | None:
    """The item's BMC address as stored, if it names one."""
    if item.bmc is None:
        return None
    if item.type != ComponentType.Node:
        raise field_problem(f"{where}.bmc", f"only a Node is imported with its BMC, not a {item.type.value}")
    if item.parent_id is not None:
        raise field_problem(f"{where}.parentId", "leave parentId out when bmc is given: the node's parent is its BMC")
    try:
        return address_of(item.bmc.address)
    except BadAddress as exc:
        raise field_problem(f"{where}.bmc.address", f"{exc}; expected https://host[:port] or ipmi://host:port") \
            from None


def bmc_id_of(node_id: str) -> str:
    """The BMC a node's import creates: its xname parent (`x1000c1s7b0n0` -> `x1000c1s7b0`), else `<id>-bmc`."""
    found = xname.parse(node_id)
    if found is not None and found.kind == "Node":
        return found.id[:found.id.rindex("n")]
    return f"{node_id}-bmc"


def _plan_bmcs(nodes: list[Prepared], errors: ItemErrors) -> dict[str, BmcPlan]:
    """The BMCs the batch names, by address: items sharing one share its BMC, and must agree on its credential."""
    plans: dict[str, BmcPlan] = {}
    by_id: dict[str, BmcPlan] = {}
    node_ids = {n.id: n.index for n in nodes}
    for node in nodes:
        bmc, where = node.item.bmc, f"$[{node.index}].bmc"
        if bmc is None or node.bmc_address is None:
            continue
        plan = plans.get(node.bmc_address)
        if plan is not None:
            if (bmc.credential_id, bmc.insecure) != (plan.credential_id, plan.insecure):
                errors.add(node.index, f"{where}.credentialId", f"item {plan.first} gives BMC {plan.address} "
                           f"another credentialId or insecure; items sharing a BMC must agree")
            plan.nodes.append(node.id)
            continue
        bmc_id = bmc_id_of(node.id)
        if not is_valid_id(bmc_id):
            errors.add(node.index, where, f"its BMC would be {bmc_id[:60]!r}, not a valid id: shorten the node's id")
        elif bmc_id in node_ids:
            errors.add(node.index, where, f"its BMC would be {bmc_id!r}, which is item {node_ids[bmc_id]}'s id")
        elif bmc_id in by_id:
            errors.add(node.index, f"{where}.address", f"BMC {bmc_id!r} is at {by_id[bmc_id].address} in item "
                                                       f"{by_id[bmc_id].first}")
        else:
            plans[node.bmc_address] = by_id[bmc_id] = BmcPlan(bmc_id, node.bmc_address, bmc.credential_id,
                                                               bmc.insecure, node.index, [node.id])
    return plans


def _check_batch(nodes: list[Prepared], errors: ItemErrors) -> None:
    """Duplicates inside the batch itself."""
    first_id: dict[str, int] = {}
    first_mac: dict[str, int] = {}
    first_nid: dict[int, int] = {}
    for node in nodes:
        where = f"$[{node.index}]"
        if node.id in first_id:
            errors.add(node.index, f"{where}.id", f"{node.id!r} is also item {first_id[node.id]}")
        first_id.setdefault(node.id, node.index)
        if node.item.nid is not None:
            if node.item.nid in first_nid:
                errors.add(node.index, f"{where}.nid", f"nid {node.item.nid} is also item {first_nid[node.item.nid]}")
            first_nid.setdefault(node.item.nid, node.index)
        for j, nic in enumerate(node.nics):
            if nic.mac in first_mac:
                errors.add(node.index, f"{where}.networkInterfaces[{j}].macAddr",
                           f"{nic.mac} is also in item {first_mac[nic.mac]}")
            first_mac.setdefault(nic.mac, node.index)


async def _check_database(conn, nodes: list[Prepared], errors: ItemErrors) -> None:
    """What already exists: ids, MACs, interface ids and nids taken; parents missing."""
    by_id = {n.id: n for n in nodes}
    for row in await conn.fetch("SELECT id FROM smd.components WHERE id = ANY($1::text[])", list(by_id)):
        node = by_id[row["id"]]
        errors.add(node.index, f"$[{node.index}].id", f"component {node.id!r} already exists", 409)
    owner_of_mac = {nic.mac: (n, j) for n in nodes for j, nic in enumerate(n.nics)}
    taken_macs = set()
    for row in await conn.fetch("SELECT mac, component_id FROM smd.ethernet_interfaces WHERE mac = ANY($1::text[])",
                                list(owner_of_mac)):
        node, j = owner_of_mac[row["mac"]]
        taken_macs.add(row["mac"])
        errors.add(node.index, f"$[{node.index}].networkInterfaces[{j}].macAddr",
                   f"{row['mac']} already belongs to component {row['component_id']!r}", 409)
    # An interface id clash matters only where the MAC itself is free (ids default to the MAC).
    nic_ids = {nic.id: (n, j) for n in nodes for j, nic in enumerate(n.nics) if nic.mac not in taken_macs}
    for row in await conn.fetch("SELECT id FROM smd.ethernet_interfaces WHERE id = ANY($1::text[])", list(nic_ids)):
        node, j = nic_ids[row["id"]]
        errors.add(node.index, f"$[{node.index}].networkInterfaces[{j}].id", f"interface {row['id']!r} exists",
                   409)
    nids = {n.item.nid: n for n in nodes if n.item.nid is not None}
    for row in await conn.fetch("SELECT nid, id FROM smd.components WHERE nid = ANY($1::bigint[])", list(nids)):
        node = nids[row["nid"]]
        errors.add(node.index, f"$[{node.index}].nid", f"nid {row['nid']} already belongs to {row['id']!r}", 409)
    parents = {n.item.parent_id for n in nodes if n.item.parent_id is not None} - set(by_id)
    if parents:
        known = {r["id"] for r in await conn.fetch("SELECT id FROM smd.components WHERE id = ANY($1::text[])",
                                                   list(parents))}
        for node in nodes:
            if node.item.parent_id in parents - known:
                errors.add(node.index, f"$[{node.index}].parentId", f"no component {node.item.parent_id!r}")


async def _check_groups(conn, nodes: list[Prepared], errors: ItemErrors) -> dict[str, list[str]]:
    """The groups the items join (each must exist, and be a group), with their new members."""
    joins: dict[str, list[str]] = {}
    for node in nodes:
        for group in node.item.groups:
            joins.setdefault(group, []).append(node.id)
    if not joins:
        return {}
    exclusive = {r["name"]: r["exclusive"] for r in await conn.fetch(
        "SELECT name, exclusive FROM smd.groups WHERE name = ANY($1::text[])", list(joins))}
    for node in nodes:
        for j, group in enumerate(node.item.groups):
            if group not in exclusive:
                errors.add(node.index, f"$[{node.index}].groups[{j}]",
                           f"no group {group!r}: create it first (an import joins existing groups only)")
            elif exclusive[group]:
                errors.add(node.index, f"$[{node.index}].groups[{j}]",
                           f"{group!r} is a partition: add members at /hsm/v2/partitions/{group}/members")
    return joins


async def _check_bmcs(request: Request, conn, plans: dict[str, BmcPlan], errors: ItemErrors) -> None:
    """Resolve each BMC against what exists: an endpoint at its address is reused, a BMC component without an
    endpoint gets one, anything else is a clash; credentials must exist and the caller may bind them there."""
    if not plans:
        return
    for row in await conn.fetch("SELECT id, address, credential_id, insecure FROM smd.redfish_endpoints "
                                "WHERE address = ANY($1::text[])", list(plans)):
        plan = plans[row["address"]]
        plan.id, plan.action = row["id"], "reused"
        if plan.credential_id not in (None, row["credential_id"]) or (plan.insecure and not row["insecure"]):
            errors.add(plan.first, f"$[{plan.first}].bmc.credentialId",
                       f"{plan.address} is already the endpoint of BMC {row['id']!r}, with credential "
                       f"{row['credential_id']!r} (insecure: {str(row['insecure']).lower()}): change it at "
                       f"{ENDPOINTS.base}/{row['id']}, or leave credentialId out here", 409)
    new = {plan.id: plan for plan in plans.values() if plan.action != "reused"}
    for row in await conn.fetch("SELECT c.id, c.type, e.address FROM smd.components c LEFT JOIN "
                                "smd.redfish_endpoints e ON e.id = c.id WHERE c.id = ANY($1::text[])", list(new)):
        plan = new[row["id"]]
        if row["type"] != "BMC":
            errors.add(plan.first, f"$[{plan.first}].bmc", f"its BMC would be {plan.id!r}, which is a {row['type']}",
                       409)
        elif row["address"] is not None:
            errors.add(plan.first, f"$[{plan.first}].bmc.address",
                       f"BMC {plan.id!r} already has its endpoint at {row['address']}", 409)
        else:
            plan.action = "endpoint-added"
    named = {plan.credential_id for plan in new.values() if plan.credential_id is not None}
    known = {r["id"] for r in await conn.fetch("SELECT id FROM auth.credentials WHERE id = ANY($1::text[])",
                                               list(named))} if named else set()
    for plan in new.values():
        if plan.credential_id is not None and plan.credential_id not in known:
            errors.add(plan.first, f"$[{plan.first}].bmc.credentialId", f"no credential {plan.credential_id!r}")
    if errors.errors:
        return
    # As the endpoint route does: a token that cannot read credentials sends none where it is not sent today.
    bindings: dict[tuple[str, bool], list[str]] = {}
    for plan in new.values():
        if plan.credential_id is not None:
            bindings.setdefault((plan.credential_id, plan.insecure), []).append(plan.address)
    for (credential_id, insecure), addresses in bindings.items():
        await check_binding(request, conn, credential_id, addresses, insecure, "the imported BMCs")


async def _insert(conn, nodes: list[Prepared], bmcs: dict[str, BmcPlan], groups: dict[str, list[str]]) -> None:
    bmc_components: list[tuple[str, inventory.Component, list[inventory.Interface]]] = [
        (plan.id, _bmc_component(plan.id), []) for plan in bmcs.values() if plan.action == "created"]
    parent = {node_id: plan.id for plan in bmcs.values() for node_id in plan.nodes}
    await inventory.import_components(
        conn, [*bmc_components, *((n.id, _component(n, parent.get(n.id)), n.nics) for n in nodes)], IMPORT)
    await insert_endpoints(conn, [(plan.id, plan.address, plan.credential_id, plan.insecure)
                                  for plan in bmcs.values() if plan.action != "reused"])
    for name in sorted(groups):  # one order for every import: two of them lock the same groups without deadlock
        await GROUPS.fetch(conn, name, lock=True)
        await GROUPS.admit_members(conn, name, groups[name])
    params = [(f"{n.id}-boot", n.id, n.item.boot_params) for n in nodes if n.item.boot_params is not None]
    if params:
        await conn.execute(
            "INSERT INTO bss.boot_params (id, component_id, kernel, initrd, cmdline) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])",
            [p[0] for p in params], [p[1] for p in params], [p[2].kernel for p in params],
            [p[2].initrd for p in params], [p[2].cmdline for p in params])
    payloads = [(f"{n.id}-cloud-init", n.id, n.item.cloud_init) for n in nodes if n.item.cloud_init is not None]
    if payloads:
        await conn.execute(
            "INSERT INTO cloudinit.payloads (id, component_id, user_data, meta_data, vendor_data) "
            "SELECT i, c, u, m::jsonb, v FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) "
            "AS x(i, c, u, m, v)",
            [p[0] for p in payloads], [p[1] for p in payloads], [p[2].user_data for p in payloads],
            [json.dumps(p[2].meta_data) for p in payloads], [p[2].vendor_data for p in payloads])


def _component(node: Prepared, bmc_id: str | None) -> inventory.Component:
    component = components.to_component(node.item)
    return component if bmc_id is None else dataclasses.replace(component, parent_id=bmc_id)


def _bmc_component(bmc_id: str) -> inventory.Component:
    """A BMC component; an xname id records its location, as any xname component does (ADR-010)."""
    found = xname.parse(bmc_id)
    if found is None or found.id != bmc_id:
        return inventory.Component(type="BMC")
    return inventory.Component(type="BMC", rack=found.rack, unit=found.unit, slot=found.slot or 0)


@router.post("/hsm/v2/import", scope="write:smd", summary="Bulk import of nodes (JSON array or NDJSON), all or nothing",
             request=list[NodeImport], response=ImportResult, content_types=CONTENT_TYPES,
             params=(dryrun.PARAM,), body_limit=MAX_BULK_BODY)
async def import_nodes(request: Request) -> Response:
    body = await request_bytes(request)  # items are decoded one by one (_prepare)
    ndjson = request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/x-ndjson"
    raws = _raw_items(body, ndjson)
    if not raws:
        raise ProblemError(422, "nothing to import: the body holds no nodes")
    if len(raws) > MAX_ITEMS:
        raise ProblemError(422, f"more than {MAX_ITEMS} nodes in one request; the limit is {MAX_ITEMS}: split the file")
    errors = ItemErrors()
    nodes: list[Prepared] = []
    held = 0
    for i, raw in enumerate(raws):
        if (node := _prepare(i, raw, errors)) is not None:
            nodes.append(node)
            held += node.values
            if held > MAX_VALUES:  # refused before the rest is decoded
                raise ProblemError(422, f"the nodes hold more than {MAX_VALUES} values in all (metaData, most "
                                        f"likely); nothing was imported: split the file")
    # Items carrying boot parameters, a payload, a BMC or groups write those too (dry run or not).
    require_scopes(request, {scope for node in nodes for given, scope in (
        (node.item.boot_params, "write:bss"), (node.item.cloud_init, "write:cloudinit"),
        (node.item.bmc, ENDPOINTS.write_scope), (node.item.groups or None, GROUPS.write_scope)) if given is not None},
        "items carry bootParams, cloudInit, a bmc or groups")
    _check_batch(nodes, errors)
    bmcs = _plan_bmcs(nodes, errors)
    errors.raise_if_any(len(raws))
    dry_run = dryrun.requested(request)
    async with request.app.state.pool.acquire() as conn, dryrun.transaction(conn, dry_run):
        await _check_database(conn, nodes, errors)
        groups = await _check_groups(conn, nodes, errors)
        await _check_bmcs(request, conn, bmcs, errors)
        errors.raise_if_any(len(raws))
        await _insert(conn, nodes, bmcs, groups)
    result = ImportResult(kind="ImportResult", created=0 if dry_run else len(nodes), ids=[n.id for n in nodes],
                          dry_run=dry_run, groups=groups,
                          bmcs=[ImportedBmc(p.id, p.address, p.action, p.nodes) for p in bmcs.values()])
    return json_response(result, 200 if dry_run else 201)

