"""The discovery scanner: runs pending scans host by host, and scheduled targets when they are due.

Scan state lives in the database (pending -> running -> completed, failed
or cancelled, with a row per host), so a scanner that dies mid-scan leaves
a `running` scan that the next active replica picks up: the hosts it had
not finished are scanned again (registering is idempotent), the finished
ones keep their outcome.  No scan stays `running` forever.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import asyncpg

from core import db, events, tracing
from core.crypto import SecretBox
from core.discovery import create_scan
from core.ipmi import IpmiClient, IpmiError
from core.nodelist import NodeListError, parse
from sync.discovery.attach import scan_switch
from sync.discovery.ipmi import read_bmc
from sync.discovery.register import Registered, register_bmc, register_listed
from sync.discovery.snmp import SwitchError
from sync.discovery.walk import walk
from sync.redfish import RedfishClient, RedfishError
from sync.service import Job

log = logging.getLogger("chamicore.sync.discovery")

BATCH = 500           # hosts read from the database at a time
CANCEL_CHECK_S = 0.5  # how soon a cancel (or a lost leadership) stops a scan


class HostFailed(Exception):
    pass


class DiscoveryScanner(Job):
    name = "discovery"
    channel = "chamicore_discovery"
    period_s = 30.0

    def __init__(self, dsn: str, box: SecretBox | None, concurrency: int = 64, timeout_s: float = 15.0) -> None:
        super().__init__(dsn)
        self.box = box
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.scans_done = 0
        self.hosts_done = 0
        self.hosts_failed = 0

    def counts(self) -> dict:
        return {"passes": self.passes, "scans": self.scans_done, "hosts": self.hosts_done,
                "hostsFailed": self.hosts_failed}

    async def work_once(self, conn: asyncpg.Connection) -> bool:
        await self._schedule(conn)
        scan = await conn.fetchrow("SELECT id, state, owner FROM discovery.scans WHERE state IN ('pending', 'running') "
                                   "ORDER BY created_at, id LIMIT 1")
        if scan is None:
            return False
        if scan["state"] == "running":
            # Only the active replica runs scans, one at a time: a running scan here was left by a replica that died.
            log.info("discovery: resuming scan %s left by %s", scan["id"], scan["owner"])
            await conn.execute("UPDATE discovery.scan_hosts SET state = 'pending', started_at = NULL "
                               "WHERE scan_id = $1 AND state = 'running'", scan["id"])
        await conn.execute("UPDATE discovery.scans SET state = 'running', owner = $2, "
                           "started_at = coalesce(started_at, now()), updated_at = now() WHERE id = $1",
                           scan["id"], self.instance)
        await self._run(conn, scan["id"])
        return True

    async def _schedule(self, conn: asyncpg.Connection) -> None:
        """A scan for each scheduled target that is due and not already being scanned."""
        due = await conn.fetch(
            "SELECT * FROM discovery.targets t WHERE enabled AND schedule_s IS NOT NULL "
            "AND (last_scan_at IS NULL OR last_scan_at + schedule_s * interval '1 second' <= now()) "
            "AND NOT EXISTS (SELECT 1 FROM discovery.scan_hosts h JOIN discovery.scans s ON s.id = h.scan_id "
            "                WHERE h.target_id = t.id AND s.state IN ('pending', 'running'))")
        for target in due:
            async with conn.transaction():
                scan_id = await create_scan(conn, [target], "schedule")
                await events.emit(conn, "discovery", "scans", "created", scan_id, {"targets": [target["id"]]})
            log.info("discovery: scheduled scan %s of %s", scan_id, target["id"])

    async def _run(self, conn: asyncpg.Connection, scan_id: str) -> None:
        pool = await db.create_pool(self.dsn, min_size=1, max_size=4,
                                    server_settings={"application_name": "chamicore-sync-discovery"})
        limit = asyncio.Semaphore(self.concurrency)
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.concurrency)) as session:
                work = asyncio.create_task(self._hosts(pool, session, limit, scan_id))
                watch = asyncio.create_task(self._watch(conn, scan_id))
                try:
                    await asyncio.wait((work, watch), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    work.cancel()
                    watch.cancel()
                    outcomes = await asyncio.gather(work, watch, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    raise outcome
            await self._finish(conn, scan_id)
        finally:
            await pool.close()

    async def _watch(self, conn: asyncpg.Connection, scan_id: str) -> None:
        """Returns when the scan is cancelled; raises when the leader connection is gone."""
        while True:
            await asyncio.sleep(CANCEL_CHECK_S)
            state = await conn.fetchval("SELECT state FROM discovery.scans WHERE id = $1", scan_id)
            if state != "running":
                log.info("discovery: scan %s is %s; stopping it", scan_id, state)
                return

    async def _hosts(self, pool: asyncpg.Pool, session: aiohttp.ClientSession, limit: asyncio.Semaphore,
                     scan_id: str) -> None:
        targets: dict[str, asyncpg.Record | None] = {}
        while True:
            rows = await pool.fetch("SELECT target_id, host FROM discovery.scan_hosts WHERE scan_id = $1 "
                                    "AND state = 'pending' ORDER BY target_id, host LIMIT $2", scan_id, BATCH)
            if not rows:
                return
            for target_id in {r["target_id"] for r in rows} - set(targets):
                targets[target_id] = await pool.fetchrow("SELECT * FROM discovery.targets WHERE id = $1", target_id)
            await asyncio.gather(*(self._host(pool, session, limit, scan_id, targets[r["target_id"]], r["target_id"],
                                              r["host"]) for r in rows))

    async def _host(self, pool, session, limit, scan_id: str, target, target_id: str, host: str) -> None:
        async with limit, tracing.async_span("discovery host", attributes={"chamicore.scan.id": scan_id,
                                                                             "server.address": host}):
            await pool.execute("UPDATE discovery.scan_hosts SET state = 'running', started_at = now() "
                               "WHERE scan_id = $1 AND target_id = $2 AND host = $3 AND state = 'pending'",
                               scan_id, target_id, host)
            components: list[str] = []
            state, detail = "ok", ""
            try:
                if target is None:
                    raise HostFailed(f"target {target_id!r} was deleted")
                async with asyncio.timeout(self.timeout_s):
                    registered = await self._discover(pool, session, scan_id, target, host)
                # A node another endpoint manages was not adopted: the host needs an admin's eye.
                components, state = registered.ids, "failed" if registered.conflicts else "ok"
                detail = "; ".join(registered.conflicts + registered.problems)[:4000]
            except TimeoutError:
                state, detail = "failed", f"{host}: no complete answer within {self.timeout_s:g} s"
            except (HostFailed, RedfishError, NodeListError, SwitchError) as exc:
                state, detail = "failed", str(exc)[:4000]
            except (asyncpg.PostgresError, ValueError) as exc:
                state, detail = "failed", f"could not register what was found: {exc}"[:4000]
            self.hosts_done += 1
            self.hosts_failed += state == "failed"  # the admin API's /metrics reads it from sync.status
            # A cancel in the meantime wins: the row is no longer 'running'.
            await pool.execute("UPDATE discovery.scan_hosts SET state = $4, detail = $5, components = $6, "
                               "finished_at = now() WHERE scan_id = $1 AND target_id = $2 AND host = $3 "
                               "AND state = 'running'", scan_id, target_id, host, state, detail, components)
            log.info("discovery: %s %s: %s %s", scan_id, host, state, detail)

    async def _credentials(self, pool, credential_id: str | None) -> tuple[str | None, str | None]:
        if credential_id is None:
            return None, None
        row = await pool.fetchrow("SELECT username, secret_enc FROM auth.credentials WHERE id = $1", credential_id)
        if row is None:
            raise HostFailed(f"credential {credential_id!r} no longer exists; set the target's credentialId")
        if self.box is None:
            raise HostFailed("the sync daemon has no CHAMICORE_CREDENTIALS_KEY (or _FILE) to open BMC credentials")
        try:
            return row["username"], self.box.open(bytes(row["secret_enc"]), credential_id).decode()
        except ValueError:
            raise HostFailed(f"credential {credential_id!r} cannot be decrypted: the sync daemon's "
                             "CHAMICORE_CREDENTIALS_KEY is not the admin API's") from None

    async def _discover(self, pool, session, scan_id: str, target, host: str) -> Registered:
        if target["driver"] in ("csv", "json"):
            nodes = parse(target["driver"], target["document"])
            async with pool.acquire() as conn:
                return await register_listed(conn, nodes, scan_id)
        if target["driver"] == "ipmi":
            return await self._discover_ipmi(pool, scan_id, target, host)
        if target["driver"] == "snmp":
            username, secret = await self._credentials(pool, target["credential_id"])
            return await scan_switch(pool, scan_id, target, host, username, secret, self.timeout_s)
        username, password = await self._credentials(pool, target["credential_id"])
        client = RedfishClient(session, host, username, password, insecure=target["insecure"],
                               timeout_s=self.timeout_s, credential_id=target["credential_id"])
        found = await walk(client)
        async with pool.acquire() as conn:
            return await register_bmc(conn, found, target["credential_id"], target["insecure"], scan_id)

    async def _discover_ipmi(self, pool, scan_id: str, target, host: str) -> Registered:
        username, password = await self._credentials(pool, target["credential_id"])
        if username is None or password is None:
            raise HostFailed(f"{host}: the ipmi driver needs a credential: set the target's credentialId")
        try:
            found = await read_bmc(IpmiClient(host, username, password, timeout_s=self.timeout_s,
                                              credential_id=target["credential_id"]))
        except IpmiError as exc:
            raise HostFailed(str(exc)) from None
        async with pool.acquire() as conn:
            return await register_bmc(conn, found, target["credential_id"], False, scan_id)

    async def _finish(self, conn: asyncpg.Connection, scan_id: str) -> None:
        counts = {state: n for state, n in await conn.fetch(
            "SELECT state, count(*) FROM discovery.scan_hosts WHERE scan_id = $1 GROUP BY state", scan_id)}
        failed, total = counts.get("failed", 0), sum(counts.values())
        state = "failed" if total and failed == total else "completed"
        error = f"{failed} of {total} hosts failed" if failed else None
        async with conn.transaction():
            finished = await conn.fetchval(
                "UPDATE discovery.scans SET state = $2, error = $3, finished_at = now(), updated_at = now() "
                "WHERE id = $1 AND state = 'running' RETURNING id", scan_id, state, error)
            if finished:
                await events.emit(conn, "discovery", "scans", state, scan_id, {"counts": counts})
        if finished:
            self.scans_done += 1
            log.info("discovery: scan %s %s (%s)", scan_id, state, counts)
