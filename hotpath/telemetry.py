"""Each node's last boot-path request, kept in memory and written in batches.

A boot storm must not turn into a write storm: record() is a dict store,
and flush() sends what was gathered since the last flush, in slices.  A
node's first request is written at the next flush; after that, a node is
written at most once per `node_interval_s` (its requests are counted
meanwhile), so the rows per flush stay bounded by how many nodes are new or
due, not by how many keep asking.  If the database is away the batch is kept
(merged with newer requests) and tried again on the next flush.

Boot stages ride on the same flushes, every `stages_interval_s` (10 s by
default: during a storm a node goes through several stages within that time,
and they are then one row, not one per stage): record_stage() keeps, per node,
the first time of each stage seen since the last stage flush (and whether a
new boot began meanwhile), and flush() hands them, a row per node, to
bss.apply_boot_stages, which merges them with each node's current boot by the
stage rules (migration 0026), together with what other workers and the Kea
lease sync wrote.  Nothing of it stays in memory after a flush.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time

import asyncpg

from core import db

log = logging.getLogger("chamicore.hotpath.telemetry")
FLUSH_SLICE = 2_000

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
                 stages_interval_s: float = 10.0) -> None:
        self.dsn = dsn
        self.flush_interval_s = flush_interval_s
        self.node_interval_s = node_interval_s
        self.stages_interval_s = stages_interval_s
        self._stages_flushed_at = time.monotonic()
        self._written_at: dict[str, float] = {}  # node id -> when its row was last written
        self._last: dict[str, tuple] = {}  # node id -> (endpoint, unix time, client)
        self._counts: dict[str, int] = {}
        # node id -> [new boot began at, first ipxe, script, kernel-booted, cloud-init, ready] since the last flush
        self._stages: dict[str, list[float]] = {}
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self.flushed_rows = 0
        self.last_flush_s = 0.0  # how long the last flush that wrote rows took (/metrics)
        self.last_error: str | None = None

    def record(self, node_id: str, endpoint: int, now: float, client: str) -> None:
        self._last[node_id] = (endpoint, now, client)
        self._counts[node_id] = self._counts.get(node_id, 0) + 1

    def record_stage(self, node_id: str, stage: int, now: float) -> None:
        """A request that shows `stage` (IPXE .. READY) of the node's boot."""
        marks = self._stages.get(node_id)
        if marks is None:
            marks = self._stages[node_id] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
            marks[stage] = now
        elif stage >= CLOUD_INIT or (stage == KERNEL_BOOTED and not marks[READY]):  # forward, or again: no new boot
            if not marks[stage]:
                marks[stage] = now
        elif (stage == KERNEL_BOOTED or marks[READY] or marks[CLOUD_INIT] or marks[KERNEL_BOOTED]
              or (stage == IPXE and marks[SCRIPT])):  # _step's new boot, spelled out: this runs per request
            marks = self._stages[node_id] = [now, 0.0, 0.0, 0.0, 0.0, 0.0]
            marks[stage] = now
        elif not marks[stage]:
            marks[stage] = now

    @property
    def pending(self) -> int:
        return len(self._last)

    @property
    def pending_stages(self) -> int:
        return len(self._stages)

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

    async def _due(self, force: bool) -> tuple[dict[str, tuple], dict[str, int]]:
        """Take out of the pending set what is due now; the rest waits for a later flush."""
        last, counts = self._last, self._counts
        self._last, self._counts = {}, {}
        if force or not self.node_interval_s:
            return last, counts
        now, interval, written_at = time.monotonic(), self.node_interval_s, self._written_at
        due_last, due_counts = {}, {}
        for n, node_id in enumerate(list(last)):
            if now - written_at.get(node_id, -interval) >= interval:
                due_last[node_id] = last.pop(node_id)
                due_counts[node_id] = counts.pop(node_id)
            if n % FLUSH_SLICE == FLUSH_SLICE - 1:
                await asyncio.sleep(0)  # let requests through while a large set is sorted
        # Requests that arrived meanwhile go on top of what stays pending.
        for node_id, value in self._last.items():
            last[node_id] = value
            counts[node_id] = counts.get(node_id, 0) + self._counts[node_id]
        self._last, self._counts = last, counts
        return due_last, due_counts

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await db.connect(self.dsn, timeout=5)
        return self._conn

    def _lost_connection(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def flush_stages(self) -> int:
        """Every node's stage events since the last flush, in one call (a few events a node a boot: no
        per-node interval here).  Returns the nodes written; kept and merged if the database is away."""
        self._stages_flushed_at = time.monotonic()
        if not self._stages:
            return 0
        pending, self._stages = self._stages, {}
        # One row per node, a column per mark (None where absent): the merge is set-based, per node.
        began, ipxe, script, kernel, cloud_init, ready = ([at or None for at in column]
                                                          for column in zip(*pending.values(), strict=True))
        try:
            written = await (await self._connection()).fetchval(
                _APPLY_STAGES, list(pending), began, [None] * len(pending), ipxe, script, kernel, cloud_init, ready)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self._lost_connection(exc)
            log.warning("boot stages: could not write %d nodes (%s); keeping them", len(pending), self.last_error)
            # Older events first, then what arrived meanwhile on top, through the same rules.
            for node_id, newer in self._stages.items():
                marks = pending.setdefault(node_id, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
                for stage, at in sorted(((s, t) for s, t in enumerate(newer) if t), key=lambda e: (e[1], e[0])):
                    _step(marks, -1 if stage == _NEW_BOOT else stage, at)
            self._stages = pending
            return 0
        return written

    async def flush(self, force: bool = False) -> int:
        """Write what is due (everything when `force`, as on stop); returns the telemetry rows written."""
        if force or time.monotonic() - self._stages_flushed_at >= self.stages_interval_s:
            await self.flush_stages()
        if not self._last:
            return 0
        last, counts = await self._due(force)
        if not last:
            return 0
        ids = list(last)
        written = 0
        started = time.perf_counter()
        try:
            conn = await self._connection()
            # In slices: encoding one slice is short, and the await between slices
            # lets the boot path answer requests while a large flush goes out.
            for start in range(0, len(ids), FLUSH_SLICE):
                part = ids[start:start + FLUSH_SLICE]
                values = [last[i] for i in part]
                await conn.execute(_UPSERT, part, [v[0] for v in values], [v[2] for v in values],
                                   [v[1] for v in values], [counts[i] for i in part])
                written += len(part)
                stamp = time.monotonic()
                for node_id in part:
                    self._written_at[node_id] = stamp
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self._lost_connection(exc)
            log.warning("boot telemetry: could not write %d rows (%s); keeping them", len(ids) - written,
                        self.last_error)
            # Put back what was not written, under anything newer that arrived meanwhile.
            for node_id in ids[written:]:
                if node_id not in self._last:
                    self._last[node_id] = last[node_id]
                self._counts[node_id] = self._counts.get(node_id, 0) + counts[node_id]
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
