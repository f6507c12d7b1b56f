"""A node's hardware inventory from its BMC's Redfish service, and the record of what each re-scan changed.

Read during a redfish scan, per system: Processors (GPUs and accelerators by
their ProcessorType), Memory, Storage -> Drives, the EthernetInterfaces the
walk reads anyway, the system's BiosVersion, and the BMC's
UpdateService/FirmwareInventory (read once per BMC, shared by its systems).

A collection the BMC does not have (no link, or 404) is simply empty.  A
member that cannot be read, or a value no admin could store (core/fields.py
rules: plain text, capped length, whole numbers in range), is a note on the
scanned host, never a failed scan.  A category whose collection could not
be read at all keeps what the last scan stored, so a BMC that stumbled once
does not look like a node that lost its memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec

from core import events, fields
from core.hardware import (
    CATEGORIES,
    VERSION_MAX,
    Drive,
    Firmware,
    Hardware,
    MemoryModule,
    Nic,
    Processor,
    diff,
    summarize,
)
from core.mac import InvalidMac, normalize_mac
from sync.redfish import RedfishClient, RedfishError

MAX_MEMBERS = 256       # per collection: processors, DIMMs, storage controllers, drives, firmware entries
NAME_MAX = 64           # a type, architecture or protocol name
BYTES_MAX = 2**62       # a drive's capacity
SPEED_MAX = 10_000_000  # MHz, Mbps
READS_AT_ONCE = 4       # members of one collection read together: a BMC is a small computer


@dataclasses.dataclass(slots=True)
class Read:
    """What one scan read of a system: the document, and the categories it could not read (kept from before)."""

    hardware: Hardware
    unread: set[str] = dataclasses.field(default_factory=set)


class _Values:
    """Checks a BMC's values as an admin's would be checked; what fails is noted and left out."""

    def __init__(self, notes: list[str], where: str) -> None:
        self.notes, self.where = notes, where

    def _take(self, check: Callable[[Any], Any], value: object, name: str):
        if value is None or value == "":
            return None
        try:
            return check(value)
        except (fields.InvalidField, InvalidMac) as exc:
            self.notes.append(f"dropped {self.where} {name}: {exc}")
            return None

    def text(self, document: dict, name: str, limit: int = fields.LABEL_MAX) -> str | None:
        return self._take(lambda v: fields.plain_text(v, limit, name), document.get(name), name)

    def number(self, document: dict, name: str, maximum: int) -> int | None:
        def check(value: object) -> int:
            # Some BMCs (sushy-tools among them) send counts as text: "8".
            if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
                raise fields.InvalidField(f"{name} must be a whole number from 0 to {maximum}, not "
                                          f"{str(value)[:40]!r}")
            return value
        return self._take(check, document.get(name), name)

    def flag(self, document: dict, name: str) -> bool | None:
        value = document.get(name)
        if value is None or isinstance(value, bool):
            return value
        self.notes.append(f"dropped {self.where} {name}: not true or false")
        return None

    def mac(self, document: dict, name: str) -> str | None:
        return self._take(normalize_mac, document.get(name), name)


def _path(link: object, notes: list[str], where: str) -> str | None:
    """The path a link (`{"@odata.id": ...}`) names, if it is one under /redfish/v1/."""
    target = link.get("@odata.id") if isinstance(link, dict) else None
    if target is None:
        return None
    try:
        return fields.redfish_path(target)
    except fields.InvalidField as exc:
        notes.append(f"dropped {where}: {exc}")
        return None


def _link(document: dict, name: str, notes: list[str], where: str) -> str | None:
    return _path(document.get(name), notes, f"{where} {name}")


def _absent(document: dict) -> bool:
    status = document.get("Status")
    return isinstance(status, dict) and status.get("State") == "Absent"


async def _documents(client: RedfishClient, paths: list[str], notes: list[str]) -> list[tuple[str, dict]]:
    """Each member that could be read, with its path; the others are noted."""
    limit = asyncio.Semaphore(READS_AT_ONCE)

    async def one(path: str) -> tuple[str, dict] | None:
        async with limit:
            try:
                document = await client.get(path)
            except RedfishError as exc:
                notes.append(f"could not read {path}: {str(exc)[:200]}")
                return None
        if not isinstance(document, dict):
            notes.append(f"could not read {path}: the answer is not a JSON object")
            return None
        return path, document

    return [d for d in await asyncio.gather(*(one(p) for p in paths)) if d is not None]


async def _collection(client: RedfishClient, path: str | None, notes: list[str]) -> list[tuple[str, dict]] | None:
    """The members of a collection; [] when the BMC has none (no link, 404), None when it could not be read."""
    if path is None:
        return []
    try:
        listed = await client.get(path)
    except RedfishError as exc:
        if exc.status == 404:
            return []
        notes.append(f"could not read {path}: {str(exc)[:200]}")
        return None
    members = listed.get("Members") if isinstance(listed, dict) else None
    if not isinstance(members, list):
        notes.append(f"could not read {path}: no Members list")
        return None
    if len(members) > MAX_MEMBERS:
        notes.append(f"{path} lists {len(members)} members; took the first {MAX_MEMBERS}")
    paths = []
    for member in members[:MAX_MEMBERS]:
        if link := _path(member, notes, f"{path} member"):
            paths.append(link)
    return await _documents(client, list(dict.fromkeys(paths)), notes)


def _processor(path: str, document: dict, notes: list[str]) -> Processor:
    value = _Values(notes, path)
    return Processor(
        id=path, type=value.text(document, "ProcessorType", NAME_MAX), manufacturer=value.text(document, "Manufacturer"),
        model=value.text(document, "Model"), architecture=value.text(document, "ProcessorArchitecture", NAME_MAX),
        instruction_set=value.text(document, "InstructionSet", NAME_MAX),
        cores=value.number(document, "TotalCores", 1_000_000), threads=value.number(document, "TotalThreads", 1_000_000),
        max_speed_mhz=value.number(document, "MaxSpeedMHz", SPEED_MAX))


def _memory(path: str, document: dict, notes: list[str]) -> MemoryModule:
    value = _Values(notes, path)
    return MemoryModule(
        id=path, capacity_mib=value.number(document, "CapacityMiB", 2**40),
        type=value.text(document, "MemoryDeviceType", NAME_MAX),
        speed_mhz=value.number(document, "OperatingSpeedMhz", SPEED_MAX),
        manufacturer=value.text(document, "Manufacturer"), part_number=value.text(document, "PartNumber"),
        serial=value.text(document, "SerialNumber"))


def _drive(path: str, document: dict, notes: list[str]) -> Drive:
    value = _Values(notes, path)
    return Drive(
        id=path, model=value.text(document, "Model"), manufacturer=value.text(document, "Manufacturer"),
        capacity_bytes=value.number(document, "CapacityBytes", BYTES_MAX),
        media_type=value.text(document, "MediaType", NAME_MAX), protocol=value.text(document, "Protocol", NAME_MAX),
        serial=value.text(document, "SerialNumber"))


def _nic(path: str, document: dict, notes: list[str]) -> Nic:
    value = _Values(notes, path)
    return Nic(id=path, name=value.text(document, "Name"),
               mac=value.mac(document, "MACAddress") or value.mac(document, "PermanentMACAddress"),
               speed_mbps=value.number(document, "SpeedMbps", SPEED_MAX),
               link_status=value.text(document, "LinkStatus", NAME_MAX))


def _firmware(path: str, document: dict, notes: list[str]) -> Firmware:
    value = _Values(notes, path)
    return Firmware(id=path, name=value.text(document, "Name"), version=value.text(document, "Version", VERSION_MAX),
                    updateable=value.flag(document, "Updateable"))


async def _drives(client: RedfishClient, system: dict, where: str, notes: list[str]) -> list[Drive] | None:
    storages = await _collection(client, _link(system, "Storage", notes, where), notes)
    if storages is None:
        return None
    paths: list[str] = []
    for storage_path, storage in storages:
        listed = storage.get("Drives")
        for member in listed[:MAX_MEMBERS] if isinstance(listed, list) else []:
            if link := _path(member, notes, f"{storage_path} drive"):
                paths.append(link)
    if len(paths) > MAX_MEMBERS:
        notes.append(f"{where} has {len(paths)} drives; took the first {MAX_MEMBERS}")
    documents = await _documents(client, list(dict.fromkeys(paths))[:MAX_MEMBERS], notes)
    return [_drive(path, d, notes) for path, d in documents if not _absent(d)]


async def read_firmware(client: RedfishClient, root: dict, notes: list[str]) -> list[Firmware] | None:
    """The BMC's firmware inventory (UpdateService/FirmwareInventory); None when it could not be read."""
    service_path = _link(root, "UpdateService", notes, "service root")
    if service_path is None:
        return []
    try:
        service = await client.get(service_path)
    except RedfishError as exc:
        if exc.status == 404:
            return []
        notes.append(f"could not read {service_path}: {str(exc)[:200]}")
        return None
    inventory = await _collection(client, _link(service, "FirmwareInventory", notes, service_path), notes)
    return None if inventory is None else [_firmware(path, d, notes) for path, d in inventory]


