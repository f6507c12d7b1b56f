"""A node's hardware inventory, as discovery reads it from a BMC and the admin API serves it.

The document is written once here and used by both: the sync daemon encodes
it into smd.hardware, the admin API decodes it into its answers (so OpenAPI
describes what is stored).  Every item carries the Redfish path it was read
from as its `id`: a re-scan compares items by it, field by field.
"""

from __future__ import annotations

import re

import msgspec

Value = str | int | float | bool | None

# What a ProcessorType of this kind makes of a processor: an accelerator, listed and filtered as a GPU.
ACCELERATOR_TYPES = ("GPU", "Accelerator")
VERSION_MAX = 128
_DIGITS = re.compile(r"[0-9]{1,18}")  # a digit run that fits a bigint; longer ones split, never overflow


class Processor(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    id: str
    type: str | None = None  # ProcessorType: CPU, GPU, Accelerator, FPGA ...
    manufacturer: str | None = None
    model: str | None = None
    architecture: str | None = None  # ProcessorArchitecture: x86, ARM, Power ...
    instruction_set: str | None = None
    cores: int | None = None
    threads: int | None = None
    max_speed_mhz: int | None = None


class MemoryModule(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    id: str
    capacity_mib: int | None = None
    type: str | None = None  # MemoryDeviceType: DDR4, DDR5, HBM ...
    speed_mhz: int | None = None
    manufacturer: str | None = None
    part_number: str | None = None
    serial: str | None = None


class Drive(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    id: str
    model: str | None = None
    manufacturer: str | None = None
    capacity_bytes: int | None = None
    media_type: str | None = None  # HDD, SSD
    protocol: str | None = None
    serial: str | None = None


class Nic(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    id: str
    name: str | None = None
    mac: str | None = None
    speed_mbps: int | None = None
    link_status: str | None = None


class Firmware(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    id: str
    name: str | None = None
    version: str | None = None
    updateable: bool | None = None


class Hardware(msgspec.Struct, rename="camel", kw_only=True):
    processors: list[Processor] = msgspec.field(default_factory=list)  # GPUs and accelerators too, by `type`
    memory: list[MemoryModule] = msgspec.field(default_factory=list)
    drives: list[Drive] = msgspec.field(default_factory=list)
    nics: list[Nic] = msgspec.field(default_factory=list)
    firmware: list[Firmware] = msgspec.field(default_factory=list)


CATEGORIES = ("processors", "memory", "drives", "nics", "firmware")


class Summary(msgspec.Struct, rename="camel", kw_only=True):
    """What the inventory filters on, kept in columns beside the document."""

    processor_models: list[str]  # CPUs (anything not an accelerator)
    gpu_models: list[str]
    cores: int
    memory_gib: float
    drive_bytes: int


class Change(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """One item added, removed or changed between two scans; `before`/`after` hold what differs."""

    category: str  # processors, memory, drives, nics, firmware
    id: str
    action: str  # added, removed, changed
    before: dict[str, Value] | None = None
    after: dict[str, Value] | None = None


def is_accelerator(processor: Processor) -> bool:
    return processor.type in ACCELERATOR_TYPES


def summarize(hardware: Hardware) -> Summary:
    cpus = [p for p in hardware.processors if not is_accelerator(p)]
    return Summary(
        processor_models=sorted({p.model for p in cpus if p.model}),
        gpu_models=sorted({p.model for p in hardware.processors if is_accelerator(p) and p.model}),
        cores=sum(p.cores or 0 for p in cpus),
        memory_gib=round(sum(m.capacity_mib or 0 for m in hardware.memory) / 1024, 3),
        drive_bytes=sum(d.capacity_bytes or 0 for d in hardware.drives))


def version_key(version: str) -> list[int]:
    """The numbers of a version in order ("BMC 1.10.2" -> [1, 10, 2]): 1.10 is above 1.9.

    The database computes the same key (smd.version_key, migration 0023) to filter by it.
    """
    return [int(run) for run in _DIGITS.findall(version)]


def diff(before: Hardware, after: Hardware) -> list[Change]:
    """What differs between two scans of one node, item by item (matched by id), in category order."""
    changes: list[Change] = []
    for category in CATEGORIES:
        old = {item.id: msgspec.to_builtins(item) for item in getattr(before, category)}
        new = {item.id: msgspec.to_builtins(item) for item in getattr(after, category)}
        for item_id, fields in new.items():
            if item_id not in old:
                changes.append(Change(category=category, id=item_id, action="added", after=fields))
            elif fields != old[item_id]:
                names = sorted(name for name in fields.keys() | old[item_id].keys()
                               if fields.get(name) != old[item_id].get(name))
                changes.append(Change(category=category, id=item_id, action="changed",
                                      before={n: old[item_id].get(n) for n in names},
                                      after={n: fields.get(n) for n in names}))
        changes += [Change(category=category, id=item_id, action="removed", before=fields)
                    for item_id, fields in old.items() if item_id not in new]
    return changes
