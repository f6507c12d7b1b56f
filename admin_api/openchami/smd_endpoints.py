"""SMD's RedfishEndpoints and ComponentEndpoints as OpenCHAMI's clients speak them.

A RedfishEndpoint is, in Chamicore, a BMC component whose id is the
endpoint's xname and a native Redfish endpoint (smd.redfish_endpoints) at
`https://<FQDN, Hostname or IPAddress>`.  A body with SchemaVersion >= 1
(`ochami discover static`, `magellan send`) also carries the BMC's Managers
and the nodes' Systems: each Manager's interfaces become the BMC's, each
System (deduplicated by UUID, in order, i = 0, 1, ...) becomes node
`<id>n<i>` with its interfaces, and the native endpoint records which
Redfish system each node is, which is what power control addresses.  Every
write goes through core.inventory and the native endpoint code, in one
transaction per request: bad input changes nothing.

Where it differs from SMD, on purpose:
- a new node takes NID i+1 only while no other component holds it (NIDs are
  unique in Chamicore), and new nodes are Role Compute, State On; an
  existing node keeps its state, role and NID (a missing NID is filled in);
- a new BMC is State Unknown: nothing has talked to it yet;
- a POST answers 201 when it creates everything, 409 only for a taken ID or
  FQDN, or a MAC that belongs to another component (SMD >= v2.20.4 answers
  409 to a new endpoint's manager MAC);
- `User`/`Password` become a native device credential (`<id>-redfish`,
  sealed by the credentials box) bound to the endpoint, which takes the
  `write:credentials` scope as well; `Password` always reads "".  A `User`
  without a `Password` stores nothing.  A PUT without a Password keeps the
  credential the endpoint has;
- only BMCs (NodeBMC, RouterBMC, ChassisBMC) can be Redfish endpoints; the
  Name, UUID, Domain and discovery flags of the body are not kept;
- TLS checks stay on (`insecure` false) for a new endpoint, as natively;
- deleting an endpoint leaves its components as they are.

ComponentEndpoints are derived, never stored: a ComputerSystem endpoint per
node with a Redfish system mapping (its reset types are what the power
engine sends), and a Manager endpoint per BMC with a Redfish endpoint.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from admin_api.auth import credentials
from admin_api.auth.guard import require_scopes
from admin_api.http import convert, json_response, problem
from admin_api.openchami.compat import (
    BODY_TYPES,
    PREFIX,
    as_bad_request,
    json_body,
    json_object,
    key,
    message,
    query_values,
)
from admin_api.openchami.smd_values import normal_id
from admin_api.routing import Param, Router
from admin_api.smd import interfaces
from admin_api.smd.redfish import ENDPOINTS, RedfishEndpointSpec, RedfishSystem
from admin_api.smd.schemas import InlineInterface
from core import fields, inventory, xname
from core.discovery import BadAddress, base_url
from core.identity import generate_id
from core.mac import InvalidMac, normalize_mac
from core.power import Operation

router = Router("openchami-smd")
BASE = "/hsm/v2/Inventory/RedfishEndpoints"  # as SMD names it in URIs
ROUTE = PREFIX + BASE
COMPONENT_ENDPOINTS = PREFIX + "/hsm/v2/Inventory/ComponentEndpoints"
CREDENTIALS_SCOPE = "write:credentials"
RESET_TYPES = [operation.value for operation in Operation]  # what the power engine sends a BMC

FILTERS = (Param("id", "endpoint xnames"), Param("fqdn", "FQDNs"), Param("type", "types (NodeBMC ...)"),
           Param("uuid", "endpoint UUIDs (Chamicore keeps none: nothing matches)"),
           Param("macaddr", "the BMC's MAC addresses"), Param("ipaddress", "the BMC's IP addresses"))
ENDPOINT_FILTERS = (Param("id", "component xnames"), Param("type", "types (Node, NodeBMC ...)"),
                    Param("redfish_ep_id", "Redfish endpoint xnames"))


@dataclasses.dataclass(slots=True)
class System:
    node_id: str
    nid: int
    nics: list[inventory.Interface]
    mapping: RedfishSystem | None  # None: the body gave no `uri`, so there is no system path to record


@dataclasses.dataclass(slots=True)
class Endpoint:
    """One RedfishEndpoint of a body, checked and normalised before anything is written."""

    id: str
    address: str
    enabled: bool | None
    user: str
    password: str
    bmc_nics: list[inventory.Interface]
    systems: list[System]
    inventory: bool  # SchemaVersion >= 1: Systems and Managers were read


# -- reading a body ------------------------------------------------------------

def _text(obj: dict, name: str, where: str) -> str:
    value = key(obj, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise problem(400, f"{where}.{name} must be a string")
    return value.strip()


def _list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise problem(400, f"{where} must be a JSON array")
    return value


def _nics(entries: Any, where: str) -> list[inventory.Interface]:
    """`ethernet_interfaces` as Chamicore interfaces: one IP and no network each, as SMD stores them."""
    nics = []
    for i, entry in enumerate(_list(entries, where)):
        path = f"{where}[{i}]"
        entry = json_object(entry, path)
        mac = _text(entry, "mac", path)
        if not mac:
            continue  # nothing to store an interface under
        ip = _text(entry, "ip", path)
        nic = convert({"macAddr": mac, "ipAddrs": [{"ipAddress": ip}] if ip else [],
                       "description": _text(entry, "description", path)}, InlineInterface, path)
        nics.append(interfaces.prepare_inline(nic, path))
    return nics


def _systems(endpoint_id: str, values: Any, where: str) -> list[System]:
    systems: list[System] = []
    seen: set[str] = set()
    for j, value in enumerate(_list(values, f"{where}.Systems")):
        path = f"{where}.Systems[{j}]"
        system = json_object(value, path)
        uuid = _text(system, "uuid", path)
        if uuid in seen:
            continue
        if uuid:
            seen.add(uuid)
        i = len(systems)
        node_id = f"{endpoint_id}n{i}"
        mapping = None
        if uri := _text(system, "uri", path):
            try:
                system_path = urlsplit(uri).path
            except ValueError:
                raise problem(400, f"{path}.uri: not a URI: {uri[:80]!r}") from None
            labels = {name: _text(system, name, path) or None for name in ("serial", "manufacturer", "model")}
            mapping = convert({"componentId": node_id, "path": system_path, "uuid": uuid or None, **labels},
                              RedfishSystem, path)
        systems.append(System(node_id, i + 1, _nics(key(system, "ethernet_interfaces"), f"{path}.ethernet_interfaces"),
                              mapping))
    return systems


def parse_endpoint(value: Any, where: str, path_id: str | None = None) -> Endpoint:
    """One RedfishEndpoint body, every value checked (400 naming the field), nothing written."""
    obj = json_object(value, where)
    raw_id = _text(obj, "ID", where) or _text(obj, "Hostname", where) or path_id or ""
    found = xname.parse(raw_id)
    if found is None or found.kind not in xname.CONTROLLER_KINDS:
        raise problem(400, f"{where}.ID: {raw_id[:64]!r} is not the xname of a controller (NodeBMC, RouterBMC, "
                           "ChassisBMC, CabinetPDUController or a management switch)")
    if found.kind not in xname.BMC_KINDS:
        raise problem(400, f"{where}.ID: {found.id!r} is a {found.kind}; Chamicore keeps Redfish endpoints for BMCs "
                           "only (NodeBMC, RouterBMC, ChassisBMC)")
    if path_id is not None and found.id != path_id:
        raise problem(400, f"xname in URL and PUT body do not match ({found.id!r}, {path_id!r})")
    fqdn, hostname, domain = _text(obj, "FQDN", where), _text(obj, "Hostname", where), _text(obj, "Domain", where)
    ip = _text(obj, "IPAddress", where)
    if ip:
        try:
            ip = fields.ip_address(ip)
        except fields.InvalidField as exc:
            raise problem(400, f"{where}.IPAddress: {exc}") from None
    host = fqdn or (f"{hostname}.{domain}" if hostname and domain else hostname) or ip or found.id
    try:
        address = base_url(host)
    except BadAddress as exc:
        raise problem(400, f"{where}.FQDN: {exc}") from None
    enabled = key(obj, "Enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise problem(400, f"{where}.Enabled must be true or false")
    version = key(obj, "SchemaVersion")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int | float)):
        raise problem(400, f"{where}.SchemaVersion must be a number")
    full = version is not None and version >= 1  # SMD's V2 parser (an integer > 0): Systems and Managers
    bmc_nics: list[inventory.Interface] = []
    systems: list[System] = []
    if full:
        for m, manager in enumerate(_list(key(obj, "Managers"), f"{where}.Managers")):
            path = f"{where}.Managers[{m}]"
            for nic in _nics(key(json_object(manager, path), "ethernet_interfaces"), f"{path}.ethernet_interfaces"):
                if nic.mac not in {n.mac for n in bmc_nics}:
                    bmc_nics.append(nic)
        systems = _systems(found.id, key(obj, "Systems"), where)
    if mac_text := _text(obj, "MACAddr", where):
        try:
            mac = normalize_mac(mac_text)
        except InvalidMac as exc:
            raise problem(400, f"{where}.MACAddr: {exc}") from None
        if mac not in {n.mac for n in bmc_nics}:
            bmc_nics.append(inventory.Interface(inventory.default_interface_id(mac), mac,
                                                [{"ipAddress": ip, "network": ""}] if ip else []))
    interfaces.check_distinct_macs([*bmc_nics, *(nic for s in systems for nic in s.nics)], f"{where}.interfaces")
    user, password = _text(obj, "User", where), key(obj, "Password") or ""
    if password:
        if not isinstance(password, str):
            raise problem(400, f"{where}.Password must be a string")
        if not user:
            raise problem(400, f"{where}.User: a Password needs the user name it goes with")
        convert({"username": user, "secret": password}, credentials.CredentialSpec, where)
    return Endpoint(found.id, address, enabled, user, password, bmc_nics, systems, full)


async def parse_body(request: Request, path_id: str | None = None) -> list[Endpoint]:
    """The endpoints of a body: one object, or SMD's `{"RedfishEndpoints": [...]}` (POST only)."""
    with as_bad_request():
        body = json_object(await json_body(request))
        many = key(body, "RedfishEndpoints") if path_id is None else None
        if many is not None:
            if not isinstance(many, list) or not many:
                raise problem(400, "RedfishEndpoints must be a non-empty JSON array")
            endpoints = [parse_endpoint(v, f"$.RedfishEndpoints[{i}]") for i, v in enumerate(many)]
        else:
            endpoints = [parse_endpoint(body, "$", path_id)]
    if any(e.password for e in endpoints):
        require_scopes(request, (CREDENTIALS_SCOPE,), "the body carries a BMC password, stored as a device credential")
    return endpoints


