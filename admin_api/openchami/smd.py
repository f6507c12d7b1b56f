"""SMD as OpenCHAMI's clients speak it, under /openchami/hsm/v2: service status and enum values,
State/Components, Inventory/EthernetInterfaces and memberships.

A translation over Chamicore's inventory: every write goes through core.inventory, as the native
routes' do (same checks, same outbox events), after the native schemas have checked the values; a 422 of
theirs is answered with SMD's 400.  OpenCHAMI's types map onto Chamicore's through core.xname; an xname
is stored as the component's id and its location.  Where SMD keeps a field Chamicore has no column for
(Flag, Class, NetType), a valid value is accepted and not kept: Flag reads back "OK", Class and NetType
are left out, as SMD leaves out empty fields.

coresmd polls GET /State/Components and GET /Inventory/EthernetInterfaces every 30 s without a token
(CHAMICORE_OPENCHAMI_PUBLIC_READS lets it; it then sees only the fields it reads).  PostgreSQL writes the
JSON text of those answers in one statement: at 100,000 rows that is two to three times faster than
fetching the rows and encoding them in Python (bench/openchami_poll.py measures both).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import itertools
from collections.abc import Iterable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.collection import Where
from admin_api.http import MAX_BULK_BODY, convert, json_response, problem
from admin_api.openchami.compat import (
    BODY_TYPES,
    PREFIX,
    as_bad_request,
    json_body,
    json_object,
    key,
    message,
    no_content,
    query_values,
)
from admin_api.routing import Endpoint, Param, Router, is_anonymous_read
from admin_api.smd import components
from admin_api.smd.schemas import ComponentSpec, InterfaceSpec, checked_interface
from core import db, fields, inventory, xname
from core.identity import ComponentState, ComponentType, Role, is_valid_id
from core.mac import try_normalize_mac
from core.problems import ProblemError

BASE = PREFIX + "/hsm/v2"
URI_BASE = "/hsm/v2"  # as SMD names its resources in URIs (the Location header carries the face's prefix)
router = Router("openchami-smd")

# -- OpenCHAMI's enums and how they map onto Chamicore ------------------------------------------------

STATES = tuple(state.value for state in ComponentState)
ROLES = tuple(role.value for role in Role)
FLAGS = ("OK", "Warning", "Alert", "Locked", "Unknown")
SUBROLES = ("Master", "Worker", "Storage")
CLASSES = ("River", "Mountain", "Hill")
NET_TYPES = ("Sling", "Infiniband", "Ethernet", "OEM", "None")
# OpenCHAMI's Arch and Chamicore's free-text arch (what boot scripts see as {{arch}}); any other arch reads
# back as Other.
ARCH_TO_CHAMICORE = {"X86": "x86_64", "ARM": "aarch64", "Other": "other", "UNKNOWN": "unknown"}
ARCH_FROM_CHAMICORE = {arch: name for name, arch in ARCH_TO_CHAMICORE.items()}
ARCHES = tuple(ARCH_TO_CHAMICORE)

# The OpenCHAMI types a component can be stored as, and the Chamicore type of each.
STORABLE_TYPES: dict[str, str] = {
    **{kind: chamicore for kind, chamicore in xname.CHAMICORE_TYPE.items() if chamicore},
    **{kind: chamicore for chamicore, kind in xname.OPENCHAMI_TYPE.items()},
}
_KNOWN_TYPES = {kind.lower(): kind for kind in (*xname.CHAMICORE_TYPE, *STORABLE_TYPES)}


def openchami_arch(arch: str) -> str:
    return ARCH_FROM_CHAMICORE.get(arch, "Other")


def _id_free_type(chamicore: str) -> str | None:
    """The OpenCHAMI type of every component of this Chamicore type, when its id cannot tell more (a Node is
    a Node; a BMC may be a NodeBMC, a RouterBMC or a ChassisBMC)."""
    kinds = {kind for kind, of in xname.CHAMICORE_TYPE.items() if of == chamicore} | {xname.OPENCHAMI_TYPE[chamicore]}
    return kinds.pop() if len(kinds) == 1 else None


_ID_BOUND_TYPES = [t.value for t in ComponentType if _id_free_type(t.value) is None]
openchami_type = functools.lru_cache(maxsize=1 << 18)(xname.openchami_type)

# -- answers as JSON text, written by PostgreSQL ------------------------------------------------------
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


async def _typed_ids(conn: db.Connection) -> tuple[list[str], list[str]]:
    """The components whose id tells an OpenCHAMI type other than their Chamicore type's default (a RouterBMC
    among the BMCs), as the two arrays TYPE_SQL joins as `k`."""
    rows = await conn.fetch("SELECT id, type FROM smd.components WHERE type = ANY($1::text[])", _ID_BOUND_TYPES)
    ids, kinds = [], []
    for row in rows:
        kind = openchami_type(row["id"], row["type"])
        if kind != xname.OPENCHAMI_TYPE[row["type"]]:
            ids.append(row["id"])
            kinds.append(kind)
    return ids, kinds


async def json_list(conn: db.Connection, members: dict[str, str], source: str, where: Where,
                    order: str = "") -> bytes:
    """The JSON objects of the rows of `source` that `where` keeps, comma-separated (no brackets)."""
    ids, kinds = await _typed_ids(conn)
    n = len(where.args)
    order_by = f" ORDER BY {order}" if order else ""
    return await conn.fetchval(
        f"SELECT convert_to(coalesce(string_agg({_object(members)}, ','{order_by}), ''), 'UTF8') FROM {source} "
        f"LEFT JOIN unnest(${n + 1}::text[], ${n + 2}::text[]) AS k(id, kind) ON k.id = c.id{where}",
        *where.args, ids, kinds)


async def _read(request: Request, members: dict[str, str], source: str, where: Where, order: str = "") -> bytes:
    async with request.app.state.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                           readonly=True):
        return await json_list(conn, members, source, where, order)


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


# -- reading what clients send ---------------------------------------------------------------------


def _choice(value: Any, choices: Iterable[str], what: str) -> str:
    """`value` as the enum spells it, matched in any case (as SMD normalises it); 400 otherwise."""
    if isinstance(value, str):
        for choice in choices:
            if choice.lower() == value.strip().lower():
                return choice
    raise problem(400, f"{what} '{str(value)[:64]}' is invalid")


def _type_name(value: str) -> str:
    kind = _KNOWN_TYPES.get(value.strip().lower())
    if kind is None:
        raise problem(400, f"Invalid HMS type: {value[:64]!r}")
    return kind


def normal_id(value: Any, what: str = "xname ID") -> str:
    """An id as SMD stores it: an xname normalised (x1000C01s7 -> x1000c1s7), a Chamicore id as given."""
    if isinstance(value, str):
        found = xname.parse(value)
        if found is not None:
            return found.id
        if is_valid_id(value):
            return value
    raise problem(400, f"{what} '{str(value)[:64]}' is invalid")


def _whole(value: Any, what: str) -> int:
    """A JSON number or a string of digits (Go's json.Number takes both)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value.strip()) < 17:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise problem(400, f"{what} '{str(value)[:64]}' is invalid")


def _flag(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "t", "true", "0", "f", "false"):  # Go's ParseBool
        return value.lower() in ("1", "t", "true")
    raise problem(400, f"{what} '{str(value)[:64]}' is invalid")


def _optional(obj: dict, name: str) -> Any:
    """A field, None when absent, null or empty (SMD reads those alike)."""
    value = key(obj, name)
    return None if value in (None, "") else value


@dataclasses.dataclass(frozen=True, slots=True)
class Incoming:
    """One component of a POST or PUT: its normalised id, what a new one is created with, and what `force`
    overwrites on an existing one (SMD's rule: state and arch; never its role or NID)."""

    id: str
    new: ComponentSpec
    state: str
    arch: str | None


def incoming_component(obj: Any, where: str) -> Incoming:
    """SMD's Component as Chamicore stores it, checked: 400 naming what is wrong, before any SQL."""
    if not isinstance(obj, dict):
        raise problem(400, f"{where} must be a JSON object")
    raw_id, raw_type = key(obj, "ID"), key(obj, "Type")
    found = xname.parse(raw_id) if isinstance(raw_id, str) else None
    if found is not None:
        # The type is the xname's, whatever the body says (as SMD does).
        component_id, kind, location = found.id, found.kind, found.location()
    elif is_valid_id(raw_id) and isinstance(raw_type, str) and raw_type.strip():
        component_id, kind, location = raw_id, _type_name(raw_type), {}
    else:
        raise problem(400, f"xname ID '{str(raw_id)[:64]}' is invalid (a Chamicore id that is not an xname "
                           f"needs a Type)")
    chamicore_type = STORABLE_TYPES.get(kind)
    if chamicore_type is None:
        raise problem(400, f"{component_id}: the type {kind} is not supported (Chamicore keeps no component of "
                           f"that type; supported: {', '.join(STORABLE_TYPES)})")
    state = _choice(key(obj, "State", ""), STATES, "state")
    for name, choices in (("Flag", FLAGS), ("Class", CLASSES), ("NetType", NET_TYPES)):
        if (value := _optional(obj, name)) is not None:
            _choice(value, choices, name[0].lower() + name[1:])  # valid, though not kept
    role = _optional(obj, "Role")
    role = _choice(role, ROLES, "role") if role is not None else ("Compute" if chamicore_type == "Node" else None)
    sub_role = _optional(obj, "SubRole")
    arch = _optional(obj, "Arch")
    arch = ARCH_TO_CHAMICORE[_choice(arch, ARCHES, "arch")] if arch is not None else None
    nid = _optional(obj, "NID")
    nid = _whole(nid, "NID") if nid is not None else None
    enabled = _optional(obj, "Enabled")
    spec = {"type": chamicore_type, "state": state, "role": role,
            "subRole": _choice(sub_role, SUBROLES, "subRole") if sub_role is not None else "",
            "nid": nid if nid is not None and nid >= 0 else None,  # SMD: a negative NID is none
            "enabled": _flag(enabled, "Enabled") if enabled is not None else True,
            "location": {"rack": location.get("rack"), "unit": location.get("unit"),
                         "slot": location.get("slot", 0), "subSlot": location.get("sub_slot", 0)}}
    if arch is not None:
        spec["arch"] = arch
    with as_bad_request():
        new = convert(spec, ComponentSpec, where)
    return Incoming(component_id, new, state, arch)


async def upsert(conn: db.Connection, item: Incoming, force: bool) -> None:
    """SMD's upsert: a new component is created; an existing one is left as it is, or with `force` gets the
    new state and arch."""
    row = await inventory.fetch_component(conn, item.id, lock=True)
    if row is None:
        with as_bad_request():
            await inventory.create_component(conn, item.id, components.to_component(item.new), inventory.ADMIN,
                                             exist_ok=True)
        return
    if not force:
        return
    current = components.to_spec(row)
    changed = msgspec.structs.replace(current, state=ComponentState(item.state), arch=item.arch or current.arch)
    if changed != current:
        with as_bad_request():
            await inventory.replace_component(conn, item.id, components.to_component(changed), inventory.ADMIN)


def _components_of(body: Any) -> list:
    """The `Components` array of a body, or SMD's 400."""
    items = key(json_object(body), "Components")
    if not isinstance(items, list) or not items or not isinstance(items[0], dict) or not key(items[0], "ID"):
        raise problem(400, "Missing Components")
    return items


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
        where.add(f"{TYPE_SQL} = ANY({{}}::text[])", [_type_name(v) for v in types])
    if states := values("state"):
        where.add("c.state = ANY({}::text[])", [_choice(v, STATES, "state") for v in states])
    if (flags := values("flag")) and "OK" not in [_choice(v, FLAGS, "flag") for v in flags]:
        where.conditions.append("false")
    if enabled := values("enabled"):
        where.add("c.enabled = ANY({}::boolean[])", [_flag(v, "enabled") for v in enabled])
    if roles := values("role"):
        where.add("c.role = ANY({}::text[])", [_choice(v, ROLES, "role") for v in roles])
    if sub_roles := values("subrole"):
        where.add("c.sub_role = ANY({}::text[])", [_choice(v, SUBROLES, "subRole") for v in sub_roles])
    if arches := values("arch"):
        where.add(f"{ARCH_SQL} = ANY({{}}::text[])", [_choice(v, ARCHES, "arch") for v in arches])
    if classes := values("class"):
        for value in classes:
            _choice(value, CLASSES, "class")
        where.conditions.append("false")
    nids, starts, ends = values("nid"), values("nid_start"), values("nid_end")
    if nids or starts or ends:
        ranges = [f"c.nid = ANY({_arg(where, [_whole(v, 'nid') for v in nids])}::bigint[])"] if nids else []
        for start, end in itertools.zip_longest(starts, ends):
            bounds = ([f"c.nid >= {_arg(where, _whole(start, 'nid_start'))}"] if start is not None else []) + \
                     ([f"c.nid <= {_arg(where, _whole(end, 'nid_end'))}"] if end is not None else [])
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
        where.add(f"{TYPE_SQL} = ANY({{}}::text[])", [_type_name(v) for v in types])
    if older := values("olderthan"):
        where.add("i.updated_at < {}", _time(older[0], "OlderThan"))
    if newer := values("newerthan"):
        where.add("i.updated_at > {}", _time(newer[0], "NewerThan"))
    return where


# -- service ------------------------------------------------------------------------------------------

VALUES: dict[str, tuple[str, ...]] = {
    "Arch": ARCHES, "Class": CLASSES, "Flag": FLAGS, "NetType": NET_TYPES, "Role": ROLES, "SubRole": SUBROLES,
    "State": STATES, "Type": tuple(STORABLE_TYPES),
}


@router.get(f"{BASE}/service/ready", scope=None, summary="SMD readiness: the database answers")
async def hsm_ready(request: Request) -> Response:
    try:
        async with request.app.state.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
    except Exception as exc:  # any failure is "not ready", with the reason
        raise problem(503, f"HSM's database is unhealthy: {type(exc).__name__}: {str(exc)[:200]}") from None
    return message("HSM is healthy")


@router.get(f"{BASE}/service/liveness", scope=None, summary="SMD liveness", status=204)
async def hsm_liveness(request: Request) -> Response:
    return no_content()


@router.get(f"{BASE}/service/values", scope=None, summary="SMD's enum values (those Chamicore can store)")
async def hsm_values(request: Request) -> Response:
    return json_response(VALUES)


def _values_of(name: str) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return json_response({name: VALUES[name]})

    endpoint.__name__ = f"hsm_values_{name.lower()}"
    return endpoint


for _name in VALUES:
    router.get(f"{BASE}/service/values/{_name.lower()}", scope=None, summary=f"SMD's {_name} values")(
        _values_of(_name))


# -- State/Components ---------------------------------------------------------------------------------

COMPONENTS = f"{BASE}/State/Components"


async def hsm_list_components(request: Request) -> Response:
    members = COMPONENT_ANONYMOUS if is_anonymous_read(request) else COMPONENT
    body = await _read(request, members, COMPONENTS_FROM, component_filter(request), "c.id")
    return _json(b'{"Components":[' + body + b"]}")


# cloud-init and others join paths with a trailing slash; SMD strips it.
for _path in (COMPONENTS, COMPONENTS + "/"):
    router.get(_path, scope="read:smd", summary="List components (SMD Component shape)", params=COMPONENT_PARAMS,
               fold_query=True, public_read=True)(hsm_list_components)


@router.post(COMPONENTS, scope="write:smd", summary="Create components; an existing one changes only with force",
             status=204, content_types=BODY_TYPES, body_limit=MAX_BULK_BODY)
async def hsm_post_components(request: Request) -> Response:
    body = await json_body(request)
    items = _components_of(body)
    force = _flag(key(body, "force", False), "force")
    try:
        incoming = [incoming_component(item, f"$.Components[{i}]") for i, item in enumerate(items)]
    except ProblemError as exc:
        exc.problem.detail = f"couldn't validate components: {exc.problem.detail}"  # SMD's words
        raise
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        for item in incoming:
            await upsert(conn, item, force)
    return no_content()


@router.delete(COMPONENTS, scope="write:smd", summary="Delete every component (children first)", status=200)
async def hsm_delete_components(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        # Deepest first, so that no parent is deleted under its children.
        ids = [r["id"] for r in await conn.fetch(
            "WITH RECURSIVE tree AS (SELECT id, 0 AS depth FROM smd.components WHERE parent_id IS NULL "
            "UNION ALL SELECT c.id, t.depth + 1 FROM smd.components c JOIN tree t ON c.parent_id = t.id) "
            "SELECT id FROM tree ORDER BY depth DESC, id")]
        if not ids:
            raise problem(404, "no entries to delete")
        for component_id in ids:
            await components.remove_component(request, conn, component_id)
    return message(f"deleted {len(ids)} entries")


@router.patch(f"{COMPONENTS}/BulkNID", scope="write:smd", summary="Set the NIDs of components", status=204,
              content_types=BODY_TYPES, body_limit=MAX_BULK_BODY)
async def hsm_bulk_nid(request: Request) -> Response:
    items = _components_of(await json_body(request))
    wanted: list[tuple[str, int | None]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise problem(400, f"$.Components[{i}] must be a JSON object")
        nid = key(item, "NID")
        if nid in (None, ""):
            raise problem(400, f"$.Components[{i}]: a NID is required (a negative one unsets it)")
        number = _whole(nid, "NID")
        wanted.append((normal_id(key(item, "ID")), number if number >= 0 else None))
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        for component_id, nid in wanted:
            row = await inventory.fetch_component(conn, component_id, lock=True)
            if row is None:
                raise problem(404, f"no such xname: {component_id}")
            current = components.to_spec(row)
            if current.nid != nid:
                changed = msgspec.structs.replace(current, nid=nid)
                with as_bad_request():
                    await inventory.replace_component(conn, component_id, components.to_component(changed),
                                                      inventory.ADMIN)
    return no_content()


@router.get(f"{COMPONENTS}/ByNID/{{nid}}", scope="read:smd", summary="Get the component with a NID")
async def hsm_component_by_nid(request: Request) -> Response:
    raw = request.path_params["nid"]
    if not (raw.isascii() and raw.isdigit() and len(raw) < 17):
        raise problem(400, f"bad query param: NID '{raw[:64]}' is invalid")
    where = Where()
    where.add("c.nid = {}", int(raw))
    body = await _read(request, COMPONENT, COMPONENTS_FROM, where)
    if not body:
        raise problem(404, "no such NID.")
    return _json(body)


@router.get(f"{COMPONENTS}/{{xname}}", scope="read:smd", summary="Get one component (SMD Component shape)")
async def hsm_get_component(request: Request) -> Response:
    raw = request.path_params["xname"]
    found = xname.parse(raw)
    where = Where()
    where.add("c.id = {}", found.id if found else raw)
    body = await _read(request, COMPONENT, COMPONENTS_FROM, where)
    if not body:
        raise problem(404, "no such xname.")
    return _json(body)


@router.put(f"{COMPONENTS}/{{xname}}", scope="write:smd", summary="Create a component, or with Force change it",
            status=204, content_types=BODY_TYPES)
async def hsm_put_component(request: Request) -> Response:
    path_id = normal_id(request.path_params["xname"])
    body = json_object(await json_body(request))
    component = key(body, "Component")
    if not isinstance(component, dict):
        raise problem(400, "Missing Component")
    body_id = key(component, "ID")
    if body_id not in (None, "") and (not isinstance(body_id, str) or normal_id(body_id) != path_id):
        raise problem(400, f"xname in URL and PUT body do not match ({path_id} and {str(body_id)[:64]})")
    item = incoming_component({**component, "ID": path_id}, "$.Component")
    force = _flag(key(body, "Force", False), "Force")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await upsert(conn, item, force)
    return no_content()


@router.delete(f"{COMPONENTS}/{{xname}}", scope="write:smd", summary="Delete a component", status=200)
async def hsm_delete_component(request: Request) -> Response:
    component_id = normal_id(request.path_params["xname"], "xname")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        if await components.remove_component(request, conn, component_id) is None:
            raise problem(404, "no such xname.")
    return message("deleted 1 entry")


# -- Inventory/EthernetInterfaces -----------------------------------------------------------------------

INTERFACES = f"{BASE}/Inventory/EthernetInterfaces"
NO_INTERFACE = "no such component ethernet interface."


async def hsm_list_interfaces(request: Request) -> Response:
    members = INTERFACE_ANONYMOUS if is_anonymous_read(request) else INTERFACE
    return _json(b"[" + await _read(request, members, INTERFACES_FROM, interface_filter(request)) + b"]")


for _path in (INTERFACES, INTERFACES + "/"):
    router.get(_path, scope="read:smd", summary="List Ethernet interfaces (a bare array)", params=INTERFACE_PARAMS,
               fold_query=True, public_read=True)(hsm_list_interfaces)


def _addresses_in(value: Any) -> list[dict[str, Any]]:
    """SMD's IPAddresses as the native spec names them."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(a, dict) for a in value):
        raise problem(400, "IPAddresses must be an array of objects")
    return [{"ipAddress": key(a, "IPAddress"), "network": key(a, "Network") or ""} for a in value]


def _interface(component_id: str, mac: Any, addresses: list, description: Any, nic_id: str | None,
               ) -> tuple[str, inventory.Interface]:
    """The interface as the write layer takes it, checked by the native schema (400s)."""
    with as_bad_request():
        spec = convert({"componentId": component_id, "macAddr": mac, "ipAddrs": addresses,
                        "description": description}, InterfaceSpec)
        mac, stored = checked_interface(spec, "$")
    return spec.component_id, inventory.Interface(nic_id or inventory.default_interface_id(mac), mac, stored,
                                                  spec.description)


@router.post(INTERFACES, scope="write:smd", summary="Create an Ethernet interface (its id: the MAC's hex digits)",
             content_types=BODY_TYPES)
async def hsm_post_interface(request: Request) -> Response:
    body = json_object(await json_body(request))
    mac = _optional(body, "MACAddress")
    if mac is None:
        raise problem(400, "a MACAddress is required")
    owner = _optional(body, "ComponentID")
    if owner is None:
        raise problem(400, "a ComponentID is required: Chamicore keeps every interface on a component")
    component_id, nic = _interface(normal_id(owner, "CompID"), mac, _addresses_in(key(body, "IPAddresses")),
                                   key(body, "Description") or "", None)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        with as_bad_request():
            await inventory.create_interfaces(conn, component_id, [nic], inventory.ADMIN, where="$")
    uri = f"{URI_BASE}/Inventory/EthernetInterfaces/{nic.id}"
    return json_response({"URI": uri}, 201, {"Location": PREFIX + uri})


@router.delete(INTERFACES, scope="write:smd", summary="Delete every Ethernet interface", status=200)
async def hsm_delete_interfaces(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM smd.ethernet_interfaces ORDER BY id FOR UPDATE")]
        if not ids:
            raise problem(404, "no entries to delete")
        for nic_id in ids:
            await inventory.delete_interface(conn, nic_id, inventory.ADMIN)
    return message(f"deleted {len(ids)} entries")


async def _interface_id(conn: db.Connection, text: str, missing: str | None = None) -> str:
    """The id of the interface a path names: its id (SMD's are lower-case), or its MAC in any spelling."""
    found = await conn.fetchval(
        "SELECT id FROM smd.ethernet_interfaces WHERE id = $1 OR id = lower($1) OR mac = $2 "
        "ORDER BY id = $1 DESC, id = lower($1) DESC LIMIT 1", text, try_normalize_mac(text))
    if found is None:
        raise problem(404, missing or f"No such component ethernet interface: {text[:64]}")
    return found


def _one(interface_id: str) -> Where:
    where = Where()
    where.add("i.id = {}", interface_id)
    return where


@router.get(f"{INTERFACES}/{{id}}", scope="read:smd", summary="Get one Ethernet interface")
async def hsm_get_interface(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                           readonly=True):
        nic_id = await _interface_id(conn, request.path_params["id"])
        return _json(await json_list(conn, INTERFACE, INTERFACES_FROM, _one(nic_id)))


@router.get(f"{INTERFACES}/{{id}}/IPAddresses", scope="read:smd", summary="The IP addresses of an interface")
async def hsm_interface_addresses(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        row = await inventory.fetch_interface(conn, await _interface_id(conn, request.path_params["id"]))
    return json_response([{"IPAddress": a.get("ipAddress"), **({"Network": a["network"]} if a.get("network") else {})}
                          for a in row["ip_addrs"]])


@router.patch(f"{INTERFACES}/{{id}}", scope="write:smd",
              summary="Change an interface's Description, ComponentID or IPAddresses", content_types=BODY_TYPES)
async def hsm_patch_interface(request: Request) -> Response:
    body = json_object(await json_body(request))
    description, owner, addresses = (key(body, name) for name in ("Description", "ComponentID", "IPAddresses"))
    if description is None and owner is None and addresses is None:
        raise problem(400, "Request must have at least one patch field.")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        nic_id = await _interface_id(conn, request.path_params["id"], NO_INTERFACE)
        row = await inventory.fetch_interface(conn, nic_id, lock=True)
        component_id, nic = _interface(
            normal_id(owner, "CompID") if owner is not None else row["component_id"], row["mac"],
            _addresses_in(addresses) if addresses is not None else row["ip_addrs"],
            description if description is not None else row["description"], nic_id)
        with as_bad_request():
            await inventory.replace_interface(conn, component_id, nic, inventory.ADMIN, where="$")
        return _json(await json_list(conn, INTERFACE, INTERFACES_FROM, _one(nic_id)))


@router.delete(f"{INTERFACES}/{{id}}", scope="write:smd", summary="Delete an Ethernet interface", status=200)
async def hsm_delete_interface(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        nic_id = await _interface_id(conn, request.path_params["id"], NO_INTERFACE)
        await inventory.delete_interface(conn, nic_id, inventory.ADMIN)
    return message("deleted 1 entry")


# -- memberships --------------------------------------------------------------------------------------


@router.get(f"{BASE}/memberships", scope="read:smd", summary="Group and partition of each component",
            params=COMPONENT_PARAMS, fold_query=True)
async def hsm_memberships(request: Request) -> Response:
    return _json(b"[" + await _read(request, MEMBERSHIP, COMPONENTS_FROM, component_filter(request), "c.id") + b"]")


@router.get(f"{BASE}/memberships/{{xname}}", scope="read:smd", summary="Groups and partition of one component")
async def hsm_membership(request: Request) -> Response:
    where = Where()
    where.add("c.id = {}", normal_id(request.path_params["xname"], "xname"))
    body = await _read(request, MEMBERSHIP, COMPONENTS_FROM, where)
    if not body:
        raise problem(404, "no such xname.")
    return _json(body)


routers: list[Router] = [router]
