"""Turns loaded rows into each node's answers, rendered once per change.

Boot parameters resolve by precedence MAC, component, group, role, site
default; a node in several groups takes the first group by name that has
parameters.  cloud-init user-data and vendor-data resolve component, group,
role, site default the same way; meta-data objects are merged, the most
specific scope winning key by key, over the node's own attributes.
"""

from __future__ import annotations

import dataclasses
import hashlib

import msgspec

from hotpath._render import render_bootscript
from hotpath.loader import Snapshot


class BootEntry:
    """What one MAC (or a node looked up by name/nid) gets from /boot/v1/bootscript."""

    __slots__ = ("node_id", "mac", "chain_query", "kernel", "initrd", "cmdline", "variables",
                 "wait_message", "cache")

    def __init__(self, node_id, mac, chain_query, kernel, initrd, cmdline, variables, wait_message):
        self.node_id = node_id
        self.mac = mac
        self.chain_query = chain_query
        self.kernel = kernel
        self.initrd = initrd
        self.cmdline = cmdline
        self.variables = variables
        # None when the node can boot; otherwise why it must wait.
        self.wait_message = wait_message
        # Rendered scripts by advertised base URL (and retry count when > 0).
        self.cache = {}


class CloudInitEntry:
    __slots__ = ("node_id", "user_data", "meta_data", "vendor_data", "instance_id")

    def __init__(self, node_id, user_data, meta_data, vendor_data, instance_id):
        self.node_id = node_id
        self.user_data = user_data
        self.meta_data = meta_data
        self.vendor_data = vendor_data
        self.instance_id = instance_id


@dataclasses.dataclass(slots=True)
class NodeAnswers:
    node_id: str
    nid: int | None
    by_mac: dict[str, BootEntry]
    primary: BootEntry
    cloud_init: CloudInitEntry
    ips: list[str]


class _Scoped:
    """Rows of one scoped table, keyed for precedence lookups."""

    __slots__ = ("by_mac", "by_component", "by_group", "by_role", "site")

    def __init__(self, rows, has_mac: bool) -> None:
        self.by_mac, self.by_component, self.by_group, self.by_role = {}, {}, {}, {}
        self.site = None
        for row in rows:
            if has_mac and row["mac"] is not None:
                self.by_mac[row["mac"]] = row
            elif row["component_id"] is not None:
                self.by_component[row["component_id"]] = row
            elif row["group_name"] is not None:
                self.by_group[row["group_name"]] = row
            elif row["role"] is not None:
                self.by_role[row["role"]] = row
            else:
                self.site = row

    def chain(self, node, mac: str | None = None) -> list:
        """Rows that apply to this node, most specific first."""
        found = []
        if mac is not None and mac in self.by_mac:
            found.append(self.by_mac[mac])
        if node["id"] in self.by_component:
            found.append(self.by_component[node["id"]])
        found.extend(self.by_group[g] for g in node["groups"] if g in self.by_group)
        if node["role"] in self.by_role:
            found.append(self.by_role[node["role"]])
        if self.site is not None:
            found.append(self.site)
        return found


def _text(value) -> str:
    return "" if value is None else str(value)


