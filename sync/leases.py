"""Kea's DHCPv4 leases as the first boot stage (dhcp) of the nodes that hold them.

Stock Kea 2.2 ships the lease_cmds hook: loaded in kea-dhcp4
(`"hooks-libraries": [{"library": ".../kea/hooks/libdhcp_lease_cmds.so"}]`),
`lease4-get-page` through the control agent pages through every lease as JSON
(hw-address, cltt: the client's last transaction, state).  Each pass reads
them in pages, keeps the leases whose cltt moved since the last pass (the job
remembers one number per MAC), maps their MACs to components and writes them
in one batch through bss.apply_boot_stages, the rules the boot path's flushes
go through (migration 0026): a lease moves no node back, so a renewal never
makes a ready node look like it is booting again.

A Kea without lease_cmds answers "not supported": the job logs it once, says
so in `chamicore sync status` (counts.unavailable) and asks again each pass.
"""

from __future__ import annotations

import logging

import aiohttp
import asyncpg

from core import tracing
from core.mac import try_normalize_mac
from sync.kea import KeaError
from sync.service import Job

log = logging.getLogger("chamicore.sync.leases")

PAGE = 1000
RESULT_UNSUPPORTED = 2  # Kea's answer to a command no loaded hook provides
RESULT_EMPTY = 3  # Kea's "no leases" answer to lease4-get-page past the last one
# A node with several interfaces: its latest lease.
_APPLY = """
WITH latest AS (
    SELECT i.component_id AS id, max(l.cltt) AS cltt FROM unnest($1::text[], $2::float8[]) AS l(mac, cltt)
    JOIN smd.ethernet_interfaces i ON i.mac = l.mac GROUP BY i.component_id
)
SELECT bss.apply_boot_stages(array_agg(id), array_agg(NULL::float8), array_agg(cltt), array_agg(NULL::float8),
                             array_agg(NULL::float8), array_agg(NULL::float8), array_agg(NULL::float8),
                             array_agg(NULL::float8))
FROM latest
"""


class LeaseCommandsMissing(KeaError):
    pass


class LeaseSync(Job):
    name = "kea-leases"
    channel = None  # nothing in the database says a lease changed: a pass every period_s
    period_s = 5.0  # how late the dhcp stage of a boot storm may show

    def __init__(self, dsn: str, kea_url: str) -> None:
        super().__init__(dsn)
        self.kea_url = kea_url
        self._seen: dict[str, float] = {}  # MAC -> cltt of its lease last written
        self.leases = 0
        self.written = 0  # node rows written (leases of MACs no node has are skipped)
        self.missing: str | None = None  # why Kea cannot list its leases (no lease_cmds hook), if it cannot

    def counts(self) -> dict:
        return {"passes": self.passes, "leases": self.leases, "written": self.written,
                **({"unavailable": self.missing} if self.missing else {})}

    async def deactivate(self) -> None:
        self._seen.clear()  # another replica wrote meanwhile: the next active pass writes every lease again

    async def leases_page(self, session: aiohttp.ClientSession, start: str) -> list[dict]:
        body = {"command": "lease4-get-page", "service": ["dhcp4"], "arguments": {"from": start, "limit": PAGE}}
        async with session.post(self.kea_url, json=body) as response:
            answer = await response.json(content_type=None)
        result = answer[0] if isinstance(answer, list) else answer
        if result.get("result") == RESULT_EMPTY:
            return []
        if result.get("result") == RESULT_UNSUPPORTED:
            raise LeaseCommandsMissing(str(result.get("text"))[:200])
        if result.get("result") != 0:
            raise KeaError(f"Kea refused lease4-get-page: {result.get('text')}")
        return (result.get("arguments") or {}).get("leases") or []

    async def work_once(self, conn: asyncpg.Connection) -> bool:
        changed: dict[str, float] = {}
        count = 0
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session, tracing.async_span("kea leases"):
            start = "start"
            while True:
                try:
                    page = await self.leases_page(session, start)
                except LeaseCommandsMissing as exc:
                    # A Kea set up without the hook is a choice, not a failure: said once, in the status too.
                    if self.missing is None:
                        log.warning("kea leases: Kea cannot list its leases (%s); load the lease_cmds hook for "
                                    "the dhcp boot stage", exc)
                    self.missing = str(exc)
                    return False
                for lease in page:
                    count += 1
                    mac = try_normalize_mac(str(lease.get("hw-address", ""))[:64])
                    cltt = lease.get("cltt")
                    # state 0: assigned (1 declined, 2 expired-reclaimed are no boot)
                    if mac is None or type(cltt) is not int or lease.get("state", 0) != 0:
                        continue
                    if self._seen.get(mac) != cltt:
                        changed[mac] = float(cltt)
                if len(page) < PAGE:
                    break
                start = page[-1]["ip-address"]
        self.leases = count
        self.missing = None
        if changed:
            self.written += await conn.fetchval(_APPLY, list(changed), list(changed.values())) or 0
            self._seen.update(changed)
        return False