# -- writing ---------------------------------------------------------------------

def _location(component_id: str) -> dict[str, Any]:
    found = xname.parse(component_id)
    return found.location() if found is not None else {}


async def _upsert_bmc(conn, endpoint: Endpoint) -> None:
    row = await inventory.fetch_component(conn, endpoint.id, lock=True)
    if row is None:
        await inventory.create_component(conn, endpoint.id, inventory.Component(
            type="BMC", state="Unknown", enabled=True if endpoint.enabled is None else endpoint.enabled,
            **_location(endpoint.id)), inventory.ADMIN)
    elif row["type"] != "BMC":
        raise problem(409, f"component {endpoint.id!r} is a {row['type']}, not a BMC")
    elif endpoint.enabled is not None and row["enabled"] != endpoint.enabled:
        await inventory.replace_component(conn, endpoint.id, dataclasses.replace(
            inventory.Component.from_row(row), enabled=endpoint.enabled), inventory.ADMIN)


async def _free_nid(conn, nid: int) -> int | None:
    """`nid`, unless a component holds it already: NIDs are unique in Chamicore."""
    return None if await conn.fetchval("SELECT true FROM smd.components WHERE nid = $1", nid) else nid


async def _upsert_node(conn, system: System) -> None:
    row = await inventory.fetch_component(conn, system.node_id, lock=True)
    if row is None:
        await inventory.create_component(conn, system.node_id, inventory.Component(
            type="Node", state="On", role="Compute", nid=await _free_nid(conn, system.nid),
            **_location(system.node_id)), inventory.ADMIN)
    elif row["type"] != "Node":
        raise problem(409, f"component {system.node_id!r} is a {row['type']}, not a Node")
    elif row["nid"] is None and (nid := await _free_nid(conn, system.nid)) is not None:
        await inventory.replace_component(conn, system.node_id, dataclasses.replace(
            inventory.Component.from_row(row), nid=nid), inventory.ADMIN)


