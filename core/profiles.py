"""Boot profiles and the selectors that match nodes to them.

A selector is a set of terms, each of which a node must satisfy:

    mac          the node has an interface with this MAC
    componentId  the node's id
    arch         the node's architecture (iPXE's names, core.arches; amd64 = x86_64 ...)
    type, role, subRole   the component's fields
    groups       the node is a member of every group named
    labels       the node carries every label given, with that value

Specificity (most specific wins): a `mac` or `componentId` term weighs 100, every
other term 1 (each group and each label is a term).  An empty selector (weight 0)
matches every node: a site-wide default profile.

Two profiles tie when they have the same weight and some node could satisfy both
(every term they share names the same value; groups never conflict, since a node
can be in any number).  A tie is refused when the second profile is written, for
any node that could ever exist, not only the nodes of today: an inventory edit
(a new label, a new group member) can then never make two profiles tie at boot.

The hot path (hotpath/answers.py) and the admin API's explanation both match with
`ProfileTable`, so what the API says is what the boot path serves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from core import arches
from core.identity import BOOT_TOKEN_CHARS, is_valid_id
from core.mac import InvalidMac, normalize_mac
from core.problems import FieldError, ProblemError

IDENTITY_WEIGHT = 100
SCALAR_TERMS = ("mac", "componentId", "arch", "type", "role", "subRole")
TERMS = (*SCALAR_TERMS, "groups", "labels")

# Labels on components: bounded, and safe to substitute into a boot script (values are boot tokens).
LABELS_MAX = 32
LABEL_KEY_MAX = 63
LABEL_VALUE_MAX = 128
LABEL_KEY = re.compile(r"[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?")
LABEL_KEY_RULE = "lower-case letters, digits and . _ / -, starting and ending with a letter or digit, 1-63 long"
GROUPS_MAX = 16
TERM_MAX = 255


class SelectorError(ProblemError):
    """A selector or label set refused (422), naming the field."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(422, f"{field}: {detail}", errors=[FieldError(field, detail)])


def check_labels(labels: object, where: str = "$.spec.labels") -> dict[str, str]:
    """Labels as stored: at most 32, keys of LABEL_KEY, values boot tokens of at most 128 characters."""
    if not isinstance(labels, Mapping):
        raise SelectorError(where, "expected an object of label: value")
    if len(labels) > LABELS_MAX:
        raise SelectorError(where, f"at most {LABELS_MAX} labels (got {len(labels)})")
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY.fullmatch(key):
            raise SelectorError(f"{where}.{str(key)[:70]}", f"a label key is {LABEL_KEY_RULE}")
        if not isinstance(value, str) or len(value) > LABEL_VALUE_MAX or not BOOT_TOKEN_CHARS.issuperset(value):
            raise SelectorError(f"{where}.{key}", f"a label value is a string of at most {LABEL_VALUE_MAX} letters, "
                                                  "digits and . _ : / @ + = , % ~ - (it may go into boot scripts)")
    return dict(labels)


def check_selector(selector: object, where: str = "$.spec.selector") -> dict[str, Any]:
    """The selector as stored (MAC normalised, arch as iPXE names it), or a SelectorError."""
    if not isinstance(selector, Mapping):
        raise SelectorError(where, "expected an object")
    out: dict[str, Any] = {}
    for name, value in selector.items():
        path = f"{where}.{name}"
        if name not in TERMS:
            raise SelectorError(path, f"unknown selector term; the terms are {', '.join(TERMS)}")
        if value is None:
            continue
        if name == "groups":
            if not isinstance(value, list) or len(value) > GROUPS_MAX or not all(is_valid_id(g) for g in value):
                raise SelectorError(path, f"a list of at most {GROUPS_MAX} group names")
            if value:
                out[name] = sorted(set(value))
        elif name == "labels":
            if value:
                out[name] = check_labels(value, path)
        elif not isinstance(value, str) or not value or len(value) > TERM_MAX:
            raise SelectorError(path, f"a non-empty string of at most {TERM_MAX} characters")
        elif name == "mac":
            try:
                out[name] = normalize_mac(value)
            except InvalidMac as exc:
                raise SelectorError(path, str(exc)) from None
        elif name == "arch":
            arch = arches.canonical(value)
            if arch is None:
                raise SelectorError(path, f"unknown architecture; one of {', '.join(arches.IPXE_ARCHES)} "
                                          "(or a usual alias: amd64, aarch64 ...)")
            out[name] = arch
        elif name == "componentId" and not is_valid_id(value):
            raise SelectorError(path, "not a valid component id")
        elif not BOOT_TOKEN_CHARS.issuperset(value):
            raise SelectorError(path, "letters, digits and . _ : / @ + = , % ~ - only")
        else:
            out[name] = value
    return out


