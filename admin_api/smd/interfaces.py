"""/hsm/v2/Inventory/EthernetInterfaces: NICs, their MACs and IP addresses."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

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
)
from admin_api.routing import PAGING, Param, Router, sort_param
from admin_api.smd.schemas import InlineInterface, InterfaceSpec, IpAddr, checked_interface
from core import inventory
from core.envelope import Resource, ResourceList, ResourceRequest
from core.identity import is_valid_id
from core.mac import try_normalize_mac

KIND, API_VERSION = "EthernetInterface", "hsm/v2"
BASE = "/hsm/v2/Inventory/EthernetInterfaces"
router = Router("interfaces")

COLUMNS = inventory.INTERFACE_COLUMNS
SORTABLE = {"id": "id", "componentId": "component_id", "macAddr": "mac", "createdAt": "created_at",
            "updatedAt": "updated_at"}

_HEX2 = "[0-9A-Fa-f]{2}"
MAC_RE = (f"({_HEX2}(:{_HEX2}){{5}}|{_HEX2}(-{_HEX2}){{5}}|[0-9A-Fa-f]{{4}}\\.[0-9A-Fa-f]{{4}}\\.[0-9A-Fa-f]{{4}}"
          f"|[0-9A-Fa-f]{{12}})")

default_id = inventory.default_interface_id


def to_resource(row) -> Resource[InterfaceSpec]:
    spec = InterfaceSpec(component_id=row["component_id"], mac_addr=row["mac"],
                         ip_addrs=[IpAddr(ip_address=a["ipAddress"], network=a.get("network", ""))
                                   for a in row["ip_addrs"]],
                         description=row["description"])
    return Resource(kind=KIND, api_version=API_VERSION, metadata=metadata(row["id"], row), spec=spec)


def prepare_inline(nic: InlineInterface, path: str) -> inventory.Interface:
    mac, addresses = checked_interface(nic, path)
    return inventory.Interface(nic.id or default_id(mac), mac, addresses, nic.description)


def check_distinct_macs(nics: list[inventory.Interface], path: str) -> None:
    seen: dict[str, int] = {}
    for i, nic in enumerate(nics):
        if nic.mac in seen:
            raise field_problem(f"{path}[{i}].macAddr", f"{nic.mac} appears twice (also at [{seen[nic.mac]}])")
        seen[nic.mac] = i


def path_id(request: Request) -> str:
    return path_key(request, "interface")


async def fetch_row(conn, nic_id: str, *, lock: bool = False):
    return await fetch_one(conn, f"SELECT {COLUMNS} FROM smd.ethernet_interfaces WHERE id = $1", nic_id, "interface",
                           lock=lock)


@router.get(BASE, scope="read:smd", summary="List Ethernet interfaces", response=ResourceList[InterfaceSpec],
            params=(Param("componentId", "owning components, comma = OR"),
                    Param("mac", "MACs in any accepted spelling, comma = OR",
                          schema={"type": "string", "pattern": f"^({MAC_RE}(,{MAC_RE})*)?$"}),
                    *PAGING, sort_param(SORTABLE)))
async def list_interfaces(request: Request) -> Response:
    limit, offset = paging(request)
    where: list[str] = []
    args: list[object] = []
    if owners := query_list(request, "componentId"):
        args.append(owners)
        where.append(f"component_id = ANY(${len(args)}::text[])")
    if macs := query_list(request, "mac"):
        normalised = [try_normalize_mac(m) for m in macs]
        if None in normalised:
            raise field_problem("mac", f"not a MAC address: {macs[normalised.index(None)][:40]!r}", 400)
        args.append(normalised)
        where.append(f"mac = ANY(${len(args)}::text[])")
    condition = (" WHERE " + " AND ".join(where)) if where else ""
    async with request.app.state.pool.acquire() as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM smd.ethernet_interfaces{condition}", *args)
        rows = await conn.fetch(f"SELECT {COLUMNS} FROM smd.ethernet_interfaces{condition} "
                                f"ORDER BY {order_by(request, SORTABLE)} LIMIT {limit} OFFSET {offset}", *args)
    return list_answer(request, "EthernetInterfaceList", API_VERSION, [to_resource(r) for r in rows], total, limit,
                       offset)


@router.post(BASE, scope="write:smd", summary="Create an Ethernet interface",
             request=ResourceRequest[InterfaceSpec], response=Resource[InterfaceSpec])
async def create_interface(request: Request) -> Response:
    body = await read_json(request, ResourceRequest[InterfaceSpec])
    mac, addresses = checked_interface(body.spec, "$.spec")
    nic_id = body.metadata.id or default_id(mac)
    if not is_valid_id(nic_id):
        raise field_problem("$.metadata.id", "not a valid id")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await inventory.create_interfaces(conn, body.spec.component_id,
                                          [inventory.Interface(nic_id, mac, addresses, body.spec.description)],
                                          inventory.ADMIN)
        row = await fetch_row(conn, nic_id)
    return answer(to_resource(row), 201, f"{BASE}/{nic_id}")


@router.get(BASE + "/{id}", scope="read:smd", summary="Get one Ethernet interface", response=Resource[InterfaceSpec])
async def get_interface(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        return answer(to_resource(await fetch_row(conn, path_id(request))))


async def _update(conn, nic_id: str, spec: InterfaceSpec, path: str = "$.spec"):
    mac, addresses = checked_interface(spec, path)
    return await inventory.replace_interface(conn, spec.component_id,
                                             inventory.Interface(nic_id, mac, addresses, spec.description),
                                             inventory.ADMIN, where=path)


@router.put(BASE + "/{id}", scope="write:smd", summary="Replace an Ethernet interface (If-Match required)",
            request=ResourceRequest[InterfaceSpec], response=Resource[InterfaceSpec])
async def replace_interface(request: Request) -> Response:
    nic_id = path_id(request)
    body = await read_json(request, ResourceRequest[InterfaceSpec])
    if body.metadata.id not in (None, nic_id):
        raise field_problem("$.metadata.id", f"does not match the id in the path ({nic_id!r})")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        current = await fetch_row(conn, nic_id, lock=True)
        check_if_match(request, etag_of(nic_id, current))
        row = await _update(conn, nic_id, body.spec)
    return answer(to_resource(row))


@router.patch(BASE + "/{id}", scope="write:smd", summary="Change an Ethernet interface (JSON merge patch)",
              request=dict, response=Resource[InterfaceSpec], content_types=MERGE_PATCH_TYPES)
async def patch_interface(request: Request) -> Response:
    nic_id = path_id(request)
    patch = await read_patch(request)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        current = await fetch_row(conn, nic_id, lock=True)
        check_if_match(request, etag_of(nic_id, current), required=False)
        row = await _update(conn, nic_id, patched(to_resource(current).spec, patch, InterfaceSpec))
    return answer(to_resource(row))


@router.delete(BASE + "/{id}", scope="write:smd", summary="Delete an Ethernet interface")
async def delete_interface(request: Request) -> Response:
    nic_id = path_id(request)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await fetch_row(conn, nic_id, lock=True)
        await inventory.delete_interface(conn, nic_id, inventory.ADMIN)
    return Response(status_code=204)
