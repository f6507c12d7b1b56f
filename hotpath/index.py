"""The in-memory index the boot path answers from.

A full reload builds a new Index and the feed swaps the dispatcher's
reference to it in one assignment.  Incremental updates change the live
index with plain dict operations and no await in between, so on the
single-threaded event loop a request sees each node either wholly before
or wholly after a change.
"""

from __future__ import annotations

import time

from hotpath.answers import NodeAnswers


class Index:
    __slots__ = ("by_mac", "by_id", "by_nid", "cloud_by_id", "cloud_by_ip", "_keys", "built_at", "updated_at")

    def __init__(self) -> None:
        self.by_mac: dict = {}
        self.by_id: dict = {}
        self.by_nid: dict = {}
        self.cloud_by_id: dict = {}
        self.cloud_by_ip: dict = {}
        # node id -> (nid, number of MACs, *MACs, *IPs) it put in, so it can take
        # them out again; one flat tuple per node is the smallest way to keep that.
        self._keys: dict[str, tuple] = {}
        self.built_at = self.updated_at = time.time()

    @classmethod
    def from_answers(cls, answers: list[NodeAnswers]) -> Index:
        index = cls()
        index.add(answers)
        return index

    def add(self, answers: list[NodeAnswers]) -> None:
        """Insert answers while building a new index (before it is published)."""
        for node in answers:
            self._insert(node)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, node_id: str) -> bool:
        return node_id in self._keys

    @property
    def mac_count(self) -> int:
        return len(self.by_mac)

    def replace(self, node_ids, answers: list[NodeAnswers]) -> None:
        """Drop these nodes' old entries and put in the new answers, synchronously."""
        for node_id in node_ids:
            self._remove(node_id)
        for node in answers:
            self._remove(node.node_id)
            self._insert(node)
        self.updated_at = time.time()

    def _insert(self, node: NodeAnswers) -> None:
        node_id = node.node_id
        self.by_mac.update(node.by_mac)
        self.by_id[node_id] = node.primary
        if node.nid is not None:
            self.by_nid[node.nid] = node.primary
        self.cloud_by_id[node_id] = node.cloud_init
        for ip in node.ips:
            self.cloud_by_ip[ip] = node.cloud_init
        self._keys[node_id] = (node.nid, len(node.by_mac), *node.by_mac, *node.ips)

    def _remove(self, node_id: str) -> None:
        keys = self._keys.pop(node_id, None)
        if keys is None:
            return
        nid, mac_count = keys[0], keys[1]
        macs, ips = keys[2 : 2 + mac_count], keys[2 + mac_count :]
        for mac in macs:
            entry = self.by_mac.get(mac)
            if entry is not None and entry.node_id == node_id:
                del self.by_mac[mac]
        if nid is not None and (entry := self.by_nid.get(nid)) is not None and entry.node_id == node_id:
            del self.by_nid[nid]
        for ip in ips:
            entry = self.cloud_by_ip.get(ip)
            if entry is not None and entry.node_id == node_id:
                del self.cloud_by_ip[ip]
        self.by_id.pop(node_id, None)
        self.cloud_by_id.pop(node_id, None)
