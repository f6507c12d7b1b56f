"""CPU architectures as iPXE names them (`${buildarch}`), and the other spellings mapped onto them.

iPXE's first stage sends `arch=${buildarch}` (hotpath/_render.pyx boot.ipxe): i386, x86_64, arm32,
arm64, riscv32, riscv64, loong64.  Inventories, distributions and kernels say amd64, aarch64, armhf ...:
every spelling below means the iPXE name it maps to, so a profile's per-architecture answers, a
selector's `arch` term and a component's `arch` field compare as one.
"""

from __future__ import annotations

import re

IPXE_ARCHES = ("i386", "x86_64", "arm32", "arm64", "riscv32", "riscv64", "loong64")

ALIASES: dict[str, str] = {
    **{name: name for name in IPXE_ARCHES},
    "i486": "i386", "i586": "i386", "i686": "i386", "x86": "i386", "ia32": "i386",
    "amd64": "x86_64", "x64": "x86_64", "x86-64": "x86_64",
    "arm": "arm32", "armhf": "arm32", "armel": "arm32", "armv7": "arm32", "armv7l": "arm32", "aarch32": "arm32",
    "aarch64": "arm64", "armv8": "arm64",
    "riscv": "riscv64", "rv64": "riscv64", "rv32": "riscv32",
    "loongarch64": "loong64",
}

# What an unknown architecture may look like to be named back (in a wait script, say).
_SHAPE = re.compile(r"[a-z0-9_-]{1,16}")


def canonical(name: str) -> str | None:
    """The iPXE name of an architecture, or None for one that is not known."""
    return ALIASES.get(name.strip().lower())


def spellings(arch: str) -> list[str]:
    """Every spelling (lower case) that means this iPXE architecture."""
    return sorted(alias for alias, target in ALIASES.items() if target == arch)


def node_arch(value: str | None) -> str:
    """A component's `arch` as the iPXE name when it has one, else lowered as it is (still comparable)."""
    text = (value or "").strip().lower()
    return ALIASES.get(text, text)


def printable(name: str) -> str | None:
    """`name` lowered when it is short and plain enough to repeat in a message, else None."""
    text = name.strip().lower()
    return text if _SHAPE.fullmatch(text) else None
