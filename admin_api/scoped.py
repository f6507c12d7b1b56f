"""What boot parameters and cloud-init payloads share: a scope of at most one of
MAC, component, group or role (boot parameters also NID; none: the site default),
and its checks."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from admin_api.collection import Collection, Where, write_row
from admin_api.http import field_problem, problem, query_list
from admin_api.routing import PAGING, Param, sort_param
from core import events
from core.mac import InvalidMac, normalize_mac, try_normalize_mac

SORTABLE = {"id": "id", "createdAt": "created_at", "updatedAt": "updated_at"}

SCOPE_FIELDS = {"mac": "mac", "componentId": "component_id", "nid": "nid", "group": "group_name", "role": "role"}


def scope_of(spec, fields: tuple[str, ...]) -> dict[str, Any]:
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


def describe(columns: dict[str, Any]) -> str:
    for column, value in columns.items():
        if value is not None:
            return f"{column.replace('_name', '').replace('_', ' ')} {value!r}"
    return "the site default"


async def check_scope_targets(conn, columns: dict[str, Any]) -> None:
    """The component or group a scope names must exist (a MAC, NID or role need not: a NID entry
    waits for the component that gets the number)."""
    if columns.get("component_id") is not None and not await conn.fetchval(
            "SELECT true FROM smd.components WHERE id = $1", columns["component_id"]):
        raise field_problem("$.spec.componentId", f"no component {columns['component_id']!r}")
    if columns.get("group_name") is not None and not await conn.fetchval(
            "SELECT true FROM smd.groups WHERE name = $1", columns["group_name"]):
        raise field_problem("$.spec.group", f"no group {columns['group_name']!r}")


async def check_scope_free(conn, table: str, columns: dict[str, Any], own_id: str | None) -> None:
    conditions = " AND ".join(f"{c} IS NOT DISTINCT FROM ${i + 2}" for i, c in enumerate(columns))
    holder = await conn.fetchval(f"SELECT id FROM {table} WHERE id IS DISTINCT FROM $1 AND {conditions}",
                                 own_id, *columns.values())
    if holder:
        raise problem(409, f"{holder!r} already holds the entry for {describe(columns)}; change that one instead")


# The scope that writes each table of entries scoped like this (see the ScopedEntries in bss/ and cloudinit/).
WRITE_SCOPES = {"bss.boot_params": "write:bss", "cloudinit.payloads": "write:cloudinit"}


async def entry_scopes(conn, column: str, value: str) -> set[str]:
    """The write scopes of the entries scoped to this component (`component_id`) or group
    (`group_name`): what deleting it also deletes (the foreign keys cascade), so what a
    delete of it or a decommission must hold."""
    assert column in ("component_id", "group_name")
    return {scope for table, scope in WRITE_SCOPES.items()
            if await conn.fetchval(f"SELECT true FROM {table} WHERE {column} = $1 LIMIT 1", value)}


def _whole_number(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise problem(400, f"nid must be a whole number, got {text[:40]!r}")
    return int(text)


def _attr(name: str) -> str:
    return {"componentId": "component_id"}.get(name, name)


class ScopedEntries(Collection):
    """A table of entries scoped like boot parameters and cloud-init payloads (the whole CRUD)."""

    columns: str
    scope_fields: tuple[str, ...]
    sortable = SORTABLE

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.select = f"SELECT {cls.columns} FROM {cls.table}"
        cls.list_params = (*(Param(name, f"{name} scope, comma = OR") for name in cls.scope_fields), *PAGING,
                           sort_param(SORTABLE))
        cls.summaries = {"list": f"List {cls.noun}s", "create": f"Create {cls.noun} for a scope",
                         "get": f"Get {cls.noun}", "replace": f"Replace {cls.noun} (If-Match required)",
                         "patch": f"Change {cls.noun} (JSON merge patch)", "delete": f"Delete {cls.noun}"}

    def check(self, spec: Any) -> None:
        """Validation beyond the scope, raising 422 problems."""

    def fields(self, spec: Any) -> dict[str, Any]:
        """The non-scope columns and their values."""
        raise NotImplementedError

    def event_data(self, row, scope: dict) -> Any:
        raise NotImplementedError

    def where(self, request: Request) -> Where:
        where = Where()
        for name in self.scope_fields:
            values = query_list(request, name)
            if name == "mac":
                values = [try_normalize_mac(v) or v for v in values]
            if name == "nid" and values:
                where.add("nid = ANY({}::bigint[])", [_whole_number(v) for v in values])
            elif values:
                where.add(f"{SCOPE_FIELDS[name]} = ANY({{}}::text[])", values)
        return where

    async def insert(self, request: Request, conn, key: str, prepared: Any):
        return await self.write(conn, key, prepared, create=True)

    async def update(self, request: Request, conn, key: str, spec: Any, patch: dict | None):
        return await self.write(conn, key, spec, create=False)

    async def write(self, conn, entry_id: str, spec, *, create: bool):
        """Create or change one entry: the scope and value checks, the row, its event.  The one write path
        of these tables: the native routes and the OpenCHAMI faces (admin_api/openchami/bss.py, cloudinit.py)
        all come here."""
        scope = scope_of(spec, self.scope_fields)
        self.check(spec)
        await check_scope_targets(conn, scope)
        await check_scope_free(conn, self.table, scope, entry_id)
        values = {**scope, **self.fields(spec)}
        row = await write_row(conn, self.table, self.columns, entry_id, values, create=create)
        await events.emit(conn, self.domain, self.events_as, "created" if create else "updated", entry_id,
                          self.event_data(row, scope))
        return row
