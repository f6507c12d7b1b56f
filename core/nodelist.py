"""Node lists for the csv and json discovery drivers: parsed and checked, with the line of each mistake."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

from core import fields
from core.identity import Role, is_valid_id
from core.mac import InvalidMac, normalize_mac

FIELDS = ("id", "mac", "ip", "nid", "role", "subRole", "arch", "rack", "unit", "slot", "bmc", "bmcAddress",
          "systemPath")
MAX_NODES = 100_000


class NodeListError(ValueError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class ListedNode:
    mac: str
    id: str | None = None
    ip: str | None = None
    nid: int | None = None
    role: str = ""
    sub_role: str = ""
    arch: str | None = None
    rack: str | None = None
    unit: int | None = None
    slot: int = 0
    bmc: str | None = None
    bmc_address: str | None = None
    system_path: str | None = None


def _int(value, name: str, where: str) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not str(value).isdigit():
        raise NodeListError(f"{where}: {name} must be a whole number, got {str(value)[:40]!r}")
    return int(value)


def _node(record: dict, where: str) -> ListedNode:
    unknown = set(record) - set(FIELDS)
    if unknown:
        raise NodeListError(f"{where}: unknown field {sorted(unknown)[0][:40]!r}; known: {', '.join(FIELDS)}")
    text = {k: (str(v).strip() if v is not None else "") for k, v in record.items()}
    try:
        mac = normalize_mac(text.get("mac", ""))
    except InvalidMac as exc:
        raise NodeListError(f"{where}: {exc}") from None
    for name in ("id", "bmc"):
        if text.get(name) and not is_valid_id(text[name]):
            raise NodeListError(f"{where}: {name} {text[name][:40]!r} is not a valid component id")
    try:
        ip = fields.ip_address(text["ip"]) if text.get("ip") else None
        rack = fields.rack(text["rack"]) if text.get("rack") else None
        system_path = fields.redfish_path(text["systemPath"]) if text.get("systemPath") else None
    except fields.InvalidField as exc:
        raise NodeListError(f"{where}: {exc}") from None
    if text.get("role") and text["role"] not in Role.__members__:
        raise NodeListError(f"{where}: role {text['role'][:40]!r} is not one of {', '.join(Role.__members__)}")
    return ListedNode(
        mac=mac, id=text.get("id") or None, ip=ip, nid=_int(record.get("nid"), "nid", where),
        role=text.get("role", ""), sub_role=text.get("subRole", "")[:64], arch=text.get("arch") or None,
        rack=rack, unit=_int(record.get("unit"), "unit", where),
        slot=_int(record.get("slot"), "slot", where) or 0, bmc=text.get("bmc") or None,
        bmc_address=text.get("bmcAddress") or None, system_path=system_path)


def parse(driver: str, document: str) -> list[ListedNode]:
    if driver == "json":
        try:
            records = json.loads(document)
        except ValueError as exc:
            raise NodeListError(f"not JSON: {exc}") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise NodeListError("expected a JSON array of objects")
        places = [f"item {i}" for i in range(len(records))]
    elif driver == "csv":
        reader = csv.DictReader(io.StringIO(document))
        try:
            records = [dict(r) for r in reader]
        except csv.Error as exc:
            raise NodeListError(f"not CSV: {exc}") from None
        if reader.fieldnames is None or "mac" not in reader.fieldnames:
            raise NodeListError("the CSV header must name a mac column")
        if any(None in r for r in records):
            raise NodeListError("a CSV row has more cells than the header")
        places = [f"line {i + 2}" for i in range(len(records))]
    else:
        raise NodeListError(f"no node list driver {driver!r}")
    if len(records) > MAX_NODES:
        raise NodeListError(f"{len(records)} nodes; at most {MAX_NODES} per document")
    nodes = [_node(record, where) for record, where in zip(records, places, strict=True)]
    seen: dict[str, str] = {}
    for node, where in zip(nodes, places, strict=True):
        if node.mac in seen:
            raise NodeListError(f"{where}: MAC {node.mac} is also on {seen[node.mac]}")
        seen[node.mac] = where
    return nodes
