"""SMD's answers as JSON text written by PostgreSQL, and SMD's list filters over the same rows.

coresmd polls every component and every Ethernet interface every 30 s; PostgreSQL writes the JSON text of
such an answer in one statement, at 100,000 rows three to four times faster than fetching the rows and
encoding them in Python (bench/openchami_poll.py measures both).
"""

from __future__ import annotations

import datetime
import itertools

from starlette.requests import Request
from starlette.responses import Response

from admin_api.collection import Where
from admin_api.http import problem
from admin_api.openchami.compat import query_values
from admin_api.openchami.smd_values import (
    ARCH_FROM_CHAMICORE,
    ARCHES,
    CLASSES,
    FLAGS,
    ID_BOUND_TYPES,
    ROLES,
    STATES,
    SUBROLES,
    choice,
    flag,
    normal_id,
    openchami_type,
    type_name,
    whole,
)
from admin_api.routing import Param
from core import db, fields, xname
from core.mac import try_normalize_mac

# -- answers ------------------------------------------------------------------------------------------
# Each field is SQL yielding the value's JSON text, or NULL to leave the key out.  `c` is the component row,
# `i` the interface row, `k` the components whose xname tells their OpenCHAMI type (see _typed_ids).


def _object(members: dict[str, str]) -> str:
    """SQL for the text of a JSON object; concat_ws skips the NULL members, as SMD leaves out empty fields."""
    joined = ", ".join(f"'\"{name}\":' || {value}" for name, value in members.items())
    return f"'{{' || concat_ws(',', {joined}) || '}}'"


def _text(sql: str) -> str:
    return f"to_json({sql})::text"


def _plain(sql: str) -> str:
    """A JSON string without escaping: for text the schema keeps to characters JSON never escapes (ids match
    the ADR-010 pattern, MACs their check, states and roles their enums, and the CASE constants below)."""
    return f"'\"' || {sql} || '\"'"


def _case(column: str, mapping: dict[str, str], default: str) -> str:
    whens = " ".join(f"WHEN '{stored}' THEN '{shown}'" for stored, shown in mapping.items())
    return f"CASE {column} {whens} ELSE {default} END"


TYPE_SQL = f"coalesce(k.kind, {_case('c.type', xname.OPENCHAMI_TYPE, 'c.type')})"
ARCH_SQL = _case("c.arch", ARCH_FROM_CHAMICORE, "'Other'")

COMPONENT = {
    "ID": _plain("c.id"), "Type": _plain(TYPE_SQL), "State": _plain("c.state"), "Flag": "'\"OK\"'",
    "Enabled": "c.enabled::text", "Role": _plain("nullif(c.role, '')"), "SubRole": _text("nullif(c.sub_role, '')"),
    "NID": "c.nid::text", "Arch": _plain(ARCH_SQL),
}
# What coresmd reads of a component, all an anonymous poll is shown.
COMPONENT_ANONYMOUS = {name: COMPONENT[name] for name in ("ID", "Type", "NID")}


def _address(element: str, *, network: bool) -> str:
    members = {"IPAddress": _text(f"{element} ->> 'ipAddress'")}
    if network:
        members["Network"] = _text(f"nullif({element} ->> 'network', '')")
    return _object(members)


def _addresses(*, network: bool) -> str:
    # Most interfaces hold one address: read it in place rather than unnest every row's array.
    one, each = _address("i.ip_addrs -> 0", network=network), _address("a.e", network=network)
    return (f"CASE jsonb_array_length(i.ip_addrs) WHEN 0 THEN '[]' WHEN 1 THEN '[' || {one} || ']' "
            f"ELSE (SELECT '[' || string_agg({each}, ',' ORDER BY a.n) || ']' "
            f"FROM jsonb_array_elements(i.ip_addrs) WITH ORDINALITY AS a(e, n)) END")


INTERFACE = {
    "ID": _plain("i.id"), "Description": _text("i.description"), "MACAddress": _plain("i.mac"),
    "LastUpdate": _plain("to_char(i.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"),
    "ComponentID": _plain("i.component_id"), "Type": _plain(TYPE_SQL), "IPAddresses": _addresses(network=True),
}
# What coresmd reads of an interface (internal/smdclient/smdclient.go).
INTERFACE_ANONYMOUS = {"MACAddress": INTERFACE["MACAddress"], "ComponentID": INTERFACE["ComponentID"],
                       "Type": INTERFACE["Type"], "Description": INTERFACE["Description"],
                       "IPAddresses": _addresses(network=False)}
