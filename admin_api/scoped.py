"""What boot parameters and cloud-init payloads share: a scope of at most one of
MAC, component, group or role (none: the site default), and its checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import (
    MERGE_PATCH_TYPES,
    check_if_match,
    field_problem,
    patched,
    problem,
    query_list,
    read_json,
    read_patch,
)
from admin_api.resources import answer, etag_of, fetch_one, list_answer, order_by, paging, path_key
from admin_api.routing import PAGING, Param, Router, sort_param
from core import events
from core.envelope import Resource, ResourceList, ResourceRequest
from core.identity import generate_id, is_valid_id
from core.mac import InvalidMac, normalize_mac, try_normalize_mac

SORTABLE = {"id": "id", "createdAt": "created_at", "updatedAt": "updated_at"}

SCOPE_FIELDS = {"mac": "mac", "componentId": "component_id", "group": "group_name", "role": "role"}


def scope_of(spec, fields: tuple[str, ...]) -> dict[str, str | None]:
    """Column -> value for the scope columns, checked: at most one set, MAC normalised."""
    given = [name for name in fields if getattr(spec, _attr(name)) is not None]
    if len(given) > 1:
        raise field_problem(f"$.spec.{given[1]}", f"give at most one of {', '.join(fields)} (also got {given[0]})")
    columns = {SCOPE_FIELDS[name]: getattr(spec, _attr(name)) for name in fields}
    if columns.get("role") is not None:
        columns["role"] = columns["role"].value
    if columns.get("mac") is not None:
        try:
            columns["mac"] = normalize_mac(columns["mac"])
        except InvalidMac as exc:
            raise field_problem("$.spec.mac", str(exc)) from None
    return columns


def describe(columns: dict[str, str | None]) -> str:
    for column, value in columns.items():
        if value is not None:
            return f"{column.replace('_name', '').replace('_', ' ')} {value!r}"
    return "the site default"


async def check_scope_targets(conn, columns: dict[str, str | None]) -> None:
    """The component or group a scope names must exist (a MAC or role need not)."""
    if columns.get("component_id") is not None and not await conn.fetchval(
            "SELECT true FROM smd.components WHERE id = $1", columns["component_id"]):
        raise field_problem("$.spec.componentId", f"no component {columns['component_id']!r}")
    if columns.get("group_name") is not None and not await conn.fetchval(
            "SELECT true FROM smd.groups WHERE name = $1", columns["group_name"]):
        raise field_problem("$.spec.group", f"no group {columns['group_name']!r}")


async def check_scope_free(conn, table: str, columns: dict[str, str | None], own_id: str | None) -> None:
    conditions = " AND ".join(f"{c} IS NOT DISTINCT FROM ${i + 2}" for i, c in enumerate(columns))
    holder = await conn.fetchval(f"SELECT id FROM {table} WHERE id IS DISTINCT FROM $1 AND {conditions}",
                                 own_id, *columns.values())
    if holder:
        raise problem(409, f"{holder!r} already holds the entry for {describe(columns)}; change that one instead")


# The scope that writes each table of entries scoped like this (see the ScopedTables in bss/ and cloudinit/).
WRITE_SCOPES = {"bss.boot_params": "write:bss", "cloudinit.payloads": "write:cloudinit"}


async def entry_scopes(conn, column: str, value: str) -> set[str]:
    """The write scopes of the entries scoped to this component (`component_id`) or group
    (`group_name`): what deleting it also deletes (the foreign keys cascade), so what a
    delete of it or a decommission must hold."""
    assert column in ("component_id", "group_name")
    return {scope for table, scope in WRITE_SCOPES.items()
            if await conn.fetchval(f"SELECT true FROM {table} WHERE {column} = $1 LIMIT 1", value)}


def _attr(name: str) -> str:
    return {"componentId": "component_id"}.get(name, name)


def _of(generic: Any, spec_type: type) -> Any:
    """`generic[spec_type]` for a spec type known only at run time (a type checker reads `X[y]` as a static type)."""
    return generic[spec_type]


@dataclasses.dataclass(frozen=True)
class ScopedTable:
    """A table of entries scoped like boot parameters and cloud-init payloads, and how to
    turn its rows into answers; `register_routes` gives it the whole CRUD."""

    table: str
    columns: str
    base: str
    kind: str
    api_version: str
    noun: str
    id_prefix: str
    spec_type: type
    scope_fields: tuple[str, ...]
    domain: str
    resource: str
    read_scope: str
    write_scope: str
    to_resource: Callable[[Any], Resource]
    check: Callable[[Any], None]  # validation beyond the scope, raising 422 problems
    fields: Callable[[Any], dict[str, Any]]  # the non-scope columns and their values
    event_data: Callable[[Any, dict], Any]


def register_routes(router: Router, t: ScopedTable) -> None:
    def path_id(request: Request) -> str:
        return path_key(request, t.noun)

    async def fetch_row(conn, entry_id: str, *, lock: bool = False):
        return await fetch_one(conn, f"SELECT {t.columns} FROM {t.table} WHERE id = $1", entry_id, t.noun, lock=lock)

    async def write(conn, entry_id: str, spec, *, create: bool):
        scope = scope_of(spec, t.scope_fields)
        t.check(spec)
        await check_scope_targets(conn, scope)
        await check_scope_free(conn, t.table, scope, entry_id)
        values = {**scope, **t.fields(spec)}
        names = list(values)
        if create:
            sql = (f"INSERT INTO {t.table} (id, {', '.join(names)}) VALUES "
                   f"($1, {', '.join(f'${i + 2}' for i in range(len(names)))}) RETURNING {t.columns}")
        else:
            sql = (f"UPDATE {t.table} SET {', '.join(f'{n} = ${i + 2}' for i, n in enumerate(names))}, "
                   f"updated_at = now() WHERE id = $1 RETURNING {t.columns}")
        row = await conn.fetchrow(sql, entry_id, *values.values())
        await events.emit(conn, t.domain, t.resource, "created" if create else "updated", entry_id,
                          t.event_data(row, scope))
        return row

    filters = tuple(Param(name, f"{name} scope, comma = OR") for name in t.scope_fields)
    resource_type, list_type, request_type = (_of(g, t.spec_type) for g in (Resource, ResourceList, ResourceRequest))

    @router.get(t.base, scope=t.read_scope, summary=f"List {t.noun}s", response=list_type,
                params=(*filters, *PAGING, sort_param(SORTABLE)))
    async def list_entries(request: Request) -> Response:
        limit, offset = paging(request)
        where: list[str] = []
        args: list[object] = []
        for name in t.scope_fields:
            values = query_list(request, name)
            if name == "mac":
                values = [try_normalize_mac(v) or v for v in values]
            if values:
                args.append(values)
                where.append(f"{SCOPE_FIELDS[name]} = ANY(${len(args)}::text[])")
        condition = (" WHERE " + " AND ".join(where)) if where else ""
        async with request.app.state.pool.acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM {t.table}{condition}", *args)
            rows = await conn.fetch(f"SELECT {t.columns} FROM {t.table}{condition} "
                                    f"ORDER BY {order_by(request, SORTABLE)} LIMIT {limit} OFFSET {offset}", *args)
        return list_answer(request, f"{t.kind}List", t.api_version, [t.to_resource(r) for r in rows], total, limit,
                           offset)

    @router.post(t.base, scope=t.write_scope, summary=f"Create {t.noun} for a scope",
                 request=request_type, response=resource_type)
    async def create_entry(request: Request) -> Response:
        body = await read_json(request, request_type)
        entry_id = body.metadata.id or generate_id(t.id_prefix)
        if not is_valid_id(entry_id):
            raise field_problem("$.metadata.id", "not a valid id")
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(f"SELECT true FROM {t.table} WHERE id = $1", entry_id):
                raise problem(409, f"{t.noun} {entry_id!r} already exists")
            row = await write(conn, entry_id, body.spec, create=True)
        return answer(t.to_resource(row), 201, f"{t.base}/{entry_id}")

    @router.get(t.base + "/{id}", scope=t.read_scope, summary=f"Get {t.noun}", response=resource_type)
    async def get_entry(request: Request) -> Response:
        async with request.app.state.pool.acquire() as conn:
            return answer(t.to_resource(await fetch_row(conn, path_id(request))))

    @router.put(t.base + "/{id}", scope=t.write_scope, summary=f"Replace {t.noun} (If-Match required)",
                request=request_type, response=resource_type)
    async def replace_entry(request: Request) -> Response:
        entry_id = path_id(request)
        body = await read_json(request, request_type)
        if body.metadata.id not in (None, entry_id):
            raise field_problem("$.metadata.id", f"does not match the id in the path ({entry_id!r})")
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            current = await fetch_row(conn, entry_id, lock=True)
            check_if_match(request, etag_of(entry_id, current))
            row = await write(conn, entry_id, body.spec, create=False)
        return answer(t.to_resource(row))

    @router.patch(t.base + "/{id}", scope=t.write_scope, summary=f"Change {t.noun} (JSON merge patch)",
                  request=dict, response=resource_type, content_types=MERGE_PATCH_TYPES)
    async def patch_entry(request: Request) -> Response:
        entry_id = path_id(request)
        patch = await read_patch(request)
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            current = await fetch_row(conn, entry_id, lock=True)
            check_if_match(request, etag_of(entry_id, current), required=False)
            row = await write(conn, entry_id, patched(t.to_resource(current).spec, patch, t.spec_type), create=False)
        return answer(t.to_resource(row))

    @router.delete(t.base + "/{id}", scope=t.write_scope, summary=f"Delete {t.noun}")
    async def delete_entry(request: Request) -> Response:
        entry_id = path_id(request)
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            await fetch_row(conn, entry_id, lock=True)
            await conn.execute(f"DELETE FROM {t.table} WHERE id = $1", entry_id)
            await events.emit(conn, t.domain, t.resource, "deleted", entry_id)
        return Response(status_code=204)

    for endpoint, name in ((list_entries, "list"), (create_entry, "create"), (get_entry, "get"),
                           (replace_entry, "replace"), (patch_entry, "patch"), (delete_entry, "delete")):
        endpoint.__name__ = f"{name}_{t.resource}"  # distinct OpenAPI operation ids