async def _upsert_nics(conn, component_id: str, nics: list[inventory.Interface], *, overwrite: bool) -> None:
    """New interfaces through the write layer (409 for a MAC another component has); one the component has
    already is rewritten on a PUT only."""
    for nic in nics:
        owner = await conn.fetchrow("SELECT id, component_id, ip_addrs, description FROM smd.ethernet_interfaces "
                                    "WHERE mac = $1", nic.mac)
        if owner is not None and owner["component_id"] == component_id:
            if overwrite and (owner["ip_addrs"], owner["description"]) != (nic.ip_addrs, nic.description):
                await inventory.replace_interface(conn, component_id, dataclasses.replace(nic, id=owner["id"]),
                                                  inventory.ADMIN)
            continue
        if owner is None and await inventory.fetch_interface(conn, nic.id):
            nic = dataclasses.replace(nic, id=generate_id("nic"))  # an interface id chosen by hand holds it
        await inventory.create_interfaces(conn, component_id, [nic], inventory.ADMIN)


async def _bind_credential(request: Request, conn, endpoint: Endpoint) -> None:
    """User/Password as a native credential, bound to the endpoint.

    Binding a credential to a new address takes `read:credentials` natively
    (admin_api/auth/binding.py: it would send someone's secret where one
    chooses).  Not here: this secret is the caller's own, written in this
    request, so sending it to this BMC tells the caller nothing.
    """
    credential_id = f"{endpoint.id}-redfish"
    if await conn.fetchval("SELECT true FROM auth.credentials WHERE id = $1 FOR UPDATE", credential_id):
        await credentials.update_credential(request, conn, credential_id, credentials.CredentialChange(
            username=endpoint.user, secret=endpoint.password))
    else:
        await credentials.insert_credential(request, conn, credential_id, credentials.CredentialSpec(
            username=endpoint.user, secret=endpoint.password, tags=["openchami"],
            description=f"BMC {endpoint.id}: the User/Password of its OpenCHAMI RedfishEndpoint"))
    await conn.execute("UPDATE smd.redfish_endpoints SET credential_id = $2, updated_at = now() WHERE id = $1",
                       endpoint.id, credential_id)