MEMBERSHIP = {
    "id": _plain("c.id"),
    "groupLabels": "coalesce((SELECT json_agg(m.group_name ORDER BY m.group_name) FROM smd.group_members m "
                   "WHERE m.component_id = c.id AND NOT m.exclusive)::text, '[]')",
    "partitionName": _text("coalesce((SELECT min(m.group_name) FROM smd.group_members m "
                           "WHERE m.component_id = c.id AND m.exclusive), '')"),
}
COMPONENTS_FROM = "smd.components c"
INTERFACES_FROM = "smd.ethernet_interfaces i JOIN smd.components c ON c.id = i.component_id"


async def _typed_ids(conn: db.Connection, source: str, among: Where | None) -> tuple[list[str], list[str]]:
    """The components whose id tells an OpenCHAMI type other than their Chamicore type's default (a RouterBMC
    among the BMCs), as the two arrays TYPE_SQL joins as `k`: all of them, or those of the rows `among` keeps
    (a condition that does not read the type)."""
    if among is None:
        rows = await conn.fetch("SELECT id, type FROM smd.components WHERE type = ANY($1::text[])", ID_BOUND_TYPES)
    else:
        bound = among.copy()
        bound.add("c.type = ANY({}::text[])", ID_BOUND_TYPES)
        rows = await conn.fetch(f"SELECT DISTINCT c.id, c.type FROM {source}{bound}", *bound.args)
    ids, kinds = [], []
    for row in rows:
        kind = openchami_type(row["id"], row["type"])
        if kind != xname.OPENCHAMI_TYPE[row["type"]]:
            ids.append(row["id"])
            kinds.append(kind)
    return ids, kinds


async def json_list(conn: db.Connection, members: dict[str, str], source: str, where: Where,
                    order: str = "", *, one: bool = False) -> bytes:
    """The JSON objects of the rows of `source` that `where` keeps, comma-separated (no brackets).  `one`: `where`
    picks rows by id, and reads no type, so the type lookup needs to look at those rows only."""
    ids, kinds = await _typed_ids(conn, source, where if one else None)
    n = len(where.args)
    order_by = f" ORDER BY {order}" if order else ""
    return await conn.fetchval(
        f"SELECT convert_to(coalesce(string_agg({_object(members)}, ','{order_by}), ''), 'UTF8') FROM {source} "
        f"LEFT JOIN unnest(${n + 1}::text[], ${n + 2}::text[]) AS k(id, kind) ON k.id = c.id{where}",
        *where.args, ids, kinds)


async def read(request: Request, members: dict[str, str], source: str, where: Where, order: str = "", *,
               one: bool = False) -> bytes:
    async with request.app.state.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                           readonly=True):
        return await json_list(conn, members, source, where, order, one=one)


