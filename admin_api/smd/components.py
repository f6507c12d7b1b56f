"""/hsm/v2/State/Components: the inventory of components."""

from __future__ import annotations

import ipaddress

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.auth.guard import require_scopes
from admin_api.collection import Collection, Where
from admin_api.http import field_problem, query_list
from admin_api.resources import list_answer, metadata, order_by, paging, sparse_fields
from admin_api.routing import PAGING, Param, Router, one_of, sort_param
from admin_api.scoped import entry_scopes
from admin_api.smd import interfaces
from admin_api.smd.schemas import ComponentCreateSpec, ComponentSpec, Location
from core import inventory, profiles
from core.envelope import Resource
from core.identity import ComponentState, ComponentType, Role, generate_id, is_valid_id

KIND, API_VERSION = "Component", "hsm/v2"
BASE = "/hsm/v2/State/Components"
router = Router("components")

COLUMNS = inventory.COMPONENT_COLUMNS
SORTABLE = {"id": "id", "type": "type", "state": "state", "role": "role", "nid": "nid", "rack": "rack",
            "unit": "unit", "createdAt": "created_at", "updatedAt": "updated_at"}
SPEC_FIELDS = frozenset(f.encode_name for f in msgspec.structs.fields(ComponentSpec))
LIST_PARAMS = (
    Param("type", "component types, comma = OR", schema={"type": "string", "pattern": one_of(ComponentType)}),
    Param("state", "states, comma = OR", schema={"type": "string", "pattern": one_of(ComponentState)}),
    Param("role", "roles, comma = OR", schema={"type": "string", "pattern": one_of(Role)}),
    Param("rack", "racks, comma = OR"), Param("parentId", "parent ids, comma = OR"),
    Param("nid", "node numbers, comma = OR", schema={"type": "string", "pattern": r"^(\d{1,15}(,\d{1,15})*)?$"}),
    Param("group", "member of any of these groups"),
    Param("q", "text search: the id contains it, a MAC contains it (any spelling), or an IP address is it",
          schema={"type": "string", "maxLength": 255}),
    *PAGING, sort_param(SORTABLE),
    Param("after", "keyset paging: items whose id sorts after this one (with the default order)"),
    Param("fields", "spec fields to return", schema={"type": "string", "pattern": one_of(SPEC_FIELDS)}),
)


def to_spec(row) -> ComponentSpec:
    return ComponentSpec(
        type=ComponentType(row["type"]), state=ComponentState(row["state"]),
        role=Role(row["role"]) if row["role"] else None, sub_role=row["sub_role"], nid=row["nid"],
        arch=row["arch"], enabled=row["enabled"], parent_id=row["parent_id"],
        location=Location(rack=row["rack"], unit=row["unit"], slot=row["slot"], sub_slot=row["sub_slot"]),
        labels=row["labels"] or {},
    )


def to_resource(row) -> Resource[ComponentSpec]:
    return Resource(kind=KIND, api_version=API_VERSION, metadata=metadata(row["id"], row), spec=to_spec(row))


def to_component(spec: ComponentSpec) -> inventory.Component:
    """The values the write layer (core.inventory) stores for a spec."""
    loc = spec.location
    return inventory.Component(
        type=spec.type.value, state=spec.state.value, role=spec.role.value if spec.role else "",
        sub_role=spec.sub_role, nid=spec.nid, arch=spec.arch, enabled=spec.enabled, parent_id=spec.parent_id,
        rack=loc.rack, unit=loc.unit, slot=loc.slot, sub_slot=loc.sub_slot, labels=profiles.check_labels(spec.labels))


