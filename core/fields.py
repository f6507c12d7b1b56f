"""What an inventory field may hold, whoever writes it: the admin API's schemas, discovery, node lists.

A BMC's answer is input just like an admin's request body, so each rule is
written once, here (or in core/identity.py, for what a boot script names).
Text carries no line break or other control character, and a value a boot
script substitutes (a rack) is one boot token; addresses are parsed, not
pattern-matched; every length is bounded.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, TypeVar

from core.identity import BOOT_TOKEN_RULE, is_boot_token
from core.mac import InvalidMac

T = TypeVar("T")

# The end of the text, in Python's re and in the ECMA-262 regexes of JSON Schema alike; not "$", which
# accepts a final "\n" in Python.
_END = r"(?![\s\S])"
# No C0/C1 control characters and no Unicode line separators.
PLAIN_TEXT = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*" + _END
# A Redfish UUID (the schema's own pattern).
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" + _END
# A resource of a Redfish service (a ComputerSystem, a link a BMC gives): printable ASCII under the
# service root, no space.
REDFISH_PATH = r"^/redfish/v1/[\x21-\x7e]{1,500}" + _END

RACK_MAX = 64          # location.rack
LABEL_MAX = 256        # a system's serial number, manufacturer, model
COUNT_MAX = 2**31 - 1  # location.unit, slot, subSlot
IP_MAX = 64

_PLAIN_TEXT_RE = re.compile(PLAIN_TEXT)
_UUID_RE = re.compile(UUID_PATTERN)
_REDFISH_PATH_RE = re.compile(REDFISH_PATH)
_IP_CHARS_RE = re.compile(r"[0-9A-Za-z:.%_-]{1,64}")  # any spelling of an address, a scope id included


class InvalidField(ValueError):
    """A value no writer may store; the message says why, quoting at most a short prefix of it."""


def plain_text(value: object, max_length: int, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidField(f"{what} must be text, not {type(value).__name__}")
    if len(value) > max_length:
        raise InvalidField(f"{what} is longer than {max_length} characters")
    if not _PLAIN_TEXT_RE.match(value):
        raise InvalidField(f"{what} {value[:40]!r} contains a line break or another control character")
    return value


def rack(value: object) -> str:
    """A rack name, as the admin API's location.rack takes it: a boot script may name it ({{rack}})."""
    text = plain_text(value, RACK_MAX, "rack")
    if not is_boot_token(text):
        raise InvalidField(f"rack {text[:40]!r}: {BOOT_TOKEN_RULE}")
    return text


def count(value: object, what: str) -> int:
    """A whole number from 0 to COUNT_MAX (a unit, a slot); true and false are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= COUNT_MAX:
        raise InvalidField(f"{what} must be a whole number from 0 to {COUNT_MAX}, not {str(value)[:40]!r}")
    return value


def ip_address(value: object) -> str:
    """The canonical text of an IPv4 or IPv6 address."""
    if not isinstance(value, str) or not _IP_CHARS_RE.fullmatch(value):
        raise InvalidField(f"not an IP address: {str(value)[:64]!r}")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidField(f"not an IP address: {value[:64]!r}") from None


def system_uuid(value: object) -> str:
    if not isinstance(value, str) or not _UUID_RE.match(value):
        raise InvalidField(f"not a UUID: {str(value)[:64]!r}")
    return value


def redfish_path(value: object) -> str:
    if not isinstance(value, str) or not _REDFISH_PATH_RE.match(value):
        raise InvalidField(f"not a path under /redfish/v1/: {str(value)[:80]!r}")
    return value


def kept(check: Callable[[Any], T], value: Any, notes: list[str], where: str) -> T | None:
    """check(value), or None with a note when a device said what no admin could store (a bad value from a BMC
    drops that value, not the host's whole answer)."""
    if value is None or value == "":
        return None
    try:
        return check(value)
    except (InvalidField, InvalidMac) as exc:
        notes.append(f"dropped {where}: {exc}")
        return None