async def read_system(client: RedfishClient, system: dict, where: str, nics: list[tuple[str, dict]],
                      firmware: list[Firmware] | None, notes: list[str]) -> Read:
    """One system's inventory; `nics` are the EthernetInterfaces the walk read, `firmware` the BMC's."""
    read = Read(Hardware())
    processors = await _collection(client, _link(system, "Processors", notes, where), notes)
    memory = await _collection(client, _link(system, "Memory", notes, where), notes)
    drives = await _drives(client, system, where, notes)
    if processors is None:
        read.unread.add("processors")
    else:
        read.hardware.processors = [_processor(p, d, notes) for p, d in processors if not _absent(d)]
    if memory is None:
        read.unread.add("memory")
    else:
        read.hardware.memory = [_memory(p, d, notes) for p, d in memory if not _absent(d)]
    if drives is None:
        read.unread.add("drives")
    else:
        read.hardware.drives = drives
    read.hardware.nics = [_nic(path, d, notes) for path, d in nics if isinstance(d, dict)]
    if firmware is None:
        read.unread.add("firmware")
    else:
        bios = _Values(notes, where).text(system, "BiosVersion", VERSION_MAX)
        own = [Firmware(id=f"{where}#BiosVersion", name="BIOS", version=bios)] if bios else []
        read.hardware.firmware = own + firmware
    return read


