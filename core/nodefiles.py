"""Files of nodes (JSON array, NDJSON, YAML list, CSV) read into the list POST /hsm/v2/import takes.

One reader for every face that imports a file (`chamicore import`, the
console's import page).  It only reshapes: the import itself checks every
value and reports each bad node by its index (`read_node_file` also gives
each node's line, for CSV and NDJSON, so that a face can name it).

A CSV file has a header row of field names, in any order, any case:

    id,type,role,subRole,nid,arch,enabled,rack,unit,slot,subSlot,mac,ip,bmc,bmcCredential,groups,kernel,initrd,cmdline

- `id`, `type` (Node unless given), `role`, `subRole`, `nid`, `arch`,
  `enabled`, `state`: the component's spec fields;
- `rack`, `unit`, `slot`, `subSlot`: its `location`;
- `mac` (or `macAddr`) with an optional `ip` (or `ipAddress`): one network
  interface; several MACs are separated by spaces or `;`, the IPs in the same
  order;
- `bmc` (or `bmcAddress`): the node's BMC, `https://host[:port]` for Redfish
  (a bare host means https) or `ipmi://host:port` for IPMI, made (or reused)
  and set as the node's parent; `bmcCredential` (or `bmcCredentialId`): the
  stored credential power control uses there; `bmcInsecure`: true to skip its
  TLS certificate check;
- `groups` (or `group`): existing groups the node joins, separated by spaces
  or `;`;
- `kernel`, `initrd`, `cmdline`: the node's boot parameters.

An empty cell leaves the field out.
"""

from __future__ import annotations

import csv
import io
import json
import re

import yaml

LOCATION = {"rack": "rack", "unit": "unit", "slot": "slot", "subslot": "subSlot"}
BOOT = {"kernel": "kernel", "initrd": "initrd", "cmdline": "cmdline"}
NUMBERS = {"nid", "unit", "slot", "subSlot"}
MAC_COLUMNS = {"mac", "macaddr", "macaddress"}
IP_COLUMNS = {"ip", "ipaddr", "ipaddress"}
GROUP_COLUMNS = {"groups", "group"}
BMC = {"bmc": "address", "bmcaddress": "address", "bmccredential": "credentialId",
       "bmccredentialid": "credentialId", "bmcinsecure": "insecure"}
_SEPARATORS = re.compile(r"[;\s]+")


class NodeFileError(ValueError):
    """The file cannot be read as a list of nodes (what is wrong, where)."""


def read_nodes(text: str, name: str = "") -> list:
    """The nodes of a file's text: CSV by its name (`.csv`) or a first line of comma-separated names,
    the rest by their content."""
    return read_node_file(text, name)[0]


def read_node_file(text: str, name: str = "") -> tuple[list, list[int]]:
    """The nodes of a file's text, and the line each starts on (CSV and NDJSON; [] for JSON and YAML)."""
    first = text.lstrip().split("\n", 1)[0]
    if name.lower().endswith(".csv") or (first[:1] not in ("", "[", "{", "-", "#") and "," in first
                                         and ":" not in first):
        return _csv(text)
    if text.lstrip().startswith("{"):  # NDJSON: one node per line
        numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        try:
            return [json.loads(line) for _, line in numbered], [n for n, _ in numbered]
        except ValueError as exc:
            raise NodeFileError(f"not NDJSON ({exc})") from None
    try:
        nodes = yaml.safe_load(text)  # YAML is a superset of JSON: a JSON array reads too
    except yaml.YAMLError as exc:
        raise NodeFileError(f"neither JSON, NDJSON, YAML nor CSV ({exc})") from None
    if not isinstance(nodes, list):
        raise NodeFileError("expected a list of nodes")
    return nodes, []


def _csv(text: str) -> tuple[list, list[int]]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        raise NodeFileError("the CSV file has no header row of field names")
    names = [cell.strip() for cell in header]
    nodes, lines = [], []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(names):
            raise NodeFileError(f"line {reader.line_num}: {len(row)} cells, but the header names {len(names)}")
        nodes.append(_csv_node(dict(zip(names, (cell.strip() for cell in row), strict=False)), reader.line_num))
        lines.append(reader.line_num)
    return nodes, lines


def _csv_node(cells: dict[str, str], line: int) -> dict:
    node: dict = {}
    macs: list[str] = []
    ips: list[str] = []
    for name, value in cells.items():
        if value == "":
            continue
        key = name.lower().replace("_", "").replace("-", "")
        if key in MAC_COLUMNS:
            macs = _SEPARATORS.split(value)
        elif key in IP_COLUMNS:
            ips = _SEPARATORS.split(value)
        elif key in LOCATION:
            node.setdefault("location", {})[LOCATION[key]] = _value(LOCATION[key], value, line)
        elif key in BOOT:
            node.setdefault("bootParams", {})[BOOT[key]] = value
        elif key in GROUP_COLUMNS:
            node["groups"] = _SEPARATORS.split(value)
        elif key in BMC:
            node.setdefault("bmc", {})[BMC[key]] = _value("enabled", value, line, "bmcInsecure") \
                if BMC[key] == "insecure" else value
        else:
            node[name] = _value(name, value, line)
    if "bmc" in node and "address" not in node["bmc"]:
        raise NodeFileError(f"line {line}: {', '.join(sorted(node['bmc']))} without a bmc address")
    if len(ips) > len(macs):
        raise NodeFileError(f"line {line}: {len(ips)} IP addresses for {len(macs)} MAC addresses")
    if macs:
        node["networkInterfaces"] = [{"macAddr": mac, **({"ipAddrs": [{"ipAddress": ips[i]}]} if i < len(ips) else {})}
                                     for i, mac in enumerate(macs)]
    return node


def _value(name: str, value: str, line: int, column: str = "") -> object:
    if name in NUMBERS:
        try:
            return int(value)
        except ValueError:
            raise NodeFileError(f"line {line}: {name} must be a whole number, not {value[:40]!r}") from None
    if name == "enabled":
        if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
            raise NodeFileError(f"line {line}: {column or name} must be true or false, not {value[:40]!r}")
        return value.lower() in ("true", "yes", "1")
    return value
