"""Each node's last boot-path request, kept in memory and written in batches.

A boot storm must not turn into a write storm: recording a request is one
dict lookup and a few stores in the node's compiled record
(hotpath/_activity.pyx), and flush() sends what was gathered since the last
flush, in slices.  A node's first request is written at the next flush;
after that, a node is written at most once per `node_interval_s` (its
requests are counted meanwhile), so the rows per flush stay bounded by how
many nodes are new or due, not by how many keep asking.  If the database is
away the batch is kept (merged with newer requests) and tried again on the
next flush.

Boot stages ride on the same record and the same flushes, every
`stages_interval_s` (10 s by default: during a storm a node goes through
several stages within that time, and they are then one row, not one per
stage): the record keeps, per node, the first time of each stage seen since
the last stage flush (and whether a new boot began meanwhile), and flush()
hands them, a row per node, to bss.apply_boot_stages, which merges them with
each node's current boot by the stage rules (migration 0026), together with
what other workers and the Kea lease sync wrote.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Container

import asyncpg

from core import db
from hotpath._activity import ActivityRecorder

log = logging.getLogger("chamicore.hotpath.telemetry")
FLUSH_SLICE = 2_000
FORGET_EVERY_S = 600.0  # how often the records of nodes no longer in the index are dropped

# Boot stages, in order (bss.boot_stages.stage).  DHCP comes from Kea's leases, not from the boot path.
STAGES = ("dhcp", "ipxe", "script", "kernel-booted", "cloud-init", "ready")
DHCP, IPXE, SCRIPT, KERNEL_BOOTED, CLOUD_INIT, READY = range(6)
_NEW_BOOT = 0  # index of a node's marks that holds when a new boot began since the last flush
_APPLY_STAGES = "SELECT bss.apply_boot_stages($1::text[], $2, $3, $4, $5, $6, $7, $8)"


# The conversions (endpoint names, "ip:port" to inet, unix time to timestamptz) happen
# in PostgreSQL: done in Python they cost the serving core ~1 us per row, and a flush
# after a storm over 100k nodes carries tens of thousands of rows.
_UPSERT = """
INSERT INTO bss.boot_telemetry AS t (component_id, endpoint, source_ip, seen_at, requests)
SELECT u.id, (ARRAY['bootscript', 'boot.ipxe', 'cloud-init', 'other'])[u.endpoint + 1],
       NULLIF(btrim(regexp_replace(u.client, ':[0-9]+$', ''), '[]'), '')::inet, to_timestamp(u.seen), u.n
FROM unnest($1::text[], $2::int[], $3::text[], $4::float8[], $5::bigint[]) AS u(id, endpoint, client, seen, n)
WHERE EXISTS (SELECT 1 FROM smd.components c WHERE c.id = u.id)
ON CONFLICT (component_id) DO UPDATE SET
    endpoint  = CASE WHEN excluded.seen_at >= t.seen_at THEN excluded.endpoint ELSE t.endpoint END,
    source_ip = CASE WHEN excluded.seen_at >= t.seen_at THEN excluded.source_ip ELSE t.source_ip END,
    seen_at   = greatest(t.seen_at, excluded.seen_at),
    requests  = t.requests + excluded.requests
