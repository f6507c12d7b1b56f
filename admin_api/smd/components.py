"""/hsm/v2/State/Components: the inventory of components."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.auth.guard import require_scopes
from admin_api.http import (
    MERGE_PATCH_TYPES,
    check_if_match,
    field_problem,
    patched,
    query_list,
    read_json,
    read_patch,
)
from admin_api.resources import (
    answer,
    etag_of,
    fetch_one,
    list_answer,
    metadata,
    order_by,
    paging,
    path_key,
    sparse_fields,
)
from admin_api.routing import PAGING, Param, Router, one_of, sort_param
from admin_api.scoped import entry_scopes
from admin_api.smd import interfaces
from admin_api.smd.schemas import ComponentCreateSpec, ComponentSpec, Location
from core import inventory
from core.envelope import Resource, ResourceList, ResourceRequest
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
    )


def to_resource(row) -> Resource[ComponentSpec]:
    return Resource(kind=KIND, api_version=API_VERSION, metadata=metadata(row["id"], row), spec=to_spec(row))


def to_component(spec: ComponentSpec) -> inventory.Component:
    """The values the write layer (core.inventory) stores for a spec."""
    loc = spec.location
    return inventory.Component(
        type=spec.type.value, state=spec.state.value, role=spec.role.value if spec.role else "",
        sub_role=spec.sub_role, nid=spec.nid, arch=spec.arch, enabled=spec.enabled, parent_id=spec.parent_id,
        rack=loc.rack, unit=loc.unit, slot=loc.slot, sub_slot=loc.sub_slot)


async def fetch_row(conn, component_id: str, *, lock: bool = False):
    return await fetch_one(conn, f"SELECT {COLUMNS} FROM smd.components WHERE id = $1", component_id, "component",
                           lock=lock)


def path_id(request: Request) -> str:
    return path_key(request, "component")


@router.get(BASE, scope="read:smd", summary="List components", response=ResourceList[ComponentSpec],
            params=LIST_PARAMS)
async def list_components(request: Request) -> Response:
    limit, offset = paging(request)
    where, args = [], []

    def add(condition: str, value) -> None:
        args.append(value)
        where.append(condition.format(f"${len(args)}"))

    for name, enum in (("type", ComponentType), ("state", ComponentState), ("role", Role)):
        values = query_list(request, name)
        if values:
            bad = [v for v in values if v not in enum.__members__]
            if bad:
                raise field_problem(name, f"unknown {name} {bad[0][:40]!r}; one of {', '.join(enum.__members__)}", 400)
            add(f"{name} = ANY({{}}::text[])", values)
    if racks := query_list(request, "rack"):
        add("rack = ANY({}::text[])", racks)
    if parents := query_list(request, "parentId"):
        add("parent_id = ANY({}::text[])", parents)
    if nids := query_list(request, "nid"):
        if not all(n.isascii() and n.isdigit() and len(n) < 17 for n in nids):
            raise field_problem("nid", "node numbers are whole numbers", 400)
        add("nid = ANY({}::bigint[])", [int(n) for n in nids])
    if groups := query_list(request, "group"):
        add("id IN (SELECT component_id FROM smd.group_members WHERE group_name = ANY({}::text[]))", groups)
    count_where = list(where)
    if after := request.query_params.get("after"):
        # Keyset paging: cheap at any depth, unlike a large offset.
        if query_list(request, "sort") not in ([], ["id"]):
            raise field_problem("after", "works with the default order (sort=id) only", 400)
        add("id > {}", after)
    fields = sparse_fields(request, SPEC_FIELDS)
    condition = (" WHERE " + " AND ".join(where)) if where else ""
    count_condition = (" WHERE " + " AND ".join(count_where)) if count_where else ""
    order = order_by(request, SORTABLE)
    pool = request.app.state.pool
    async with pool.acquire() as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM smd.components{count_condition}",
                                    *args[:len(count_where)])
        rows = await conn.fetch(f"SELECT {COLUMNS} FROM smd.components{condition} ORDER BY {order} "
                                f"LIMIT {limit} OFFSET {offset}", *args)
    return list_answer(request, "ComponentList", API_VERSION, [to_resource(r) for r in rows], total, limit, offset,
                       fields)


@router.post(BASE, scope="write:smd", summary="Create a component (and its interfaces)",
             request=ResourceRequest[ComponentCreateSpec], response=Resource[ComponentSpec])
async def create_component(request: Request) -> Response:
    body = await read_json(request, ResourceRequest[ComponentCreateSpec])
    spec = body.spec
    component_id = body.metadata.id or generate_id(spec.type.value)
    if not is_valid_id(component_id):
        raise field_problem("$.metadata.id", "not a valid component id")
    nics = [interfaces.prepare_inline(nic, f"$.spec.networkInterfaces[{i}]")
            for i, nic in enumerate(spec.network_interfaces)]
    interfaces.check_distinct_macs(nics, "$.spec.networkInterfaces")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        row = await inventory.create_component(conn, component_id, to_component(spec), inventory.ADMIN,
                                               interfaces=nics)
    return answer(to_resource(row), 201, f"{BASE}/{component_id}")


@router.get(BASE + "/{id}", scope="read:smd", summary="Get one component", response=Resource[ComponentSpec])
async def get_component(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        row = await fetch_row(conn, path_id(request))
    resource = to_resource(row)
    etag = resource.metadata.etag
    if etag is not None and request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return answer(resource)


@router.put(BASE + "/{id}", scope="write:smd", summary="Replace a component (If-Match required)",
            request=ResourceRequest[ComponentSpec], response=Resource[ComponentSpec])
async def replace_component(request: Request) -> Response:
    component_id = path_id(request)
    body = await read_json(request, ResourceRequest[ComponentSpec])
    if body.metadata.id not in (None, component_id):
        raise field_problem("$.metadata.id", f"does not match the id in the path ({component_id!r})")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        current = await fetch_row(conn, component_id, lock=True)
        check_if_match(request, etag_of(component_id, current))
        row = await inventory.replace_component(conn, component_id, to_component(body.spec), inventory.ADMIN)
    return answer(to_resource(row))


@router.patch(BASE + "/{id}", scope="write:smd", summary="Change a component (JSON merge patch, RFC 7396)",
              request=dict, response=Resource[ComponentSpec], content_types=MERGE_PATCH_TYPES)
async def patch_component(request: Request) -> Response:
    component_id = path_id(request)
    patch = await read_patch(request)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        current = await fetch_row(conn, component_id, lock=True)
        check_if_match(request, etag_of(component_id, current), required=False)
        spec = patched(to_spec(current), patch, ComponentSpec)
        row = await inventory.replace_component(conn, component_id, to_component(spec), inventory.ADMIN)
    return answer(to_resource(row))


@router.delete(BASE + "/{id}", scope="write:smd", summary="Delete a component, its interfaces and memberships")
async def delete_component(request: Request) -> Response:
    component_id = path_id(request)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await fetch_row(conn, component_id, lock=True)
        await inventory.check_deletable(conn, component_id)
        require_scopes(request, await entry_scopes(conn, "component_id", component_id),
                       "the component has boot parameters or a cloud-init payload of its own, which go with it")
        await inventory.delete_component(conn, component_id, inventory.ADMIN)
    return Response(status_code=204)