def json_answer(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


# -- filters ------------------------------------------------------------------------------------------

COMPONENT_PARAMS = (
    Param("id", "component ids (xnames), repeated = OR"),
    Param("type", "OpenCHAMI types (Node, NodeBMC, ...)"),
    Param("state", f"states ({', '.join(STATES)})"),
    Param("flag", f"flags ({', '.join(FLAGS)}); every component reads as OK"),
    Param("enabled", "true or false"),
    Param("role", f"roles ({', '.join(ROLES)})"),
    Param("subrole", f"sub-roles ({', '.join(SUBROLES)})"),
    Param("arch", f"architectures ({', '.join(ARCHES)})"),
    Param("class", f"classes ({', '.join(CLASSES)}); Chamicore records none, so none matches"),
    Param("nid", "node numbers"),
    Param("nid_start", "node number ranges: start (paired in order with nid_end)"),
    Param("nid_end", "node number ranges: end"),
    Param("group", "members of these groups (labels, any case)"),
    Param("partition", "members of these partitions (names, any case)"),
)


def _arg(where: Where, value: object) -> str:
    where.args.append(value)
    return f"${len(where.args)}"


def component_filter(request: Request) -> Where:
    """SMD's component filters, over `c` (repeated values OR, filters AND); 400 on a value SMD refuses."""
    where = Where()

    def values(name: str) -> list[str]:
        return query_values(request, name)

    if ids := values("id"):
        where.add("c.id = ANY({}::text[])", [normal_id(v) for v in ids])
    if types := values("type"):
        where.add(f"{TYPE_SQL} = ANY({{}}::text[])", [type_name(v) for v in types])
    if states := values("state"):
        where.add("c.state = ANY({}::text[])", [choice(v, STATES, "state") for v in states])
    if (flags := values("flag")) and "OK" not in [choice(v, FLAGS, "flag") for v in flags]:
        where.conditions.append("false")
    if enabled := values("enabled"):
        where.add("c.enabled = ANY({}::boolean[])", [flag(v, "enabled") for v in enabled])
    if roles := values("role"):
        where.add("c.role = ANY({}::text[])", [choice(v, ROLES, "role") for v in roles])
    if sub_roles := values("subrole"):
        where.add("c.sub_role = ANY({}::text[])", [choice(v, SUBROLES, "subRole") for v in sub_roles])
    if arches := values("arch"):
        where.add(f"{ARCH_SQL} = ANY({{}}::text[])", [choice(v, ARCHES, "arch") for v in arches])
    if classes := values("class"):
        for value in classes:
            choice(value, CLASSES, "class")
        where.conditions.append("false")
    nids, starts, ends = values("nid"), values("nid_start"), values("nid_end")
    if nids or starts or ends:
        ranges = [f"c.nid = ANY({_arg(where, [whole(v, 'nid') for v in nids])}::bigint[])"] if nids else []
        for start, end in itertools.zip_longest(starts, ends):
            bounds = ([f"c.nid >= {_arg(where, whole(start, 'nid_start'))}"] if start is not None else []) + \
                     ([f"c.nid <= {_arg(where, whole(end, 'nid_end'))}"] if end is not None else [])
            ranges.append("(" + " AND ".join(bounds) + ")")
        where.conditions.append("(" + " OR ".join(ranges) + ")")
    for name, exclusive in (("group", False), ("partition", True)):
        if labels := values(name):
            where.add(f"c.id IN (SELECT component_id FROM smd.group_members WHERE {'' if exclusive else 'NOT '}"
                      f"exclusive AND lower(group_name) = ANY({{}}::text[]))", [v.lower() for v in labels])
    return where


INTERFACE_PARAMS = (
    Param("id", "interface ids"),
    Param("macaddress", "MAC addresses, any spelling"),
    Param("ipaddress", "IP addresses"),
    Param("network", "networks of an address"),
    Param("componentid", "owning components (xnames)"),
    Param("type", "OpenCHAMI types of the owning components"),
    Param("olderthan", "last updated before this time (RFC 3339)"),
    Param("newerthan", "last updated after this time (RFC 3339)"),
)


def _time(value: str, what: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise problem(400, f"{what} '{value[:64]}' is not an RFC 3339 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _ip_text(value: str) -> str:
    try:
        return fields.ip_address(value)
    except fields.InvalidField:
        return value


def interface_filter(request: Request) -> Where:
    where = Where()

    def values(name: str) -> list[str]:
        return query_values(request, name)

    if ids := values("id"):
        where.add("lower(i.id) = ANY({}::text[])", [v.lower() for v in ids])
    if macs := values("macaddress"):
        normalised = [try_normalize_mac(v) for v in macs]
        if None in normalised:
            raise problem(400, f"Invalid component ethernet interface MAC address: {macs[normalised.index(None)][:64]!r}")
        where.add("i.mac = ANY({}::text[])", normalised)
    for name, field, convert_value in (("ipaddress", "ipAddress", _ip_text), ("network", "network", str)):
        if wanted := values(name):
            where.add(f"EXISTS (SELECT 1 FROM jsonb_array_elements(i.ip_addrs) a WHERE a ->> '{field}' = "
                      f"ANY({{}}::text[]))", [convert_value(v) for v in wanted])
    if owners := values("componentid"):
        where.add("i.component_id = ANY({}::text[])", [normal_id(v, "CompID") for v in owners])
    if types := values("type"):
        where.add(f"{TYPE_SQL} = ANY({{}}::text[])", [type_name(v) for v in types])
    if older := values("olderthan"):
        where.add("i.updated_at < {}", _time(older[0], "OlderThan"))
    if newer := values("newerthan"):
        where.add("i.updated_at > {}", _time(newer[0], "NewerThan"))
    return where