"""


def client_host(client: str) -> str | None:
    """"10.0.0.5:41234" or "[fe80::1]:41234" or "::1:41234" -> the address, if valid."""
    host = client.rsplit(":", 1)[0].strip("[]") if client else ""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class BootTelemetry:
    def __init__(self, dsn: str, flush_interval_s: float = 2.0, node_interval_s: float = 30.0,
                 stages_interval_s: float = 10.0,
                 known: Callable[[], tuple[Container[str], ...] | None] | None = None) -> None:
        self.dsn = dsn
        self.flush_interval_s = flush_interval_s
        self.node_interval_s = node_interval_s
        self.stages_interval_s = stages_interval_s
        self._stages_flushed_at = time.monotonic()
        # The node ids the boot path serves now (None while it loads): records of others are dropped once written.
        self.known = known
        self._forgotten_at = time.monotonic()
        self.activity = ActivityRecorder()
        # A boot request: record(node_id, endpoint, now, client, stage=NO_STAGE), `stage` (IPXE .. READY) if the
        # request shows one.  A stage alone (the first stage, a phone-home): record_stage(node_id, stage, now).
        self.record = self.activity.request
        self.record_stage = self.activity.stage
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self.flushed_rows = 0
        self.last_flush_s = 0.0  # how long the last flush that wrote rows took (/metrics)
        self.last_error: str | None = None

    @property
    def pending(self) -> int:
        return len(self.activity.requested)

    @property
    def pending_stages(self) -> int:
        return len(self.activity.staged)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="chamicore-boot-telemetry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush(force=True)
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            await self.flush()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await db.connect(self.dsn, timeout=5)
        return self._conn

    def _lost_connection(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    def forget(self) -> int:
        """Drop the records of deleted nodes (those with nothing left to write); returns how many."""
        self._forgotten_at = time.monotonic()
        known = self.known() if self.known is not None else None
        return 0 if known is None else self.activity.forget(*known)

    async def flush_stages(self) -> int:
        """Every node's stage events since the last flush, in one call (a few events a node a boot: no
        per-node interval here).  Returns the nodes written; kept and merged if the database is away."""
        self._stages_flushed_at = time.monotonic()
        if not self.activity.staged:
            return 0
        # One row per node, a column per mark (None where absent): the merge is set-based, per node.
        ids, *marks = self.activity.take_stages()
        began, ipxe, script, kernel, cloud_init, ready = marks
        try:
            return await (await self._connection()).fetchval(
                _APPLY_STAGES, ids, began, [None] * len(ids), ipxe, script, kernel, cloud_init, ready)
        except db.DATABASE_ERRORS as exc:
            self._lost_connection(exc)
            log.warning("boot stages: could not write %d nodes (%s); keeping them", len(ids), self.last_error)
            # Older events first, then what arrived meanwhile on top, through the same rules.
            nodes = self.activity.nodes
            for row, node_id in enumerate(ids):
                older = [column[row] or 0.0 for column in marks]
                newer = nodes[node_id].marks()
                for stage, at in sorted(((s, t) for s, t in enumerate(newer) if t), key=lambda e: (e[1], e[0])):
                    _step(older, -1 if stage == _NEW_BOOT else stage, at)
                self.activity.set_marks(node_id, older)
            return 0

    async def flush(self, force: bool = False) -> int:
        """Write what is due (everything when `force`, as on stop); returns the telemetry rows written."""
        if force or time.monotonic() - self._stages_flushed_at >= self.stages_interval_s:
            await self.flush_stages()
        if self.known is not None and time.monotonic() - self._forgotten_at >= FORGET_EVERY_S:
            self.forget()
        if not self.activity.requested:
            return 0
        ids, endpoints, clients, seen, counts = self.activity.take_due(
            time.monotonic(), self.node_interval_s, force or not self.node_interval_s)
        if not ids:
            return 0
        written = 0
        started = time.perf_counter()
        try:
            conn = await self._connection()
            # In slices: encoding one slice is short, and the await between slices
            # lets the boot path answer requests while a large flush goes out.
            for start in range(0, len(ids), FLUSH_SLICE):
                end = start + FLUSH_SLICE
                await conn.execute(_UPSERT, ids[start:end], endpoints[start:end], clients[start:end],
                                   seen[start:end], counts[start:end])
                self.activity.written(ids[start:end], time.monotonic())
                written = min(end, len(ids))
        except db.DATABASE_ERRORS as exc:
            self._lost_connection(exc)
            log.warning("boot telemetry: could not write %d rows (%s); keeping them", len(ids) - written,
                        self.last_error)
            # Put back what was not written, under anything newer that arrived meanwhile.
            self.activity.put_back(ids[written:], endpoints[written:], clients[written:], seen[written:],
                                   counts[written:])
            self.flushed_rows += written
            return written
        self.flushed_rows += written
        self.last_flush_s = time.perf_counter() - started
        self.last_error = None
        return written


def _step(marks: list[float], stage: int, now: float) -> None:
    """One stage event on a node's marks since the last flush (the rules of bss.boot_stage_step, within
    one flush): going back to ipxe or script, or meta-data once ready, begins a new boot, and what came
    before it belongs to the boot it replaces.  Otherwise each stage keeps its first time."""
    if stage < 0 or (stage <= SCRIPT and any(marks[stage + 1:])) or (stage == KERNEL_BOOTED and marks[READY]):
        marks[:] = (now, 0.0, 0.0, 0.0, 0.0, 0.0)
        if stage < 0:
            return
    if not marks[stage]:
        marks[stage] = now