def specificity(selector: Mapping[str, Any]) -> int:
    weight = 0
    for name, value in selector.items():
        if name in ("mac", "componentId"):
            weight += IDENTITY_WEIGHT
        elif name in ("groups", "labels"):
            weight += len(value)
        else:
            weight += 1
    return weight


def could_both_match(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when some node (now or later) could satisfy both selectors."""
    for name in SCALAR_TERMS:
        if name in a and name in b and a[name] != b[name]:
            return False
    la, lb = a.get("labels", {}), b.get("labels", {})
    return all(lb[key] == value for key, value in la.items() if key in lb)


def ties(selector: Mapping[str, Any], others: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """The ids of the other profiles (id, selector) this one would tie with."""
    weight = specificity(selector)
    return [other_id for other_id, other in others
            if specificity(other) == weight and could_both_match(selector, other)]


class NodeFacts:
    """What a selector looks at in one node."""

    __slots__ = ("id", "macs", "arch", "type", "role", "sub_role", "groups", "labels")

    def __init__(self, node_id: str, macs: Iterable[str], arch: str | None, type: str, role: str, sub_role: str,
                 groups: Iterable[str], labels: Mapping[str, str] | None) -> None:
        self.id = node_id
        self.macs = frozenset(macs)
        self.arch = arches.node_arch(arch)
        self.type = type
        self.role = role or ""
        self.sub_role = sub_role or ""
        self.groups = frozenset(groups)
        self.labels = labels or {}

    def broad_key(self) -> tuple:
        """Everything but the identity terms: nodes alike here match the same broad selectors."""
        return (self.arch, self.type, self.role, self.sub_role, self.groups, tuple(sorted(self.labels.items())))


def unmet(selector: Mapping[str, Any], node: NodeFacts) -> list[str]:
    """The terms of the selector this node does not satisfy (empty: it matches)."""
    missing: list[str] = []
    for name, value in selector.items():
        if name == "mac":
            ok = value in node.macs
        elif name == "componentId":
            ok = value == node.id
        elif name == "arch":
            ok = value == node.arch
        elif name == "type":
            ok = value == node.type
        elif name == "role":
            ok = value == node.role
        elif name == "subRole":
            ok = value == node.sub_role
        elif name == "groups":
            missing.extend(f"groups: not in {g!r}" for g in value if g not in node.groups)
            continue
        elif name == "labels":
            missing.extend(f"labels.{k}: not {v!r}" for k, v in value.items() if node.labels.get(k) != v)
            continue
        else:
            ok = False
        if not ok:
            missing.append(f"{name}: not {value!r}")
    return missing


class ProfileTable:
    """The profiles of one snapshot, matched against nodes (most specific first; ties cannot exist)."""

    def __init__(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.rows = sorted(rows, key=lambda row: (-specificity(row["selector"]), row["id"]))
        identity = [("mac" in row["selector"] or "componentId" in row["selector"]) for row in self.rows]
        self._identity = [row for row, named in zip(self.rows, identity, strict=True) if named]
        self._broad = [row for row, named in zip(self.rows, identity, strict=True) if not named]
        self._by_broad_key: dict[tuple, Mapping[str, Any] | None] = {}

    def __bool__(self) -> bool:
        return bool(self.rows)

    def match(self, node: NodeFacts) -> Mapping[str, Any] | None:
        """The profile row that wins for this node, or None."""
        for row in self._identity:
            if not unmet(row["selector"], node):
                return row
        key = node.broad_key()
        if key not in self._by_broad_key:
            self._by_broad_key[key] = next((row for row in self._broad if not unmet(row["selector"], node)), None)
        return self._by_broad_key[key]
