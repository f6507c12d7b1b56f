"""xnames: OpenCHAMI's location-coded component names, as Chamicore accepts them (ADR-010).

Chamicore ids are flat; an xname is one valid spelling of an id, and what
it encodes is also recorded as the component's location.  This module is
the one place that reads xname structure: normalising (`X1000C01S7B0N0` ->
`x1000c1s7b0n0`), telling an OpenCHAMI type from the pattern, mapping it onto
Chamicore's reduced type set, and deriving the location.

    >>> parse("x1000c1s7b0n0")
    XName(id='x1000c1s7b0n0', kind='Node', rack='x1000', unit=1, slot=7, sub_slot=0)
"""

from __future__ import annotations

import dataclasses
import re

# (OpenCHAMI type, pattern over a normalised xname).  Cabinets have 1 to 4 digits, chassis 0 to 7.
_X = r"x([0-9]{1,4})"
_C = r"c([0-7])"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((kind, re.compile(pattern + r"\Z")) for kind, pattern in (
    ("Node", _X + _C + r"s([0-9]+)b([0-9]+)n([0-9]+)"),
    ("NodeBMC", _X + _C + r"s([0-9]+)b([0-9]+)"),
    ("ComputeModule", _X + _C + r"s([0-9]+)"),
    ("RouterBMC", _X + _C + r"r([0-9]+)b([0-9]+)"),
    ("RouterModule", _X + _C + r"r([0-9]+)"),
    ("ChassisBMC", _X + _C + r"b([0-9]+)"),
    ("MgmtSwitch", _X + _C + r"w([0-9]+)"),
    ("MgmtHLSwitch", _X + _C + r"h([0-9]+)s([0-9]+)"),
    ("Chassis", _X + _C),
    ("CabinetPDUPowerConnector", _X + r"m([0-9]+)p([0-9]+)v([0-9]+)"),
    ("CabinetPDUController", _X + r"m([0-9]+)"),
    ("Cabinet", _X),
    ("CDU", r"d([0-9]+)"),
    ("System", r"s0"),
    ("Partition", r"p([0-9]+)(\.[0-9]+)?"),
))

# OpenCHAMI's many types onto Chamicore's ten; None: no Chamicore component stands for it.
CHAMICORE_TYPE: dict[str, str | None] = {
    "Node": "Node",
    "NodeBMC": "BMC", "RouterBMC": "BMC", "ChassisBMC": "BMC",
    "MgmtSwitch": "Switch", "MgmtHLSwitch": "Switch",
    "CabinetPDUController": "PDU", "CabinetPDUPowerConnector": "PDU",
    "Cabinet": "Cabinet",
    "ComputeModule": None, "RouterModule": None, "Chassis": None, "CDU": None, "System": None, "Partition": None,
}
# A Chamicore type seen by an OpenCHAMI client, when the id is not an xname that says more.
OPENCHAMI_TYPE: dict[str, str] = {
    "Node": "Node", "BMC": "NodeBMC", "Switch": "MgmtSwitch", "PDU": "CabinetPDUController", "Cabinet": "Cabinet",
    "Processor": "Processor", "Memory": "Memory", "Accelerator": "NodeAccel", "NIC": "NodeHsnNic", "Drive": "Drive",
}
BMC_KINDS = frozenset({"NodeBMC", "RouterBMC", "ChassisBMC"})
CONTROLLER_KINDS = BMC_KINDS | {"CabinetPDUController", "MgmtSwitch", "MgmtHLSwitch"}

_IN_CHASSIS = frozenset({"Node", "NodeBMC", "ComputeModule", "RouterBMC", "RouterModule", "ChassisBMC", "MgmtSwitch",
                         "MgmtHLSwitch", "Chassis"})
_LEADING_ZEROS = re.compile(r"(?<=[a-z])0+(?=[0-9])")


@dataclasses.dataclass(frozen=True, slots=True)
class XName:
    id: str  # normalised
    kind: str  # OpenCHAMI type
    rack: str | None
    unit: int | None  # the chassis
    slot: int | None  # the slot (blade) within it
    sub_slot: int | None  # the node on the blade

    @property
    def chamicore_type(self) -> str | None:
        return CHAMICORE_TYPE[self.kind]

    def location(self) -> dict[str, object]:
        """The location a component with this id records (ADR-010): cabinet as rack, chassis as unit,
        slot, and the node index as sub-slot."""
        return {"rack": self.rack, "unit": self.unit, "slot": self.slot or 0, "sub_slot": self.sub_slot or 0}


def normalize(text: str) -> str:
    """Trimmed, lower-case, without leading zeros in its numbers: how SMD stores an xname."""
    return _LEADING_ZEROS.sub("", text.strip().lower())


def parse(text: str) -> XName | None:
    """The xname `text` spells (normalised), or None when it is not one."""
    name = normalize(text)
    for kind, pattern in _PATTERNS:
        if match := pattern.match(name):
            numbers = [int(g.lstrip(".")) if g else None for g in match.groups()]
            rack = f"x{numbers[0]}" if name.startswith("x") else None
            unit = numbers[1] if kind in _IN_CHASSIS else None
            slot = sub_slot = None
            if kind in ("Node", "NodeBMC", "ComputeModule", "RouterBMC", "RouterModule", "MgmtHLSwitch"):
                slot = numbers[2] if kind != "MgmtHLSwitch" else numbers[3]
            if kind == "Node":
                sub_slot = numbers[4]
            return XName(name, kind, rack, unit, slot, sub_slot)
    return None


def openchami_type(component_id: str, chamicore_type: str) -> str:
    """The Type an OpenCHAMI client sees: the xname's own when the id is one that agrees with the stored type."""
    found = parse(component_id)
    if found is not None and found.chamicore_type == chamicore_type:
        return found.kind
    return OPENCHAMI_TYPE.get(chamicore_type, chamicore_type)
