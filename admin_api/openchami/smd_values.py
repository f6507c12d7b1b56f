"""SMD's values as Chamicore reads and shows them: the enums, how OpenCHAMI's Arch and types map onto
Chamicore's, and reading what a client sends (matched in any case, as SMD normalises it; 400 otherwise)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from admin_api.http import problem
from admin_api.openchami.compat import key
from core import xname
from core.identity import ComponentState, ComponentType, Role, is_valid_id

STATES = tuple(state.value for state in ComponentState)
ROLES = tuple(role.value for role in Role)
FLAGS = ("OK", "Warning", "Alert", "Locked", "Unknown")
SUBROLES = ("Master", "Worker", "Storage")
CLASSES = ("River", "Mountain", "Hill")
NET_TYPES = ("Sling", "Infiniband", "Ethernet", "OEM", "None")
# OpenCHAMI's Arch and Chamicore's free-text arch (what boot scripts see as {{arch}}); any other arch reads
# back as Other.
ARCH_TO_CHAMICORE = {"X86": "x86_64", "ARM": "aarch64", "Other": "other", "UNKNOWN": "unknown"}
ARCH_FROM_CHAMICORE = {arch: name for name, arch in ARCH_TO_CHAMICORE.items()}
ARCHES = tuple(ARCH_TO_CHAMICORE)

# The OpenCHAMI types a component can be stored as, and the Chamicore type of each.
STORABLE_TYPES: dict[str, str] = {
    **{kind: chamicore for kind, chamicore in xname.CHAMICORE_TYPE.items() if chamicore},
    **{kind: chamicore for chamicore, kind in xname.OPENCHAMI_TYPE.items()},
}
KNOWN_TYPES = {kind.lower(): kind for kind in (*xname.CHAMICORE_TYPE, *STORABLE_TYPES)}


def openchami_arch(arch: str) -> str:
    return ARCH_FROM_CHAMICORE.get(arch, "Other")


def _id_free_type(chamicore: str) -> str | None:
    """The OpenCHAMI type of every component of this Chamicore type, when its id cannot tell more (a Node is
    a Node; a BMC may be a NodeBMC, a RouterBMC or a ChassisBMC)."""
    kinds = {kind for kind, of in xname.CHAMICORE_TYPE.items() if of == chamicore} | {xname.OPENCHAMI_TYPE[chamicore]}
    return kinds.pop() if len(kinds) == 1 else None


ID_BOUND_TYPES = [t.value for t in ComponentType if _id_free_type(t.value) is None]
openchami_type = functools.lru_cache(maxsize=1 << 18)(xname.openchami_type)


def choice(value: Any, choices: Iterable[str], what: str) -> str:
    """`value` as the enum spells it, matched in any case (as SMD normalises it); 400 otherwise."""
    if isinstance(value, str):
        for option in choices:
            if option.lower() == value.strip().lower():
                return option
    raise problem(400, f"{what} '{str(value)[:64]}' is invalid")


def type_name(value: str) -> str:
    kind = KNOWN_TYPES.get(value.strip().lower())
    if kind is None:
        raise problem(400, f"Invalid HMS type: {value[:64]!r}")
    return kind


def normal_id(value: Any, what: str = "xname ID") -> str:
    """An id as SMD stores it: an xname normalised (x1000C01s7 -> x1000c1s7), a Chamicore id as given."""
    if isinstance(value, str):
        found = xname.parse(value)
        if found is not None:
            return found.id
        if is_valid_id(value):
            return value
    raise problem(400, f"{what} '{str(value)[:64]}' is invalid")


def whole(value: Any, what: str) -> int:
    """A JSON number or a string of digits (Go's json.Number takes both)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value.strip()) < 17:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise problem(400, f"{what} '{str(value)[:64]}' is invalid")


def flag(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "t", "true", "0", "f", "false"):  # Go's ParseBool
        return value.lower() in ("1", "t", "true")
    raise problem(400, f"{what} '{str(value)[:64]}' is invalid")


def optional(obj: dict, name: str) -> Any:
    """A field, None when absent, null or empty (SMD reads those alike)."""
    value = key(obj, name)
    return None if value in (None, "") else value


# /service/values: what Chamicore can store of each.
VALUES: dict[str, tuple[str, ...]] = {
    "Arch": ARCHES, "Class": CLASSES, "Flag": FLAGS, "NetType": NET_TYPES, "Role": ROLES, "SubRole": SUBROLES,
    "State": STATES, "Type": tuple(STORABLE_TYPES),
}
