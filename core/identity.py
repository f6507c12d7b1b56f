"""Identity rules of ADR-010: opaque component IDs and the closed enums."""

from __future__ import annotations

import enum
import re
import secrets

ID_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,253}[a-zA-Z0-9]$"
_ID_RE = re.compile(ID_PATTERN)


class ComponentType(enum.StrEnum):
    Cabinet = "Cabinet"
    BMC = "BMC"
    Node = "Node"
    Processor = "Processor"
    Memory = "Memory"
    Accelerator = "Accelerator"
    NIC = "NIC"
    Drive = "Drive"
    PDU = "PDU"
    Switch = "Switch"


class ComponentState(enum.StrEnum):
    Empty = "Empty"
    Populated = "Populated"
    Off = "Off"
    On = "On"
    Standby = "Standby"
    Halt = "Halt"
    Ready = "Ready"


class Role(enum.StrEnum):
    Compute = "Compute"
    Service = "Service"
    Management = "Management"
    Application = "Application"
    Storage = "Storage"
    System = "System"


def is_valid_id(value: object) -> bool:
    # fullmatch, not match: "$" would accept a trailing newline.
    return isinstance(value, str) and value.isascii() and _ID_RE.fullmatch(value) is not None


def generate_id(component_type: str) -> str:
    """A fresh `<type>-<8 hex>` ID, e.g. `node-1a2b3c4d`."""
    return f"{component_type.lower()}-{secrets.token_hex(4)}"
