"""An snmp discovery target's settings: how to reach the switch, and which node each of its ports names.

The admin API checks them when a target is written (`check`, a bad regex or
template names its field); the scanner reads them back from the target row
(`decode`) and asks `PortRule.node_for` about every port name the switch reports.

A port names a node in one of two ways, through the named groups of
`portPattern` (matched against the whole ifName, ifDescr when a port has no
ifName):

- `nodeId`: a template of the node's id, e.g. `node-{port}`;
- `rack` + `unit` (+ `slot`): templates of the node's location; the node is
  the one component of type Node at that place.

The pattern runs with a time limit (MATCH_TIMEOUT_S per port name, the
`regex` module: Python's `re` cannot be stopped): names come from switches,
and a pattern that backtracks without end on one (`(a|aa)+$`) would hold the
sync daemon.  A pattern that runs out of time stops its switch's attach, said
in the scan's problems, instead.

Templates take `{group}` and `{group:spec}` (fill, alignment and a width under 100, e.g.
`{port:0>3}`), nothing else: no attribute or index access, no conversion.
"""

from __future__ import annotations

import dataclasses
import re
import string
from typing import Annotated, Literal

import msgspec
import regex

from core import fields
from core.identity import is_valid_id

Template = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
PORT_NAME_MAX = 255  # ifName and ifDescr are DisplayString (SIZE (0..255))
MATCH_TIMEOUT_S = 0.05  # per port name: a sane pattern takes microseconds
# A str format spec: [[fill]align][width], the width bounded (`{port:>999999999}` would fill memory).
_SPEC_RE = re.compile(r"(?:[^{}]?[<>^])?[1-9][0-9]?")  # not "03": a str pads that on the right


class PortRule(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    port_pattern: Annotated[str, msgspec.Meta(min_length=1, max_length=300, description=(
        "a Python regex over the whole port name (ifName); its named groups feed the templates"))]
    node_id: Template | None = None
    rack: Template | None = None
    unit: Template | None = None
    slot: Template | None = None
    # A port that learned more MACs than this serves more than one node: an uplink, skipped.
    max_macs_per_port: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 4


class SnmpSettings(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """How to read the switch (the community or v3 keys are in the target's credential) and how ports name nodes."""

    mapping: PortRule
    version: Literal["2c", "3"] = "2c"
    auth_protocol: Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"] = "SHA"  # v3
    priv_protocol: Literal["none", "DES", "3DES", "AES128", "AES192", "AES256"] = "AES128"  # v3
    context_name: Annotated[str, msgspec.Meta(max_length=32, pattern=fields.PLAIN_TEXT)] = ""  # v3


class SlowPattern(ValueError):
    """portPattern ran out of time on a port name (catastrophic backtracking): no port of the switch is trusted to
    it any more."""


class BadRule(ValueError):
    """A rule no scan could apply; `field` is its place under the target's `snmp` settings."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field


@dataclasses.dataclass(frozen=True, slots=True)
class NodeRef:
    """Where a port points: a node id, or a location (rack, unit, slot) to look the node up by."""

    node_id: str | None = None
    rack: str | None = None
    unit: int | None = None
    slot: int | None = None

    def __str__(self) -> str:
        if self.node_id:
            return repr(self.node_id)
        return f"rack {self.rack} unit {self.unit}" + (f" slot {self.slot}" if self.slot is not None else "")


class CompiledRule:
    """A checked PortRule, its regex compiled once per scan."""

    def __init__(self, rule: PortRule) -> None:
        try:
            self.pattern = regex.compile(rule.port_pattern)
        except regex.error as exc:
            raise BadRule("mapping.portPattern", f"not a regular expression: {exc}") from None
        self.rule = rule
        if rule.node_id is not None:
            if rule.rack or rule.unit or rule.slot:
                raise BadRule("mapping.nodeId", "name the node by nodeId or by rack and unit, not both")
        elif not (rule.rack and rule.unit):
            raise BadRule("mapping", "a rule names the node by nodeId, or by rack and unit (and slot)")
        for name in ("node_id", "rack", "unit", "slot"):
            template = getattr(rule, name)
            if template is not None:
                self._check_template(name, template)

    def _check_template(self, name: str, template: str) -> None:
        field = "mapping." + _camel(name)
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise BadRule(field, f"not a template: {exc}") from None
        for _, group, spec, conversion in parsed:
            if group is None:
                continue
            if group not in self.pattern.groupindex:
                raise BadRule(field, f"{{{group}}} is not a named group of portPattern "
                                     f"(it has {sorted(self.pattern.groupindex) or 'none'})")
            if conversion or (spec and not _SPEC_RE.fullmatch(spec)):
                raise BadRule(field, f"{{{group}}}: only {{group}} or {{group:format}} is allowed, the format a "
                                     "fill, an alignment and a width below 100 (e.g. {port:0>3})")
        try:
            template.format(**{group: "1" for group in self.pattern.groupindex})
        except (ValueError, KeyError, IndexError) as exc:
            raise BadRule(field, f"cannot be filled in: {exc}") from None

    def node_for(self, port_name: str) -> NodeRef | None:
        """The node this port names; None when the port name does not match; ValueError when it names nonsense,
        SlowPattern when the pattern ran out of time on it."""
        try:
            found = self.pattern.fullmatch(port_name, timeout=MATCH_TIMEOUT_S)
        except TimeoutError:
            raise SlowPattern(f"portPattern took over {MATCH_TIMEOUT_S * 1000:.0f} ms on the port name {port_name[:60]!r} "
                              "(it backtracks without end): simplify it") from None
        if found is None:
            return None
        groups = {name: value or "" for name, value in found.groupdict().items()}
        rule = self.rule
        if rule.node_id is not None:
            node_id = rule.node_id.format(**groups)
            if not is_valid_id(node_id):
                raise ValueError(f"names {node_id[:60]!r}, not a valid component id")
            return NodeRef(node_id=node_id)
        assert rule.rack and rule.unit  # checked in __init__
        return NodeRef(rack=fields.rack(rule.rack.format(**groups)), unit=_number(rule.unit.format(**groups), "unit"),
                       slot=_number(rule.slot.format(**groups), "slot") if rule.slot else None)


def _number(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise fields.InvalidField(f"{what} {text[:20]!r} is not a whole number")
    return fields.count(int(text), what)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def check(settings: SnmpSettings) -> CompiledRule:
    """The settings' rule compiled; BadRule naming the field when no scan could apply it."""
    return CompiledRule(settings.mapping)


def decode(stored: object) -> SnmpSettings:
    """The settings as stored with a target (its jsonb column, as the pool decodes it)."""
    return msgspec.convert(stored, SnmpSettings)


def encode(settings: SnmpSettings) -> dict:
    """The settings as a target stores them."""
    return msgspec.to_builtins(settings)
