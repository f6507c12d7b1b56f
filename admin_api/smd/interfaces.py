"""/hsm/v2/Inventory/EthernetInterfaces: NICs, their MACs and IP addresses."""

from __future__ import annotations

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
from core import events
from core.envelope import Resource, ResourceList, ResourceRequest
from core.identity import is_valid_id
from core.mac import try_normalize_mac

KIND, API_VERSION = "EthernetInterface", "hsm/v2"
BASE = "/hsm/v2/Inventory/EthernetInterfaces"
router = Router("interfaces")

COLUMNS = "id, component_id, mac, ip_addrs, description, created_at, updated_at"
SORTABLE = {"id": "id", "componentId": "component_id", "macAddr": "mac", "createdAt": "created_at",
            "updatedAt": "updated_at"}

_HEX2 = "[0-9A-Fa-f]{2}"
MAC_RE = (f"({_HEX2}(:{_HEX2}){{5}}|{_HEX2}(-{_HEX2}){{5}}|[0-9A-Fa-f]{{4}}\\.[0-9A-Fa-f]{{4}}\\.[0-9A-Fa-f]{{4}}"
          f"|[0-9A-Fa-f]{{12}})")

# (id, mac, ip_addrs, description), ready to insert
Prepared = tuple[str, str, list, str]


def default_id(mac: str) -> str:
    return mac.replace(":", "")


def to_resource(row) -> Resource[InterfaceSpec]:
    spec = InterfaceSpec(component_id=row["component_id"], mac_addr=row["mac"],
                         ip_addrs=[IpAddr(ip_address=a["ipAddress"], network=a.get("network", ""))
                                   for a in row["ip_addrs"]],
                         description=row["description"])
    return Resource(kind=KIND, api_version=API_VERSION, metadata=metadata(row["id"], row), spec=spec)


def prepare_inline(nic: InlineInterface, path: str) -> Prepared:
    mac, addresses = checked_interface(nic, path)
    nic_id = nic.id or default_id(mac)
    return nic_id, mac, addresses, nic.description


def check_distinct_macs(nics: list[Prepared], path: str) -> None:
    seen: dict[str, int] = {}
    for i, nic in enumerate(nics):
        if nic[1] in seen:
            raise field_problem(f"{path}[{i}].macAddr", f"{nic[1]} appears twice (also at [{seen[nic[1]]}])")
        seen[nic[1]] = i


async def check_macs_free(conn, macs: list[str], own_ids: tuple[str, ...] = ()) -> None:
    """A MAC belongs to one interface: 409 naming the component that owns it."""
    if not macs:
        return
    row = await conn.fetchrow("SELECT mac, component_id, id FROM smd.ethernet_interfaces "
                              "WHERE mac = ANY($1::text[]) AND NOT id = ANY($2::text[]) LIMIT 1", macs, list(own_ids))
    if row:
        raise problem(409, f"MAC {row['mac']} already belongs to component {row['component_id']!r} "
                           f"(interface {row['id']!r})")


async def insert_many(conn, component_id: str, nics: list[Prepared]) -> None:
    if not nics:
        return
    taken = await conn.fetchval("SELECT id FROM smd.ethernet_interfaces WHERE id = ANY($1::text[]) LIMIT 1",
                                [n[0] for n in nics])
    if taken:
        raise problem(409, f"interface {taken!r} already exists")
    await conn.executemany(
        "INSERT INTO smd.ethernet_interfaces (id, component_id, mac, ip_addrs, description) VALUES ($1, $2, $3, $4, $5)",
        [(nic_id, component_id, mac, addrs, description) for nic_id, mac, addrs, description in nics])
    await events.emit_many(conn, "smd", "ethernetinterfaces", "created", [n[0] for n in nics],
                           [{"componentId": component_id, "macAddr": n[1], "ipAddrs": n[2]} for n in nics])


def path_id(request: Request) -> str:
    return path_key(request, "interface")


async def fetch_row(conn, nic_id: str, *, lock: bool = False):
    return await fetch_one(conn, f"SELECT {COLUMNS} FROM smd.ethernet_interfaces WHERE id = $1", nic_id, "interface",
                           lock=lock)


async def _component_exists(conn, component_id: str) -> None:
    if not await conn.fetchval("SELECT true FROM smd.components WHERE id = $1", component_id):
        raise field_problem("$.spec.componentId", f"no component {component_id!r}")


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
        await _component_exists(conn, body.spec.component_id)
        await check_macs_free(conn, [mac])
        await insert_many(conn, body.spec.component_id, [(nic_id, mac, addresses, body.spec.description)])
        row = await fetch_row(conn, nic_id)
    return answer(to_resource(row), 201, f"{BASE}/{nic_id}")


@router.get(BASE + "/{id}", scope="read:smd", summary="Get one Ethernet interface", response=Resource[InterfaceSpec])
async def get_interface(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        return answer(to_resource(await fetch_row(conn, path_id(request))))


async def _update(conn, nic_id: str, spec: InterfaceSpec, path: str = "$.spec"):
    mac, addresses = checked_interface(spec, path)
    await _component_exists(conn, spec.component_id)
    await check_macs_free(conn, [mac], (nic_id,))
    row = await conn.fetchrow(
        f"UPDATE smd.ethernet_interfaces SET component_id = $2, mac = $3, ip_addrs = $4, description = $5, "
        f"updated_at = now() WHERE id = $1 RETURNING {COLUMNS}", nic_id, spec.component_id, mac, addresses,
        spec.description)
    await events.emit(conn, "smd", "ethernetinterfaces", "updated", nic_id,
                      {"componentId": spec.component_id, "macAddr": mac, "ipAddrs": addresses})
    return row


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
        row = await fetch_row(conn, nic_id, lock=True)
        await conn.execute("DELETE FROM smd.ethernet_interfaces WHERE id = $1", nic_id)
        await events.emit(conn, "smd", "ethernetinterfaces", "deleted", nic_id, {"macAddr": row["mac"]})
    return Response(status_code=204)
