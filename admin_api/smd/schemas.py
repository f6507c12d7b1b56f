"""msgspec types of the inventory: the request bodies and the specs of the answers."""

from __future__ import annotations

from typing import Annotated

import msgspec

from admin_api.http import field_problem
from core import fields
from core.identity import BOOT_TOKEN_PATTERN, ID_PATTERN, ComponentState, ComponentType, Role
from core.mac import InvalidMac, normalize_mac

Id = Annotated[str, msgspec.Meta(pattern=ID_PATTERN, max_length=255, description="ADR-010 identifier")]
Name = Annotated[str, msgspec.Meta(max_length=256)]
ShortText = Annotated[str, msgspec.Meta(max_length=64)]
Count = Annotated[int, msgspec.Meta(ge=0, le=fields.COUNT_MAX)]
Nid = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
Arch = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_]{1,32}(?![\s\S])")]
# A value a boot script may name as {{subRole}}, {{rack}} ...: one word, no control character (core.identity).
BOOT_TOKEN = msgspec.Meta(pattern=BOOT_TOKEN_PATTERN,
                          description="letters, digits and . _ : / @ + = , % ~ - (substituted into boot scripts)")


class Location(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    rack: Annotated[str, msgspec.Meta(max_length=fields.RACK_MAX), BOOT_TOKEN] | None = None
    unit: Count | None = None
    slot: Count = 0
    sub_slot: Count = 0


class IpAddr(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    ip_address: Annotated[str, msgspec.Meta(max_length=fields.IP_MAX)]
    network: ShortText = ""


class InterfaceFields(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """Spec of an Ethernet interface (`componentId` is implied when given inline)."""

    mac_addr: Annotated[str, msgspec.Meta(max_length=64)]
    ip_addrs: list[IpAddr] = msgspec.field(default_factory=list)
    description: Annotated[str, msgspec.Meta(max_length=1024)] = ""


class InlineInterface(InterfaceFields, kw_only=True):
    id: Id | None = None


class InterfaceSpec(InterfaceFields, kw_only=True):
    component_id: Id


class ComponentSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    type: ComponentType
    state: ComponentState = ComponentState.Empty
    role: Role | None = None
    sub_role: Annotated[str, msgspec.Meta(max_length=32), BOOT_TOKEN] = ""  # the column is varchar(32)
    nid: Nid | None = None
    arch: Arch = "x86_64"
    enabled: bool = True
    parent_id: Id | None = None
    location: Location = msgspec.field(default_factory=Location)
    # Free-form labels that profile selectors match (core/profiles.py checks them: at most 32, short, safe).
    labels: dict[Annotated[str, msgspec.Meta(max_length=63)], Annotated[str, msgspec.Meta(max_length=128)]] = \
        msgspec.field(default_factory=dict)


class ComponentCreateSpec(ComponentSpec, kw_only=True):
    """A create may bring the component's interfaces along (one transaction)."""

    network_interfaces: list[InlineInterface] = msgspec.field(default_factory=list)


def checked_interface(spec: InterfaceFields, path: str) -> tuple[str, list[dict]]:
    """(normalised MAC, IP list as stored) or a 422 naming the field."""
    try:
        mac = normalize_mac(spec.mac_addr)
    except InvalidMac as exc:
        raise field_problem(f"{path}.macAddr", str(exc)) from None
    addresses = []
    for i, addr in enumerate(spec.ip_addrs):
        try:
            ip = fields.ip_address(addr.ip_address)
        except fields.InvalidField as exc:
            raise field_problem(f"{path}.ipAddrs[{i}].ipAddress", str(exc)) from None
        addresses.append({"ipAddress": ip, "network": addr.network})
    return mac, addresses
