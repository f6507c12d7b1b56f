"""/cloud-init/payloads: user-data, meta-data and vendor-data by scope."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.cloudinit.userdata import check_user_data
from admin_api.http import (
    check_if_match,
    convert,
    field_problem,
    merge_patch,
    problem,
    query_list,
    read_json,
    read_patch,
)
from admin_api.resources import answer, etag_of, list_answer, metadata, order_by, paging
from admin_api.routing import PAGING, Param, Router, sort_param
from admin_api.scoped import check_scope_free, check_scope_targets, scope_of
from admin_api.smd.schemas import Id
from core import events
from core.envelope import Resource, ResourceList, ResourceRequest
from core.identity import Role, generate_id, is_valid_id

KIND, API_VERSION = "CloudInitPayload", "cloud-init/v1"
BASE = "/cloud-init/payloads"
router = Router("payloads")
COLUMNS = "id, component_id, group_name, role, user_data, meta_data, vendor_data, created_at, updated_at"
SORTABLE = {"id": "id", "createdAt": "created_at", "updatedAt": "updated_at"}
Document = Annotated[str, msgspec.Meta(max_length=512 * 1024)]


class PayloadSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    component_id: Id | None = None
    group: Id | None = None
    role: Role | None = None
    user_data: Document | None = None
    meta_data: dict[str, Any] = msgspec.field(default_factory=dict)
    vendor_data: Document | None = None


def checked(spec: PayloadSpec) -> dict:
    columns = scope_of(spec, ("componentId", "group", "role"))
    check_user_data(spec.user_data, "$.spec.userData")
    check_user_data(spec.vendor_data, "$.spec.vendorData")
    if "instance-id" in spec.meta_data:
        raise field_problem("$.spec.metaData.instance-id",
                            "is computed by Chamicore from the node's cloud-init data; leave it out")
    return columns


def to_resource(row) -> Resource[PayloadSpec]:
    spec = PayloadSpec(component_id=row["component_id"], group=row["group_name"],
                       role=Role(row["role"]) if row["role"] else None, user_data=row["user_data"],
                       meta_data=row["meta_data"], vendor_data=row["vendor_data"])
    return Resource(kind=KIND, api_version=API_VERSION, metadata=metadata(row["id"], row), spec=spec)


def path_id(request: Request) -> str:
    payload_id = request.path_params["id"]
    if not is_valid_id(payload_id):
        raise problem(404, f"no payload {payload_id[:255]!r} (not a valid id)")
    return payload_id


async def fetch_row(conn, payload_id: str, *, lock: bool = False):
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM cloudinit.payloads WHERE id = $1"
                              + (" FOR UPDATE" if lock else ""), payload_id)
    if row is None:
        raise problem(404, f"no payload {payload_id!r}")
    return row


async def write(conn, payload_id: str, spec: PayloadSpec, *, create: bool):
    columns = checked(spec)
    await check_scope_targets(conn, columns)
    await check_scope_free(conn, "cloudinit.payloads", columns, payload_id)
    values = (payload_id, columns["component_id"], columns["group_name"], columns["role"], spec.user_data,
              spec.meta_data, spec.vendor_data)
    if create:
        row = await conn.fetchrow(
            f"INSERT INTO cloudinit.payloads (id, component_id, group_name, role, user_data, meta_data, vendor_data) "
            f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}", *values)
    else:
        row = await conn.fetchrow(
            f"UPDATE cloudinit.payloads SET component_id = $2, group_name = $3, role = $4, user_data = $5, "
            f"meta_data = $6, vendor_data = $7, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}", *values)
    await events.emit(conn, "cloudinit", "payloads", "created" if create else "updated", payload_id,
                      {"componentId": columns["component_id"], "group": columns["group_name"],
                       "role": columns["role"]})
    return row


@router.get(BASE, scope="read:cloudinit", summary="List cloud-init payloads", response=ResourceList[PayloadSpec],
            params=(Param("componentId", "component scope"), Param("group", "group scope"),
                    Param("role", "role scope"), *PAGING, sort_param(SORTABLE)))
async def list_payloads(request: Request) -> Response:
    limit, offset = paging(request)
    where, args = [], []
    for name, column in (("componentId", "component_id"), ("group", "group_name"), ("role", "role")):
        if values := query_list(request, name):
            args.append(values)
            where.append(f"{column} = ANY(${len(args)}::text[])")
    condition = (" WHERE " + " AND ".join(where)) if where else ""
    async with request.app.state.pool.acquire() as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM cloudinit.payloads{condition}", *args)
        rows = await conn.fetch(f"SELECT {COLUMNS} FROM cloudinit.payloads{condition} "
                                f"ORDER BY {order_by(request, SORTABLE)} LIMIT {limit} OFFSET {offset}", *args)
    return list_answer(request, "CloudInitPayloadList", API_VERSION, [to_resource(r) for r in rows], total, limit,
                       offset)


@router.post(BASE, scope="write:cloudinit", summary="Create a cloud-init payload for a scope",
             request=ResourceRequest[PayloadSpec], response=Resource[PayloadSpec])
async def create_payload(request: Request) -> Response:
    body = await read_json(request, ResourceRequest[PayloadSpec])
    payload_id = body.metadata.id or generate_id("ci")
    if not is_valid_id(payload_id):
        raise field_problem("$.metadata.id", "not a valid id")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT true FROM cloudinit.payloads WHERE id = $1", payload_id):
            raise problem(409, f"payload {payload_id!r} already exists")
        row = await write(conn, payload_id, body.spec, create=True)
    return answer(to_resource(row), 201, f"{BASE}/{payload_id}")


@router.get(BASE + "/{id}", scope="read:cloudinit", summary="Get a cloud-init payload",
            response=Resource[PayloadSpec])
async def get_payload(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        return answer(to_resource(await fetch_row(conn, path_id(request))))


@router.put(BASE + "/{id}", scope="write:cloudinit", summary="Replace a cloud-init payload (If-Match required)",
            request=ResourceRequest[PayloadSpec], response=Resource[PayloadSpec])
async def replace_payload(request: Request) -> Response:
    payload_id = path_id(request)
    body = await read_json(request, ResourceRequest[PayloadSpec])
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        current = await fetch_row(conn, payload_id, lock=True)
        check_if_match(request, etag_of(payload_id, current))
        row = await write(conn, payload_id, body.spec, create=False)
    return answer(to_resource(row))


@router.patch(BASE + "/{id}", scope="write:cloudinit", summary="Change a cloud-init payload (JSON merge patch)",
              request=dict, response=Resource[PayloadSpec],
              content_types=("application/merge-patch+json", "application/json"))
async def patch_payload(request: Request) -> Response:
    payload_id = path_id(request)
    patch = await read_patch(request)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        current = await fetch_row(conn, payload_id, lock=True)
        if "if-match" in request.headers:
            check_if_match(request, etag_of(payload_id, current))
        merged = merge_patch(msgspec.to_builtins(to_resource(current).spec), patch)
        row = await write(conn, payload_id, convert(merged, PayloadSpec, "$.spec"), create=False)
    return answer(to_resource(row))


@router.delete(BASE + "/{id}", scope="write:cloudinit", summary="Delete a cloud-init payload")
async def delete_payload(request: Request) -> Response:
    payload_id = path_id(request)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await fetch_row(conn, payload_id, lock=True)
        await conn.execute("DELETE FROM cloudinit.payloads WHERE id = $1", payload_id)
        await events.emit(conn, "cloudinit", "payloads", "deleted", payload_id)
    return Response(status_code=204)