class Components(Collection):
    base, table, select, kind, api_version = BASE, "smd.components", f"SELECT {COLUMNS} FROM smd.components", KIND, \
        API_VERSION
    noun, names, spec, create_spec = "component", ("component", "components"), ComponentSpec, ComponentCreateSpec
    domain, events_as, read_scope, write_scope = "smd", "components", "read:smd", "write:smd"
    list_params, sortable = LIST_PARAMS, SORTABLE
    summaries = {"list": "List components", "create": "Create a component (and its interfaces)",
                 "get": "Get one component", "replace": "Replace a component (If-Match required)",
                 "patch": "Change a component (JSON merge patch, RFC 7396)",
                 "delete": "Delete a component, its interfaces and memberships"}

    def to_resource(self, row) -> Resource[ComponentSpec]:
        return to_resource(row)

    def where(self, request: Request) -> Where:
        where = Where()
        for name, enum in (("type", ComponentType), ("state", ComponentState), ("role", Role)):
            values = query_list(request, name)
            if values:
                bad = [v for v in values if v not in enum.__members__]
                if bad:
                    raise field_problem(name, f"unknown {name} {bad[0][:40]!r}; one of {', '.join(enum.__members__)}",
                                        400)
                where.add(f"{name} = ANY({{}}::text[])", values)
        if racks := query_list(request, "rack"):
            where.add("rack = ANY({}::text[])", racks)
        if parents := query_list(request, "parentId"):
            where.add("parent_id = ANY({}::text[])", parents)
        if nids := query_list(request, "nid"):
            if not all(n.isascii() and n.isdigit() and len(n) < 17 for n in nids):
                raise field_problem("nid", "node numbers are whole numbers", 400)
            where.add("nid = ANY({}::bigint[])", [int(n) for n in nids])
        if groups := query_list(request, "group"):
            where.add("id IN (SELECT component_id FROM smd.group_members WHERE group_name = ANY({}::text[]))", groups)
        if text := request.query_params.get("q", "").strip():
            search(where, text)
        return where

    async def list(self, request: Request) -> Response:
        """The filters of `where`, plus keyset paging (`after`, not counted in the total) and sparse fields."""
        limit, offset = paging(request)
        counted = self.where(request)
        where = counted.copy()
        if after := request.query_params.get("after"):
            # Keyset paging: cheap at any depth, unlike a large offset.
            if query_list(request, "sort") not in ([], ["id"]):
                raise field_problem("after", "works with the default order (sort=id) only", 400)
            where.add("id > {}", after)
        fields = sparse_fields(request, SPEC_FIELDS)
        order = order_by(request, SORTABLE)
        async with request.app.state.pool.acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM smd.components{counted}", *counted.args)
            rows = await conn.fetch(f"SELECT {COLUMNS} FROM smd.components{where} ORDER BY {order} "
                                    f"LIMIT {limit} OFFSET {offset}", *where.args)
        return list_answer(request, "ComponentList", API_VERSION, [to_resource(r) for r in rows], total, limit,
                           offset, fields)

    def admit(self, body) -> tuple[str, tuple]:
        spec = body.spec
        component_id = body.metadata.id or generate_id(spec.type.value)
        if not is_valid_id(component_id):
            raise field_problem("$.metadata.id", "not a valid component id")
        nics = [interfaces.prepare_inline(nic, f"$.spec.networkInterfaces[{i}]")
                for i, nic in enumerate(spec.network_interfaces)]
        interfaces.check_distinct_macs(nics, "$.spec.networkInterfaces")
        return component_id, (spec, nics)

    async def insert(self, request: Request, conn, key: str, prepared: tuple):
        spec, nics = prepared
        return await inventory.create_component(conn, key, to_component(spec), inventory.ADMIN, interfaces=nics)

    async def update(self, request: Request, conn, key: str, spec: ComponentSpec, patch: dict | None):
        return await inventory.replace_component(conn, key, to_component(spec), inventory.ADMIN)

    async def remove(self, request: Request, conn, key: str, row) -> None:
        await remove_component(request, conn, key)


def search(where: Where, text: str) -> None:
    """`q`: an id that starts with it (any case), an interface whose MAC starts with it (any spelling, so a
    whole MAC too) or an IP address that is it.  Prefixes, not substrings, so that each part is an index
    range at any size (0017_component_search.sql) rather than a read of every row."""
    if len(text) > 255:
        raise field_problem("q", "at most 255 characters", 400)
    if not text.isascii():  # no id, MAC or address has other characters
        where.conditions.append("false")
        return
    ids = _starting(where, 'lower(id) COLLATE "C"', text.lower())
    if _is_ip(text):
        where.args.append(text)
        interface = f"ip_addrs @> jsonb_build_array(jsonb_build_object('ipAddress', ${len(where.args)}::text))"
    elif (mac := _mac_start(text)) is not None:
        interface = _starting(where, 'mac COLLATE "C"', mac)
    else:
        where.conditions.append(ids)
        return
    # A union of two index ranges; an OR would read every component to test it.
    where.conditions.append(f"id IN (SELECT id FROM smd.components WHERE {ids} "
                            f"UNION SELECT component_id FROM smd.ethernet_interfaces WHERE {interface})")


def _starting(where: Where, column: str, prefix: str) -> str:
    """`column` starts with `prefix`, as a range an index on the column answers."""
    where.args += [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]
    return f"({column} >= ${len(where.args) - 1} AND {column} < ${len(where.args)})"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _mac_start(text: str) -> str | None:
    """The stored (lowercase, colon-separated) form of the start of a MAC written any accepted way."""
    digits = "".join(c for c in text.lower() if c not in ":-.")
    if not 0 < len(digits) <= 12 or any(c not in "0123456789abcdef" for c in digits):
        return None
    return ":".join(digits[i:i + 2] for i in range(0, len(digits), 2))


async def remove_component(request: Request, conn, component_id: str):
    """Delete a component as a user asks it (every face): not a parent of others, and only with the write scopes
    of the boot parameters and cloud-init payloads scoped to it, which go with it.  Its last row, None if none."""
    await inventory.check_deletable(conn, component_id)
    require_scopes(request, await entry_scopes(conn, "component_id", component_id),
                   "the component has boot parameters or a cloud-init payload of its own, which go with it")
    return await inventory.delete_component(conn, component_id, inventory.ADMIN)


Components().routes(router)
