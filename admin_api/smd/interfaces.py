"""/hsm/v2/Inventory/EthernetInterfaces: NICs, their MACs and IP addresses."""

from __future__ import annotations

from starlette.requests import Request

from admin_api.collection import Collection, Where
from admin_api.http import field_problem, query_list
from admin_api.resources import metadata
from admin_api.routing import PAGING, Param, Router, sort_param
from admin_api.smd.schemas import InlineInterface, InterfaceSpec, IpAddr, checked_interface
from core import inventory
from core.envelope import Resource
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


class Interfaces(Collection):
    base, table, select = BASE, "smd.ethernet_interfaces", f"SELECT {COLUMNS} FROM smd.ethernet_interfaces"
    kind, api_version, noun, names = KIND, API_VERSION, "interface", ("interface", "interfaces")
    spec, domain, events_as, read_scope, write_scope = InterfaceSpec, "smd", "ethernetinterfaces", "read:smd", \
        "write:smd"
    sortable = SORTABLE
    list_params = (Param("componentId", "owning components, comma = OR"),
                   Param("mac", "MACs in any accepted spelling, comma = OR",
                         schema={"type": "string", "pattern": f"^({MAC_RE}(,{MAC_RE})*)?$"}),
                   *PAGING, sort_param(SORTABLE))
    summaries = {"list": "List Ethernet interfaces", "create": "Create an Ethernet interface",
                 "get": "Get one Ethernet interface", "replace": "Replace an Ethernet interface (If-Match required)",
                 "patch": "Change an Ethernet interface (JSON merge patch)", "delete": "Delete an Ethernet interface"}

    def to_resource(self, row) -> Resource[InterfaceSpec]:
        return to_resource(row)

    def where(self, request: Request) -> Where:
        where = Where()
        if owners := query_list(request, "componentId"):
            where.add("component_id = ANY({}::text[])", owners)
        if macs := query_list(request, "mac"):
            normalised = [try_normalize_mac(m) for m in macs]
            if None in normalised:
                raise field_problem("mac", f"not a MAC address: {macs[normalised.index(None)][:40]!r}", 400)
            where.add("mac = ANY({}::text[])", normalised)
        return where

    def admit(self, body) -> tuple[str, tuple]:
        mac, addresses = checked_interface(body.spec, "$.spec")
        nic_id = body.metadata.id or default_id(mac)
        if not is_valid_id(nic_id):
            raise field_problem("$.metadata.id", "not a valid id")
        return nic_id, (body.spec, mac, addresses)

    async def check_new(self, conn, key: str) -> None:
        """inventory.create_interfaces refuses a taken id, after the component and the MAC are checked."""

    async def insert(self, request: Request, conn, key: str, prepared: tuple):
        spec, mac, addresses = prepared
        await inventory.create_interfaces(conn, spec.component_id,
                                          [inventory.Interface(key, mac, addresses, spec.description)], inventory.ADMIN)
        return await self.fetch(conn, key)

    async def update(self, request: Request, conn, key: str, spec: InterfaceSpec, patch: dict | None):
        mac, addresses = checked_interface(spec, "$.spec")
        return await inventory.replace_interface(conn, spec.component_id,
                                                 inventory.Interface(key, mac, addresses, spec.description),
                                                 inventory.ADMIN)

    async def remove(self, request: Request, conn, key: str, row) -> None:
        await inventory.delete_interface(conn, key, inventory.ADMIN)


Interfaces().routes(router)