async def write_endpoint(request: Request, conn, endpoint: Endpoint, *, replace: bool) -> None:
    """Components, interfaces, the native endpoint and its systems, and the credential, in the caller's
    transaction.  Without `replace`, an endpoint that exists is a 409."""
    current = await conn.fetchrow("SELECT credential_id, insecure FROM smd.redfish_endpoints WHERE id = $1 "
                                  "FOR UPDATE", endpoint.id)
    if current is not None and not replace:
        raise problem(409, f"Redfish endpoint {endpoint.id!r} already exists")
    await _upsert_bmc(conn, endpoint)
    await _upsert_nics(conn, endpoint.id, endpoint.bmc_nics, overwrite=replace)
    for system in endpoint.systems:
        await _upsert_node(conn, system)
        await _upsert_nics(conn, system.node_id, system.nics, overwrite=replace)
    spec = RedfishEndpointSpec(address=endpoint.address,
                               credential_id=current["credential_id"] if current else None,
                               insecure=current["insecure"] if current else False,
                               systems=[s.mapping for s in endpoint.systems if s.mapping is not None])
    if current is None:
        await ENDPOINTS.insert(request, conn, endpoint.id, spec)
    else:
        # A body without Systems leaves the systems as they are (a patch that does not name them).
        await ENDPOINTS.update(request, conn, endpoint.id, spec, None if endpoint.inventory else
                               {"address": endpoint.address})
    if endpoint.password:
        await _bind_credential(request, conn, endpoint)