async def store(conn: asyncpg.Connection, node_id: str, read: Read, scan_id: str) -> int:
    """Keep what was read as the node's inventory; a re-scan that changed something records the changes and
    emits `chamicore.smd.hardware.changed`.  Returns how many items changed."""
    row = await conn.fetchrow("SELECT document FROM smd.hardware WHERE component_id = $1 FOR UPDATE", node_id)
    hardware = read.hardware
    if row is not None:
        try:
            before = msgspec.convert(row["document"], Hardware)
        except msgspec.ValidationError:  # edited by hand into another shape: this scan's reading replaces it whole
            before = Hardware()
        hardware = msgspec.structs.replace(hardware, **{c: getattr(before, c) for c in CATEGORIES if c in read.unread})
    summary = summarize(hardware)
    columns = (msgspec.to_builtins(hardware), summary.processor_models, summary.gpu_models, summary.cores,
               summary.memory_gib, summary.drive_bytes, scan_id)
    if row is None:
        await conn.execute(
            "INSERT INTO smd.hardware (component_id, document, processor_models, gpu_models, cores, memory_gib, "
            "drive_bytes, scan_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", node_id, *columns)
        await events.emit(conn, "smd", "hardware", "created", node_id, {"scan": scan_id})
        return 0
    changes = diff(before, hardware)
    if not changes:
        await conn.execute("UPDATE smd.hardware SET scan_id = $2, scanned_at = now() WHERE component_id = $1",
                           node_id, scan_id)
        return 0
    await conn.execute(
        "UPDATE smd.hardware SET document = $2, processor_models = $3, gpu_models = $4, cores = $5, memory_gib = $6, "
        "drive_bytes = $7, scan_id = $8, scanned_at = now(), changed_at = now() WHERE component_id = $1",
        node_id, *columns)
    await conn.execute("INSERT INTO smd.hardware_changes (component_id, scan_id, changes) VALUES ($1, $2, $3)",
                       node_id, scan_id, msgspec.to_builtins(changes))
    counts = {action: sum(c.action == action for c in changes) for action in ("added", "removed", "changed")}
    await events.emit(conn, "smd", "hardware", "changed", node_id, {"scan": scan_id, **counts})
    return len(changes)