class AnswerBuilder:
    """Builds NodeAnswers; prerenders boot scripts when the boot URL is configured."""

    def __init__(self, base_url: str | None, retry_base: float, retry_max: float) -> None:
        self.base_url = base_url
        self.retry_base = retry_base
        self.retry_max = retry_max

    def build(self, snapshot: Snapshot) -> list[NodeAnswers]:
        params = _Scoped(snapshot.boot_params, has_mac=True)
        payloads = _Scoped(snapshot.payloads, has_mac=False)
        interfaces: dict[str, list] = {}
        for row in snapshot.interfaces:
            interfaces.setdefault(row["component_id"], []).append(row)
        return [self._node(node, interfaces.get(node["id"], ()), params, payloads) for node in snapshot.nodes]

    def _node(self, node, nics, params: _Scoped, payloads: _Scoped) -> NodeAnswers:
        node_id = node["id"]
        cloud_init, hostname = self._cloud_init(node, nics, payloads)
        groups = list(node["groups"])
        variables = {
            "id": node_id,
            "nid": _text(node["nid"]),
            "role": node["role"],
            "subRole": node["sub_role"],
            "hostname": hostname,
            "arch": node["arch"],
            "type": node["type"],
            "rack": _text(node["rack"]),
            "unit": _text(node["unit"]),
            "slot": _text(node["slot"]),
            "group": groups[0] if groups else "",
            "groups": ",".join(groups),
        }
        by_mac = {}
        for nic in nics:
            mac = nic["mac"]
            by_mac[mac] = self._boot_entry(node, mac, "mac=" + mac, params, variables)
        primary = by_mac[nics[0]["mac"]] if nics else self._boot_entry(node, "", "name=" + node_id, params, variables)
        ips = [addr["ipAddress"] for nic in nics for addr in nic["ip_addrs"]
               if isinstance(addr, dict) and isinstance(addr.get("ipAddress"), str)]
        return NodeAnswers(node_id, node["nid"], by_mac, primary, cloud_init, ips)

    def _boot_entry(self, node, mac: str, chain_query: str, params: _Scoped, variables: dict) -> BootEntry:
        node_id = node["id"]
        chain = params.chain(node, mac or None)
        variables = dict(variables, mac=mac)
        if not node["enabled"]:
            return BootEntry(node_id, mac, chain_query, "", "", "", variables, f"node {node_id} is disabled")
        if not chain:
            return BootEntry(node_id, mac, chain_query, "", "", "", variables,
                             f"no boot parameters apply to node {node_id}")
        row = chain[0]
        entry = BootEntry(node_id, mac, chain_query, row["kernel"], row["initrd"], row["cmdline"], variables, None)
        if self.base_url is not None:
            entry.cache[self.base_url] = render_bootscript(
                entry.kernel, entry.initrd, entry.cmdline, variables, node_id, mac, chain_query,
                self.base_url, 0, self.retry_base, self.retry_max)
        return entry

    def _cloud_init(self, node, nics, payloads: _Scoped) -> tuple[CloudInitEntry, str]:
        chain = payloads.chain(node)
        user_data = next((row["user_data"] for row in chain if row["user_data"] is not None), "")
        vendor_data = next((row["vendor_data"] for row in chain if row["vendor_data"] is not None), "")
        meta = {
            "local-hostname": node["id"],
            "component-id": node["id"],
            "type": node["type"],
            "role": node["role"],
            "sub-role": node["sub_role"],
            "nid": node["nid"],
            "arch": node["arch"],
            "groups": list(node["groups"]),
            "location": {"rack": node["rack"], "unit": node["unit"], "slot": node["slot"],
                         "subSlot": node["sub_slot"]},
            "interfaces": [{"mac": nic["mac"], "ipAddrs": nic["ip_addrs"]} for nic in nics],
        }
        for row in reversed(chain):
            meta.update(row["meta_data"] or {})
        meta.pop("instance-id", None)
        hostname = str(meta.get("local-hostname") or node["id"])
        user_bytes = user_data.encode()
        vendor_bytes = vendor_data.encode()
        # instance-id follows the cloud-init data itself: stable across restarts,
        # new only when what the node would receive changes.
        digest = hashlib.blake2b(digest_size=8)
        for part in (user_bytes, msgspec.json.encode(meta, order="sorted"), vendor_bytes):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        instance_id = f"{node['id']}-{digest.hexdigest()}"
        meta_bytes = msgspec.json.encode({"instance-id": instance_id, **meta}, order="sorted")
        return CloudInitEntry(node["id"], user_bytes, meta_bytes, vendor_bytes, instance_id), hostname
