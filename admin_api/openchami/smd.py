"""SMD as OpenCHAMI's clients speak it, under /openchami/hsm/v2: service status and enum values,
State/Components, Inventory/EthernetInterfaces and memberships.

A translation over Chamicore's inventory: every write goes through core.inventory, as the native
routes' do (same checks, same outbox events), after the native schemas have checked the values; a 422 of
theirs is answered with SMD's 400.  OpenCHAMI's types map onto Chamicore's through core.xname; an xname
is stored as the component's id and its location.  Where SMD keeps a field Chamicore has no column for
(Flag, Class, NetType), a valid value is accepted and not kept: Flag reads back "OK", Class and NetType
are left out, as SMD leaves out empty fields.

coresmd polls GET /State/Components and GET /Inventory/EthernetInterfaces every 30 s without a token
(CHAMICORE_OPENCHAMI_PUBLIC_READS lets it; it then sees only the fields it reads).  Those answers are
written as JSON text by PostgreSQL (smd_json.py).
"""

from __future__ import annotations

import dataclasses
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
)
from admin_api.openchami.smd_json import (
    COMPONENT,
    COMPONENT_ANONYMOUS,
    COMPONENT_PARAMS,
    COMPONENTS_FROM,
    INTERFACE,
    INTERFACE_ANONYMOUS,
    INTERFACE_PARAMS,
    INTERFACES_FROM,
    MEMBERSHIP,
    component_filter,
    interface_filter,
    json_answer,
    json_list,
    read,
)
from admin_api.openchami.smd_values import (
    ARCH_TO_CHAMICORE,
    ARCHES,
    CLASSES,
    FLAGS,
    NET_TYPES,
    ROLES,
    STATES,
    STORABLE_TYPES,
    SUBROLES,
    VALUES,
    choice,
    flag,
    normal_id,
    optional,
    type_name,
    whole,
)
from admin_api.routing import Endpoint, Router, is_anonymous_read
from admin_api.smd import components
from admin_api.smd.schemas import ComponentSpec, InterfaceSpec, checked_interface
from core import db, inventory, xname
from core.identity import ComponentState, is_valid_id
from core.mac import try_normalize_mac
from core.problems import ProblemError

BASE = PREFIX + "/hsm/v2"
URI_BASE = "/hsm/v2"  # as SMD names its resources in URIs (the Location header carries the face's prefix)
router = Router("openchami-smd")

# -- components as clients send them -------------------------------------------------------------------

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
        component_id, kind, location = raw_id, type_name(raw_type), {}
    else:
        raise problem(400, f"xname ID '{str(raw_id)[:64]}' is invalid (a Chamicore id that is not an xname "
                           f"needs a Type)")
    chamicore_type = STORABLE_TYPES.get(kind)
    if chamicore_type is None:
        raise problem(400, f"{component_id}: the type {kind} is not supported (Chamicore keeps no component of "
                           f"that type; supported: {', '.join(STORABLE_TYPES)})")
    state = choice(key(obj, "State", ""), STATES, "state")
    for name, choices in (("Flag", FLAGS), ("Class", CLASSES), ("NetType", NET_TYPES)):
        if (value := optional(obj, name)) is not None:
            choice(value, choices, name[0].lower() + name[1:])  # valid, though not kept
    role = optional(obj, "Role")
    role = choice(role, ROLES, "role") if role is not None else ("Compute" if chamicore_type == "Node" else None)
    sub_role = optional(obj, "SubRole")
    arch = optional(obj, "Arch")
    arch = ARCH_TO_CHAMICORE[choice(arch, ARCHES, "arch")] if arch is not None else None
    nid = optional(obj, "NID")
    nid = whole(nid, "NID") if nid is not None else None
    enabled = optional(obj, "Enabled")
    spec = {"type": chamicore_type, "state": state, "role": role,
            "subRole": choice(sub_role, SUBROLES, "subRole") if sub_role is not None else "",
            "nid": nid if nid is not None and nid >= 0 else None,  # SMD: a negative NID is none
            "enabled": flag(enabled, "Enabled") if enabled is not None else True,
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


# -- service ------------------------------------------------------------------------------------------


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
    body = await read(request, members, COMPONENTS_FROM, component_filter(request), "c.id")
    return json_answer(b'{"Components":[' + body + b"]}")


# cloud-init and others join paths with a trailing slash; SMD strips it.
for _path in (COMPONENTS, COMPONENTS + "/"):
    router.get(_path, scope="read:smd", summary="List components (SMD Component shape)", params=COMPONENT_PARAMS,
               fold_query=True, public_read=True)(hsm_list_components)


@router.post(COMPONENTS, scope="write:smd", summary="Create components; an existing one changes only with force",
             status=204, content_types=BODY_TYPES, body_limit=MAX_BULK_BODY)
async def hsm_post_components(request: Request) -> Response:
    body = await json_body(request)
    items = _components_of(body)
    force = flag(key(body, "force", False), "force")
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
        number = whole(nid, "NID")
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
    body = await read(request, COMPONENT, COMPONENTS_FROM, where, one=True)
    if not body:
        raise problem(404, "no such NID.")
    return json_answer(body)


@router.get(f"{COMPONENTS}/{{xname}}", scope="read:smd", summary="Get one component (SMD Component shape)")
async def hsm_get_component(request: Request) -> Response:
    raw = request.path_params["xname"]
    found = xname.parse(raw)
    where = Where()
    where.add("c.id = {}", found.id if found else raw)
    body = await read(request, COMPONENT, COMPONENTS_FROM, where, one=True)
    if not body:
        raise problem(404, "no such xname.")
    return json_answer(body)


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
    force = flag(key(body, "Force", False), "Force")
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
    return json_answer(b"[" + await read(request, members, INTERFACES_FROM, interface_filter(request)) + b"]")


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
    mac = optional(body, "MACAddress")
    if mac is None:
        raise problem(400, "a MACAddress is required")
    owner = optional(body, "ComponentID")
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
        return json_answer(await json_list(conn, INTERFACE, INTERFACES_FROM, _one(nic_id), one=True))


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
        return json_answer(await json_list(conn, INTERFACE, INTERFACES_FROM, _one(nic_id), one=True))


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
    return json_answer(b"[" + await read(request, MEMBERSHIP, COMPONENTS_FROM, component_filter(request), "c.id") + b"]")


@router.get(f"{BASE}/memberships/{{xname}}", scope="read:smd", summary="Groups and partition of one component")
async def hsm_membership(request: Request) -> Response:
    where = Where()
    where.add("c.id = {}", normal_id(request.path_params["xname"], "xname"))
    body = await read(request, MEMBERSHIP, COMPONENTS_FROM, where, one=True)
    if not body:
        raise problem(404, "no such xname.")
    return json_answer(body)


routers: list[Router] = [router]
