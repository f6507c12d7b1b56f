"""/boot/v1/bootparams: kernel, initrd and command line by scope."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import msgspec
from starlette.requests import Request
from starlette.responses import Response

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
from core.mac import try_normalize_mac

KIND, API_VERSION = "BootParams", "boot/v1"
BASE = "/boot/v1/bootparams"
router = Router("bootparams")
COLUMNS = "id, mac, component_id, group_name, role, kernel, initrd, cmdline, created_at, updated_at"
SORTABLE = {"id": "id", "createdAt": "created_at", "updatedAt": "updated_at"}
URI_SCHEMES = ("http", "https", "tftp")
Uri = Annotated[str, msgspec.Meta(max_length=2048)]


class BootParamsSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    mac: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    component_id: Id | None = None
    group: Id | None = None
    role: Role | None = None
    kernel: Uri
    initrd: Uri = ""
    cmdline: Annotated[str, msgspec.Meta(max_length=4096)] = ""


def check_text(value: str, path: str) -> None:
    # These land in an iPXE script, one command per line: a line break or a
    # control character would let a value smuggle in commands of its own.
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise field_problem(path, "must not contain line breaks or control characters")


def check_uri(value: str, path: str, required: bool) -> None:
    if not value:
        if required:
            raise field_problem(path, "is required")
        return
    check_text(value, path)
    parts = urlsplit(value)
    if parts.scheme not in URI_SCHEMES or not parts.netloc or " " in value:
        raise field_problem(path, f"expected an {', '.join(URI_SCHEMES)} URL, got {value[:80]!r}")


def checked(spec: BootParamsSpec) -> dict:
    columns = scope_of(spec, ("mac", "componentId", "group", "role"))
    check_uri(spec.kernel, "$.spec.kernel", True)
    check_uri(spec.initrd, "$.spec.initrd", False)
    check_text(spec.cmdline, "$.spec.cmdline")
    return columns


def to_resource(row) -> Resource[BootParamsSpec]:
    spec = BootParamsSpec(mac=row["mac"], component_id=row["component_id"], group=row["group_name"],
                          role=Role(row["role"]) if row["role"] else None, kernel=row["kernel"],
                          initrd=row["initrd"], cmdline=row["cmdline"])
    return Resource(kind=KIND, api_version=API_VERSION, metadata=metadata(row["id"], row), spec=spec)


def path_id(request: Request) -> str:
    params_id = request.path_params["id"]
    if not is_valid_id(params_id):
        raise problem(404, f"no boot parameters {params_id[:255]!r} (not a valid id)")
    return params_id


async def fetch_row(conn, params_id: str, *, lock: bool = False):
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM bss.boot_params WHERE id = $1" + (" FOR UPDATE" if lock else ""),
                              params_id)
    if row is None:
        raise problem(404, f"no boot parameters {params_id!r}")
    return row


async def write(conn, params_id: str, spec: BootParamsSpec, *, create: bool):
    columns = checked(spec)
    await check_scope_targets(conn, columns)
    await check_scope_free(conn, "bss.boot_params", columns, params_id)
    values = (params_id, columns["mac"], columns["component_id"], columns["group_name"], columns["role"],
              spec.kernel, spec.initrd, spec.cmdline)
    if create:
        row = await conn.fetchrow(
            f"INSERT INTO bss.boot_params (id, mac, component_id, group_name, role, kernel, initrd, cmdline) "
            f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}", *values)
    else:
        row = await conn.fetchrow(
            f"UPDATE bss.boot_params SET mac = $2, component_id = $3, group_name = $4, role = $5, kernel = $6, "
            f"initrd = $7, cmdline = $8, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}", *values)
    await events.emit(conn, "bss", "bootparams", "created" if create else "updated", params_id,
                      msgspec.to_builtins(to_resource(row).spec))
    return row


@router.get(BASE, scope="read:bss", summary="List boot parameters", response=ResourceList[BootParamsSpec],
            params=(Param("mac", "MAC scope"), Param("componentId", "component scope"), Param("group", "group scope"),
                    Param("role", "role scope"), *PAGING, sort_param(SORTABLE)))
async def list_params(request: Request) -> Response:
    limit, offset = paging(request)
    where, args = [], []
    for name, column in (("mac", "mac"), ("componentId", "component_id"), ("group", "group_name"), ("role", "role")):
        values = query_list(request, name)
        if name == "mac" and values:
            values = [try_normalize_mac(v) or v for v in values]
        if values:
            args.append(values)
            where.append(f"{column} = ANY(${len(args)}::text[])")
    condition = (" WHERE " + " AND ".join(where)) if where else ""
    async with request.app.state.pool.acquire() as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM bss.boot_params{condition}", *args)
        rows = await conn.fetch(f"SELECT {COLUMNS} FROM bss.boot_params{condition} "
                                f"ORDER BY {order_by(request, SORTABLE)} LIMIT {limit} OFFSET {offset}", *args)
    return list_answer(request, "BootParamsList", API_VERSION, [to_resource(r) for r in rows], total, limit, offset)


@router.post(BASE, scope="write:bss", summary="Create boot parameters for a scope",
             request=ResourceRequest[BootParamsSpec], response=Resource[BootParamsSpec])
async def create_params(request: Request) -> Response:
    body = await read_json(request, ResourceRequest[BootParamsSpec])
    params_id = body.metadata.id or generate_id("bp")
    if not is_valid_id(params_id):
        raise field_problem("$.metadata.id", "not a valid id")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT true FROM bss.boot_params WHERE id = $1", params_id):
            raise problem(409, f"boot parameters {params_id!r} already exist")
        row = await write(conn, params_id, body.spec, create=True)
    return answer(to_resource(row), 201, f"{BASE}/{params_id}")


@router.get(BASE + "/{id}", scope="read:bss", summary="Get boot parameters", response=Resource[BootParamsSpec])
async def get_params(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        return answer(to_resource(await fetch_row(conn, path_id(request))))


@router.put(BASE + "/{id}", scope="write:bss", summary="Replace boot parameters (If-Match required)",
            request=ResourceRequest[BootParamsSpec], response=Resource[BootParamsSpec])
async def replace_params(request: Request) -> Response:
    params_id = path_id(request)
    body = await read_json(request, ResourceRequest[BootParamsSpec])
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        current = await fetch_row(conn, params_id, lock=True)
        check_if_match(request, etag_of(params_id, current))
        row = await write(conn, params_id, body.spec, create=False)
    return answer(to_resource(row))


@router.patch(BASE + "/{id}", scope="write:bss", summary="Change boot parameters (JSON merge patch)",
              request=dict, response=Resource[BootParamsSpec],
              content_types=("application/merge-patch+json", "application/json"))
async def patch_params(request: Request) -> Response:
    params_id = path_id(request)
    patch = await read_patch(request)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        current = await fetch_row(conn, params_id, lock=True)
        if "if-match" in request.headers:
            check_if_match(request, etag_of(params_id, current))
        merged = merge_patch(msgspec.to_builtins(to_resource(current).spec), patch)
        row = await write(conn, params_id, convert(merged, BootParamsSpec, "$.spec"), create=False)
    return answer(to_resource(row))


@router.delete(BASE + "/{id}", scope="write:bss", summary="Delete boot parameters")
async def delete_params(request: Request) -> Response:
    params_id = path_id(request)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await fetch_row(conn, params_id, lock=True)
        await conn.execute("DELETE FROM bss.boot_params WHERE id = $1", params_id)
        await events.emit(conn, "bss", "bootparams", "deleted", params_id)
    return Response(status_code=204)