# -- reading ---------------------------------------------------------------------

_NICS = ("coalesce((SELECT jsonb_agg(jsonb_build_object('id', i.id, 'mac', i.mac, 'ipAddrs', i.ip_addrs, "
         "'description', i.description) ORDER BY i.created_at, i.id) FROM smd.ethernet_interfaces i "
         "WHERE i.component_id = {}), '[]') AS nics")
ENDPOINT_ROWS = (f"SELECT e.id, e.address, e.discovered_at, c.type, c.enabled, cr.username, {_NICS.format('e.id')} "
                 "FROM smd.redfish_endpoints e JOIN smd.components c ON c.id = e.id "
                 "LEFT JOIN auth.credentials cr ON cr.id = e.credential_id")
SYSTEM_ROWS = (f"SELECT s.component_id, s.endpoint_id, s.path, s.uuid, c.type, c.enabled, e.address, "
               f"{_NICS.format('s.component_id')} FROM smd.redfish_systems s "
               "JOIN smd.components c ON c.id = s.component_id JOIN smd.redfish_endpoints e ON e.id = s.endpoint_id")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def to_endpoint(row) -> dict[str, Any]:
    """SMD's RedfishEndpoint.  Password is always empty: secrets are read through /auth/v1/credentials only."""
    parts = urlsplit(row["address"])
    host = parts.hostname or ""
    nics = row["nics"]
    ip = host if _is_ip(host) else next((a["ipAddress"] for n in nics for a in n["ipAddrs"]), "")
    hostname, _, domain = ("", "", "") if _is_ip(host) else host.partition(".")
    endpoint: dict[str, Any] = {
        "ID": row["id"], "Type": xname.openchami_type(row["id"], row["type"]),
        "Hostname": hostname or host, "Domain": domain, "FQDN": parts.netloc, "Enabled": row["enabled"],
        "User": row["username"] or "", "Password": "", "RediscoverOnUpdate": False,
        "DiscoveryInfo": {"LastDiscoveryStatus": "DiscoverOK" if row["discovered_at"] else "NotYetQueried"}}
    if row["discovered_at"]:
        endpoint["DiscoveryInfo"]["LastDiscoveryAttempt"] = row["discovered_at"].isoformat()
    if nics:
        endpoint["MACAddr"] = nics[0]["mac"]
    if ip:
        endpoint["IPAddress"] = ip
    return endpoint


def _wanted(values: list[str]) -> set[str]:
    return {normal_id(v) for v in values}


