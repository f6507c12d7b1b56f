"""What boot parameters and cloud-init payloads share: a scope of at most one of
MAC, component, group or role (none: the site default), and its checks."""

from __future__ import annotations

from admin_api.http import field_problem, problem
from core.mac import InvalidMac, normalize_mac

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


def _attr(name: str) -> str:
    return {"componentId": "component_id"}.get(name, name)
