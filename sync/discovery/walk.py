"""The redfish driver: walk one BMC's Redfish service and describe what it manages.

What a BMC says is input, like an admin's request body, and passes the same
checks (core/fields.py): a value no admin could store is dropped, with a
note in `FoundBmc.dropped`; a link outside the service root is not followed;
a BMC that reports more than any real one would fails its host.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from core import fields
from core.hardware import Firmware
from core.mac import normalize_mac
from sync.discovery.hardware import Read, read_firmware, read_system
from sync.redfish import RedfishClient, RedfishError

MAX_SYSTEMS = 4096    # per BMC; a chassis manager of a big enclosure has a few hundred
MAX_NICS = 64         # per system
MAX_ADDRESSES = 16    # IPv4 addresses per interface


@dataclasses.dataclass(slots=True)
class FoundSystem:
    path: str
    name: str
    uuid: str | None
    serial: str | None
    manufacturer: str | None
    model: str | None
    power_state: str | None              # "On", "Off", or None when the BMC does not say
    nics: list[tuple[str, list[str]]]    # (normalised MAC, IP addresses)
    rack: str | None = None
    unit: int | None = None
    hardware: Read | None = None  # processors, memory, drives, NICs, firmware


@dataclasses.dataclass(slots=True)
class FoundBmc:
    address: str
    uuid: str | None
    macs: list[str]
    systems: list[FoundSystem]
    dropped: list[str] = dataclasses.field(default_factory=list)  # what the BMC said that was not taken, and why
    ips: list[str] = dataclasses.field(default_factory=list)  # the BMC's own addresses, where it tells (IPMI)


def _link(resource: dict, name: str, notes: list[str], where: str) -> str | None:
    link = resource.get(name)
    return fields.kept(fields.redfish_path, link.get("@odata.id") if isinstance(link, dict) else None, notes,
                    f"{where} {name}")


async def _members(client: RedfishClient, path: str, notes: list[str], limit: int) -> list[str]:
    members = await client.members(path)
    if len(members) > limit:
        raise RedfishError(f"{client.base}{path} lists {len(members)} members; at most {limit} are taken from one BMC")
    checked = (fields.kept(fields.redfish_path, m, notes, f"{path} member") for m in members)
    return [m for m in checked if m]


def _label(what: str) -> Callable[[object], str]:
    return lambda value: fields.plain_text(value, fields.LABEL_MAX, what)


async def _nics(client: RedfishClient, system: dict, where: str, notes: list[str],
                read: list[tuple[str, dict]]) -> list[tuple[str, list[str]]]:
    """The system's MACs and addresses; each interface's document goes to `read` too (the inventory's NICs)."""
    link = _link(system, "EthernetInterfaces", notes, where)
    if not link:
        return []
    found = []
    for path in await _members(client, link, notes, MAX_NICS):
        nic = await client.get(path)
        read.append((path, nic))
        mac = (fields.kept(normalize_mac, nic.get("MACAddress"), notes, f"{path} MACAddress")
               or fields.kept(normalize_mac, nic.get("PermanentMACAddress"), notes, f"{path} PermanentMACAddress"))
        if mac and mac != "00:00:00:00:00:00":
            listed = nic.get("IPv4Addresses")
            addresses = [a.get("Address") for a in listed if isinstance(a, dict)] if isinstance(listed, list) else []
            if len(addresses) > MAX_ADDRESSES:
                notes.append(f"dropped {path} addresses after the first {MAX_ADDRESSES} of {len(addresses)}")
            ips = [fields.kept(fields.ip_address, a, notes, f"{path} address") for a in addresses[:MAX_ADDRESSES]]
            found.append((mac, list(dict.fromkeys(ip for ip in ips if ip))))
    return found


async def _location(client: RedfishClient, system: dict, where: str, chassis_cache: dict[str, dict],
                    notes: list[str]) -> tuple[str | None, int | None]:
    """Rack and unit from the system's chassis (Location.Placement), when it tells."""
    links = (system.get("Links") or {}).get("Chassis") if isinstance(system.get("Links"), dict) else None
    for link in links if isinstance(links, list) else []:
        path = fields.kept(fields.redfish_path, link.get("@odata.id") if isinstance(link, dict) else None, notes,
                        f"{where} chassis link")
        if not path:
            continue
        if path not in chassis_cache:
            try:
                chassis_cache[path] = await client.get(path)
            except RedfishError:
                chassis_cache[path] = {}
        location = chassis_cache[path].get("Location")
        placement = location.get("Placement") if isinstance(location, dict) else None
        if not isinstance(placement, dict):
            continue
        rack = fields.kept(fields.rack, placement.get("Rack"), notes, f"{path} Location.Placement.Rack")
        unit = fields.kept(lambda v: fields.count(v, "RackOffset"), placement.get("RackOffset"), notes,
                        f"{path} Location.Placement")
        if rack or unit is not None:
            return rack, unit
    return None, None


async def _system(client: RedfishClient, path: str, chassis_cache: dict[str, dict],
                  firmware: list[Firmware] | None, notes: list[str]) -> FoundSystem | None:
    system = await client.get(path)
    reported = system.get("@odata.id", path)
    where = fields.kept(fields.redfish_path, reported.rstrip("/") if isinstance(reported, str) else reported, notes,
                     f"system {path} @odata.id")
    if where is None:
        notes.append(f"skipped system {path}: no usable path to address it by")
        return None
    rack, unit = await _location(client, system, where, chassis_cache, notes)
    power = system.get("PowerState")
    nic_documents: list[tuple[str, dict]] = []
    nics = await _nics(client, system, where, notes, nic_documents)
    return FoundSystem(
        path=where, name=fields.kept(_label("Name"), system.get("Name"), notes, where) or "",
        uuid=fields.kept(fields.system_uuid, system.get("UUID"), notes, f"{where} UUID"),
        serial=fields.kept(_label("serial number"), system.get("SerialNumber"), notes, f"{where} SerialNumber"),
        manufacturer=fields.kept(_label("manufacturer"), system.get("Manufacturer"), notes, f"{where} Manufacturer"),
        model=fields.kept(_label("model"), system.get("Model"), notes, f"{where} Model"),
        power_state=power if power in ("On", "Off") else None,
        nics=nics, rack=rack, unit=unit,
        hardware=await read_system(client, system, where, nic_documents, firmware, notes))


async def walk(client: RedfishClient) -> FoundBmc:
    root = await client.get("/redfish/v1/")
    notes: list[str] = []
    chassis_cache: dict[str, dict] = {}
    systems_link = _link(root, "Systems", notes, "service root")
    paths = await _members(client, systems_link, notes, MAX_SYSTEMS) if systems_link else []
    firmware = await read_firmware(client, root, notes)  # the BMC's, shared by its systems
    # A few systems at a time: a BMC is a small computer.
    limit = asyncio.Semaphore(4)

    async def one(path: str) -> FoundSystem | None:
        async with limit:
            return await _system(client, path, chassis_cache, firmware, notes)

    systems = [s for s in await asyncio.gather(*(one(p) for p in paths)) if s is not None]
    macs: list[str] = []
    managers_link = _link(root, "Managers", notes, "service root")
    for path in await _members(client, managers_link, notes, MAX_SYSTEMS) if managers_link else []:
        manager = await client.get(path)
        if manager.get("ManagerType") not in (None, "BMC"):
            continue
        link = _link(manager, "EthernetInterfaces", notes, path)
        if link:
            for nic_path in await _members(client, link, notes, MAX_NICS):
                mac = fields.kept(normalize_mac, (await client.get(nic_path)).get("MACAddress"), notes,
                               f"{nic_path} MACAddress")
                if mac and mac not in macs:
                    macs.append(mac)
    return FoundBmc(address=client.base, uuid=fields.kept(fields.system_uuid, root.get("UUID"), notes, "service root UUID"),
                    macs=macs, systems=systems, dropped=list(dict.fromkeys(notes)))