def _matches(endpoint: dict, request: Request) -> bool:
    """The filters SMD's RedfishEndpoints take besides `id` (which the query applies)."""
    if (types := query_values(request, "type")) and endpoint["Type"].lower() not in {t.lower() for t in types}:
        return False
    if (fqdns := query_values(request, "fqdn")) and not {endpoint["FQDN"], endpoint["Hostname"]} & set(fqdns):
        return False
    if query_values(request, "uuid"):
        return False  # no endpoint shows a UUID
    if macs := query_values(request, "macaddr"):
        try:
            wanted = {normalize_mac(m) for m in macs}
        except InvalidMac as exc:
            raise problem(400, f"macaddr: {exc}") from None
        if endpoint.get("MACAddr") not in wanted:
            return False
    if (ips := query_values(request, "ipaddress")) and endpoint.get("IPAddress") not in ips:
        return False
    return True


async def _endpoints(conn, ids: list[str] | None = None) -> list[dict[str, Any]]:
    rows = await conn.fetch(ENDPOINT_ROWS + " WHERE $1::text[] IS NULL OR e.id = ANY($1::text[]) ORDER BY e.id", ids)
    return [to_endpoint(r) for r in rows]


def _nic_info(nics: list[dict]) -> list[dict[str, Any]]:
    return [{"RedfishId": "", "@odata.id": "", "Description": n["description"], "MACAddress": n["mac"]}
            for n in nics]


def to_system_endpoint(row) -> dict[str, Any]:
    """A ComputerSystem ComponentEndpoint: what BSS and PCS read to boot and power a node."""
    fqdn = urlsplit(row["address"]).netloc
    endpoint: dict[str, Any] = {
        "ID": row["component_id"], "Type": xname.openchami_type(row["component_id"], row["type"]),
        "RedfishType": "ComputerSystem", "RedfishSubtype": "", "OdataID": row["path"],
        "RedfishEndpointID": row["endpoint_id"], "Enabled": row["enabled"], "RedfishEndpointFQDN": fqdn,
        "RedfishURL": fqdn + row["path"], "ComponentEndpointType": "ComponentEndpointComputerSystem",
        "RedfishSystemInfo": {
            "Actions": {"#ComputerSystem.Reset": {"ResetType@Redfish.AllowableValues": RESET_TYPES,
                                                  "target": row["path"] + "/Actions/ComputerSystem.Reset"}},
            "EthernetNICInfo": _nic_info(row["nics"])}}
    if row["uuid"]:
        endpoint["UUID"] = row["uuid"]
    return endpoint


def to_manager_endpoint(row) -> dict[str, Any]:
    """A Manager ComponentEndpoint for a BMC.  Chamicore keeps no manager path, so OdataID is empty."""
    fqdn = urlsplit(row["address"]).netloc
    return {"ID": row["id"], "Type": xname.openchami_type(row["id"], row["type"]), "RedfishType": "Manager",
            "RedfishSubtype": "", "OdataID": "", "RedfishEndpointID": row["id"], "Enabled": row["enabled"],
            "RedfishEndpointFQDN": fqdn, "RedfishURL": fqdn, "ComponentEndpointType": "ComponentEndpointManager",
            "RedfishManagerInfo": {"EthernetNICInfo": _nic_info(row["nics"])}}


async def _component_endpoints(conn, ids: list[str] | None) -> list[dict[str, Any]]:
    systems = await conn.fetch(SYSTEM_ROWS + " WHERE $1::text[] IS NULL OR s.component_id = ANY($1::text[])", ids)
    managers = await conn.fetch(ENDPOINT_ROWS + " WHERE $1::text[] IS NULL OR e.id = ANY($1::text[])", ids)
    found = [*map(to_system_endpoint, systems), *map(to_manager_endpoint, managers)]
    return sorted(found, key=lambda e: e["ID"])


# -- routes ----------------------------------------------------------------------

def _uris(ids: list[str]) -> Response:
    uris = [f"{BASE}/{i}" for i in ids]
    return json_response([{"URI": uri} for uri in uris], 201, {"Location": PREFIX + uris[0]})


