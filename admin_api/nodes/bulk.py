"""POST /hsm/v2/import: register up to 10,000 nodes in one all-or-nothing request.

The body is a JSON array or NDJSON (one node per line).  Every item is
checked before anything is written, and every bad item is reported by its
index; then the whole batch goes in with one statement per table, in one
transaction.
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
from admin_api.auth.guard import require_scopes
from admin_api.http import (
    MAX_BODY,
    MAX_BULK_BODY,
    check_values,
    json_response,
    validation_error,
)
from admin_api.nodes.schemas import NodeImport, check_boot_params, check_cloud_init
from admin_api.routing import Router, request_bytes
from admin_api.smd import components
from admin_api.smd.schemas import checked_interface
from core import inventory
from core.identity import generate_id
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


class ImportResult(msgspec.Struct, rename="camel"):
    kind: str
    created: int
    ids: list[str]
    dry_run: bool = False


@dataclasses.dataclass(slots=True)
class Prepared:
    index: int
    id: str
    item: NodeImport
    nics: list[inventory.Interface]
    values: int  # what the item holds, counted towards MAX_VALUES


class ItemErrors:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.bad_items: set[int] = set()

    def add(self, index: int, field: str, detail: str) -> None:
        self.bad_items.add(index)
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(FieldError(field, detail))

    def raise_if_any(self, total: int, status: int = 422) -> None:
        if self.errors:
            raise ProblemError(status, f"{len(self.bad_items)} of {total} items cannot be imported; nothing was "
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
    return Prepared(index, item.id or generate_id(item.type.value), item, nics, values)


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
        errors.add(node.index, f"$[{node.index}].id", f"component {node.id!r} already exists")
    owner_of_mac = {nic.mac: (n, j) for n in nodes for j, nic in enumerate(n.nics)}
    taken_macs = set()
    for row in await conn.fetch("SELECT mac, component_id FROM smd.ethernet_interfaces WHERE mac = ANY($1::text[])",
                                list(owner_of_mac)):
        node, j = owner_of_mac[row["mac"]]
        taken_macs.add(row["mac"])
        errors.add(node.index, f"$[{node.index}].networkInterfaces[{j}].macAddr",
                   f"{row['mac']} already belongs to component {row['component_id']!r}")
    # An interface id clash matters only where the MAC itself is free (ids default to the MAC).
    nic_ids = {nic.id: (n, j) for n in nodes for j, nic in enumerate(n.nics) if nic.mac not in taken_macs}
    for row in await conn.fetch("SELECT id FROM smd.ethernet_interfaces WHERE id = ANY($1::text[])", list(nic_ids)):
        node, j = nic_ids[row["id"]]
        errors.add(node.index, f"$[{node.index}].networkInterfaces[{j}].id", f"interface {row['id']!r} exists")
    nids = {n.item.nid: n for n in nodes if n.item.nid is not None}
    for row in await conn.fetch("SELECT nid, id FROM smd.components WHERE nid = ANY($1::bigint[])", list(nids)):
        node = nids[row["nid"]]
        errors.add(node.index, f"$[{node.index}].nid", f"nid {row['nid']} already belongs to {row['id']!r}")
    parents = {n.item.parent_id for n in nodes if n.item.parent_id is not None} - set(by_id)
    if parents:
        known = {r["id"] for r in await conn.fetch("SELECT id FROM smd.components WHERE id = ANY($1::text[])",
                                                   list(parents))}
        for node in nodes:
            if node.item.parent_id in parents - known:
                errors.add(node.index, f"$[{node.index}].parentId", f"no component {node.item.parent_id!r}")


async def _insert(conn, nodes: list[Prepared]) -> None:
    await inventory.import_components(conn, [(n.id, components.to_component(n.item), n.nics) for n in nodes], IMPORT)
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
    # Items carrying boot parameters or a payload write those domains too (dry run or not).
    require_scopes(request, {scope for node in nodes for given, scope in ((node.item.boot_params, "write:bss"),
                                                                          (node.item.cloud_init, "write:cloudinit"))
                             if given is not None}, "items carry bootParams or cloudInit")
    _check_batch(nodes, errors)
    errors.raise_if_any(len(raws))
    dry_run = dryrun.requested(request)
    async with request.app.state.pool.acquire() as conn, dryrun.transaction(conn, dry_run):
        await _check_database(conn, nodes, errors)
        errors.raise_if_any(len(raws), status=409 if not any(
            e.field.endswith(".parentId") for e in errors.errors) else 422)
        await _insert(conn, nodes)
    result = ImportResult(kind="ImportResult", created=0 if dry_run else len(nodes), ids=[n.id for n in nodes],
                          dry_run=dry_run)
    return json_response(result, 200 if dry_run else 201)

