"""MAC address normalisation: every accepted spelling maps to `aa:bb:cc:dd:ee:ff`.

Accepted: colons or dashes between octets (`AA-BB-CC-DD-EE-FF`), Cisco dots
between 16-bit groups (`aabb.ccdd.eeff`), or 12 bare hex digits, in any case.
Mixed separators, missing digits and anything else are rejected.
"""

from __future__ import annotations

_HEX = frozenset("0123456789abcdef")


class InvalidMac(ValueError):
    pass


def normalize_mac(value: str) -> str:
    """Return the lowercase colon form of `value`, or raise InvalidMac."""
    if not isinstance(value, str):
        raise InvalidMac("a MAC address must be a string")
    digits = _hex_digits(value.strip().lower())
    if digits is None:
        raise InvalidMac(f"not a MAC address: {value[:64]!r}")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def try_normalize_mac(value: str) -> str | None:
    """normalize_mac for callers that treat garbage as "unknown", not as an error."""
    try:
        return normalize_mac(value)
    except InvalidMac:
        return None


def _hex_digits(text: str) -> str | None:
    length = len(text)
    if length == 12:
        digits = text
    elif length == 17 and (text[2] in ":-"):
        sep = text[2]
        if any(text[i] != sep for i in range(2, 17, 3)):
            return None
        digits = text.replace(sep, "")
    elif length == 14 and text[4] == "." and text[9] == ".":
        digits = text.replace(".", "")
    else:
        return None
    if len(digits) != 12 or not _HEX.issuperset(digits):
        return None
    return digits