@router.get(ROUTE, scope="read:smd", summary="List Redfish endpoints (SMD shape)", params=FILTERS, fold_query=True)
async def list_endpoints(request: Request) -> Response:
    ids = query_values(request, "id")
    async with request.app.state.pool.acquire() as conn:
        found = await _endpoints(conn, sorted(_wanted(ids)) if ids else None)
    return json_response({"RedfishEndpoints": [e for e in found if _matches(e, request)]})


@router.post(ROUTE, scope="write:smd", summary="Declare BMCs' Redfish endpoints, with their nodes (SchemaVersion 1)",
             content_types=BODY_TYPES, fold_query=True)
async def create_endpoints(request: Request) -> Response:
    endpoints = await parse_body(request)
    with as_bad_request():
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            for endpoint in endpoints:
                await write_endpoint(request, conn, endpoint, replace=False)
    return _uris([e.id for e in endpoints])


@router.get(ROUTE + "/{id}", scope="read:smd", summary="Get one Redfish endpoint (SMD shape)", fold_query=True)
async def get_endpoint(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        found = await _endpoints(conn, [normal_id(request.path_params["id"])])
    if not found:
        raise problem(404, "no such xname.")
    return json_response(found[0])


@router.put(ROUTE + "/{id}", scope="write:smd", summary="Create or replace a Redfish endpoint (SMD shape)",
            content_types=BODY_TYPES, fold_query=True)
async def put_endpoint(request: Request) -> Response:
    endpoint_id = normal_id(request.path_params["id"])
    (endpoint,) = await parse_body(request, endpoint_id)
    with as_bad_request():
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            await write_endpoint(request, conn, endpoint, replace=True)
            (answer,) = await _endpoints(conn, [endpoint.id])
    return json_response(answer)


async def _remove(request: Request, conn, endpoint_ids: list[str]) -> None:
    for endpoint_id in endpoint_ids:
        await ENDPOINTS.remove(request, conn, endpoint_id, await ENDPOINTS.fetch(conn, endpoint_id, lock=True))


@router.delete(ROUTE + "/{id}", scope="write:smd", summary="Forget a Redfish endpoint (its components stay)",
               status=200, fold_query=True)
async def delete_endpoint(request: Request) -> Response:
    endpoint_id = normal_id(request.path_params["id"])
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT true FROM smd.redfish_endpoints WHERE id = $1", endpoint_id):
            raise problem(404, "no such xname.")
        await _remove(request, conn, [endpoint_id])
    return message("deleted 1 entry")


@router.delete(ROUTE, scope="write:smd", summary="Forget every Redfish endpoint (their components stay)", status=200,
               fold_query=True)
async def delete_endpoints(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM smd.redfish_endpoints ORDER BY id FOR UPDATE")]
        if not ids:
            raise problem(404, "no entries to delete")
        await _remove(request, conn, ids)
    return message(f"deleted {len(ids)} entries")


@router.get(COMPONENT_ENDPOINTS, scope="read:smd", summary="List component endpoints (derived, SMD shape)",
            params=ENDPOINT_FILTERS, fold_query=True)
async def list_component_endpoints(request: Request) -> Response:
    ids = query_values(request, "id")
    types = {t.lower() for t in query_values(request, "type")}
    owners = _wanted(query_values(request, "redfish_ep_id"))
    async with request.app.state.pool.acquire() as conn:
        found = await _component_endpoints(conn, sorted(_wanted(ids)) if ids else None)
    return json_response({"ComponentEndpoints": [
        e for e in found if (not types or e["Type"].lower() in types)
        and (not owners or e["RedfishEndpointID"] in owners)]})


@router.get(COMPONENT_ENDPOINTS + "/{id}", scope="read:smd", summary="Get one component endpoint (SMD shape)",
            fold_query=True)
async def get_component_endpoint(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        found = await _component_endpoints(conn, [normal_id(request.path_params["id"])])
    if not found:
        raise problem(404, "no such xname.")
    return json_response(found[0])


routers: list[Router] = [router]
