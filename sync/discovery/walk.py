"""The redfish driver: walk one BMC's Redfish service and describe what it manages."""

from __future__ import annotations

import asyncio
import dataclasses

from core.mac import InvalidMac, normalize_mac
from sync.redfish import RedfishClient, RedfishError


@dataclasses.dataclass(slots=True)
class FoundSystem:
    path: str
    name: str
    uuid: str | None
    serial: str | None
    manufacturer: str | None
    model: str | None
    power_state: str | None              # "On", "Off", or None when the BMC does not say
    nics: list[tuple[str, list[str]]]    # (normalised MAC, IPv4 addresses)
    rack: str | None = None
    unit: int | None = None


@dataclasses.dataclass(slots=True)
class FoundBmc:
    address: str
    uuid: str | None
    macs: list[str]
    systems: list[FoundSystem]


def _mac(value) -> str | None:
    try:
        return normalize_mac(value) if isinstance(value, str) and value else None
    except InvalidMac:
        return None


async def _nics(client: RedfishClient, system: dict) -> list[tuple[str, list[str]]]:
    link = (system.get("EthernetInterfaces") or {}).get("@odata.id")
    if not link:
        return []
    found = []
    for path in await client.members(link):
        nic = await client.get(path)
        mac = _mac(nic.get("MACAddress")) or _mac(nic.get("PermanentMACAddress"))
        if mac and mac != "00:00:00:00:00:00":
            ips = [a["Address"] for a in nic.get("IPv4Addresses") or [] if isinstance(a, dict) and a.get("Address")]
            found.append((mac, ips))
    return found


async def _location(client: RedfishClient, system: dict, chassis_cache: dict[str, dict]) -> tuple[str | None, int | None]:
    """Rack and unit from the system's chassis (Location.Placement), when it tells."""
    for link in (system.get("Links") or {}).get("Chassis") or []:
        path = link.get("@odata.id") if isinstance(link, dict) else None
        if not path:
            continue
        if path not in chassis_cache:
            try:
                chassis_cache[path] = await client.get(path)
            except RedfishError:
                chassis_cache[path] = {}
        placement = (chassis_cache[path].get("Location") or {}).get("Placement") or {}
        rack = placement.get("Rack")
        offset = placement.get("RackOffset")
        if rack or offset is not None:
            return (str(rack)[:64] if rack else None,
                    offset if isinstance(offset, int) and 0 <= offset < 2**31 else None)
    return None, None


async def _system(client: RedfishClient, path: str, chassis_cache: dict[str, dict]) -> FoundSystem:
    system = await client.get(path)
    rack, unit = await _location(client, system, chassis_cache)
    power = system.get("PowerState")
    return FoundSystem(
        path=system.get("@odata.id", path).rstrip("/"), name=str(system.get("Name") or ""),
        uuid=system.get("UUID"), serial=system.get("SerialNumber"), manufacturer=system.get("Manufacturer"),
        model=system.get("Model"), power_state=power if power in ("On", "Off") else None,
        nics=await _nics(client, system), rack=rack, unit=unit)


async def walk(client: RedfishClient) -> FoundBmc:
    root = await client.get("/redfish/v1/")
    chassis_cache: dict[str, dict] = {}
    systems_link = (root.get("Systems") or {}).get("@odata.id")
    paths = await client.members(systems_link) if systems_link else []
    # A few systems at a time: a BMC is a small computer.
    limit = asyncio.Semaphore(4)

    async def one(path: str) -> FoundSystem:
        async with limit:
            return await _system(client, path, chassis_cache)

    systems = list(await asyncio.gather(*(one(p) for p in paths)))
    macs: list[str] = []
    managers_link = (root.get("Managers") or {}).get("@odata.id")
    for path in await client.members(managers_link) if managers_link else []:
        manager = await client.get(path)
        if manager.get("ManagerType") not in (None, "BMC"):
            continue
        link = (manager.get("EthernetInterfaces") or {}).get("@odata.id")
        if link:
            for nic_path in await client.members(link):
                mac = _mac((await client.get(nic_path)).get("MACAddress"))
                if mac and mac not in macs:
                    macs.append(mac)
    return FoundBmc(address=client.base, uuid=root.get("UUID"), macs=macs, systems=systems)
