"""Identity rules of ADR-010: opaque component IDs and the closed enums, and what may
go into a boot script (node variables, kernel, initrd and command line)."""

from __future__ import annotations

import enum
import re
import secrets
import string

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
    Unknown = "Unknown"
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


# -- what may go into a boot script -------------------------------------------
# Node variables ({{hostname}}, {{rack}}, {{subRole}} ...) are substituted into
# the iPXE `kernel` line of a node's script.  iPXE reads a script line by line,
# splits each line into words on whitespace, ends a command at a word `||`,
# `&&` or `;` (and ignores the rest from a word starting with `#`), and expands
# `${...}` settings; the kernel then splits its own command line on spaces
# (`init=/bin/sh` is an argument of its own).  So a value is one word of these
# characters: letters, digits and `. _ : / @ + = , % ~ -`.  The admin API
# refuses anything else (422) and the renderer refuses it again (hotpath/_render).
BOOT_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "._:/@+=,%~-")
# The same as a JSON-Schema / msgspec pattern; "(?![\s\S])", not "$", which would accept a final "\n".
BOOT_TOKEN_PATTERN = r"^[A-Za-z0-9._:/@+=,%~-]*(?![\s\S])"
BOOT_TOKEN_RULE = "letters, digits and . _ : / @ + = , % ~ - only (it goes into boot scripts)"
IPXE_COMMAND_ENDS = frozenset(("||", "&&", ";"))


def is_boot_token(value: object) -> bool:
    """True for text that can stand for a node variable in a boot script (see BOOT_TOKEN_CHARS)."""
    return isinstance(value, str) and BOOT_TOKEN_CHARS.issuperset(value)


def boot_text_problem(text: str, *, one_word: bool) -> str | None:
    """Why `text` cannot go into an iPXE command line as it stands, or None when it can.

    `one_word` for a kernel or initrd URI (no space at all); otherwise a command
    line, whose words must not end the iPXE command (`||`, `&&`, `;`, `#...`).
    Every character is printable: no line break, tab or other control character,
    no Unicode line separator or invisible format character.
    """
    if not text.isprintable():
        return "must not contain line breaks, tabs or other control characters"
    if one_word and " " in text:
        return "must not contain spaces"
    for word in text.split(" "):
        if word in IPXE_COMMAND_ENDS or word.startswith("#"):
            return f"must not contain the word {word[:8]!r}: iPXE would end the command there"
    return None
