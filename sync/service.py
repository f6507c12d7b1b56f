"""The life of a sync daemon: leadership by advisory lock, a wake-up channel, backoff.

Any number of replicas may run one job; the one holding the job's
PostgreSQL advisory lock (a session lock on its own connection) is active,
the others stand by and try again every few seconds.  If the active one
dies, its connection closes, the lock is released by PostgreSQL and a
standby takes over.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import os
import socket

import asyncpg

from core import db
from core.backoff import Backoff

log = logging.getLogger("chamicore.sync")


class JobState(enum.StrEnum):
    STARTING = "starting"
    STANDBY = "standby"
    ACTIVE = "active"
    STOPPED = "stopped"


def raise_if_cancelled() -> None:
    """Raise CancelledError if this task was cancelled and something swallowed the cancellation.

    Python 3.11's asyncio.wait_for returns a result that arrives in the same loop turn as a cancellation and drops
    the cancellation (nats-py waits for each publish's ack that way), and nats-py catches CancelledError outright in
    places; Task.cancelling() still counts the request.  Without this check a daemon told to stop carries on."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def lock_key(job: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"chamicore.sync.{job}".encode(), digest_size=8).digest(), "big", signed=True)


class Job:
    """Subclasses set `name`, `channel` (or None) and implement `work_once`."""

    name = "job"
    channel: str | None = None
    period_s = 30.0  # a full pass even without notifications: the safety net
    standby_retry_s = 2.0

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.state = JobState.STARTING
        self.last_error: str | None = None
        self.passes = 0
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = asyncio.Event()

    async def work_once(self, conn: asyncpg.Connection) -> bool:
        """Do one batch; return True if there may be more to do right away."""
        raise NotImplementedError

    async def activate(self) -> None:
        """Called when this replica becomes the active one, before its first pass: set up what the work needs."""

    async def deactivate(self) -> None:
        """Called when this replica stops being the active one: stop whatever work is still in flight,
        and release what activate() set up."""

    def counts(self) -> dict:
        """What this job reports in sync.status besides its state."""
        return {"passes": self.passes}

    async def report(self, conn: asyncpg.Connection, success: bool = False) -> None:
        """Write this replica's line of sync.status (`chamicore sync status` reads it)."""
        await conn.execute(
            """INSERT INTO sync.status AS s (job, instance, state, last_success, last_error, last_error_at, counts,
                                             updated_at)
               VALUES ($1, $2, $3, CASE WHEN $4 THEN now() END, $5, CASE WHEN $5::text IS NOT NULL THEN now() END,
                       $6, now())
               ON CONFLICT (job, instance) DO UPDATE SET state = excluded.state,
                   last_success = coalesce(excluded.last_success, s.last_success),
                   last_error = coalesce(excluded.last_error, s.last_error),
                   last_error_at = coalesce(excluded.last_error_at, s.last_error_at),
                   counts = excluded.counts, updated_at = now()""",
            self.name, self.instance, self.state.value, success, self.last_error, self.counts())

    async def _report_error(self) -> None:
        try:
            conn = await db.connect(self.dsn, timeout=2)
            try:
                await self.report(conn)
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            pass  # the database itself may be what failed

    async def run(self) -> None:
        backoff = Backoff(base=0.2, cap=10.0)
        while True:
            raise_if_cancelled()
            conn = None
            try:
                conn = await db.connect(self.dsn, timeout=5,
                                        server_settings={"application_name": f"chamicore-sync-{self.name}"})
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(self.name)):
                    if self.state != JobState.STANDBY:
                        log.info("%s: another replica is active; standing by", self.name)
                    self.state = JobState.STANDBY
                    await self.report(conn)
                    await conn.close()
                    conn = None
                    await asyncio.sleep(self.standby_retry_s)
                    continue
                log.info("%s: active", self.name)
                self.state = JobState.ACTIVE
                await self.activate()
                lost = await db.listen(conn, self.channel, self._wake)
                backoff.reset()
                while not lost.is_set():
                    raise_if_cancelled()
                    more = await self.work_once(conn)
                    self.passes += 1
                    self.last_error = None
                    await self.report(conn, success=True)
                    if more:
                        continue
                    try:
                        # asyncio.timeout, not wait_for: a wake-up coming with a cancellation must not drop it
                        async with asyncio.timeout(self.period_s):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                    self._wake.clear()
                raise ConnectionError("lost the database connection")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a daemon logs, backs off and carries on
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = backoff.next()
                log.warning("%s: %s; retrying in %.1f s", self.name, self.last_error, delay)
                await self._report_error()
                await asyncio.sleep(delay)
            finally:
                try:
                    if self.state == JobState.ACTIVE:
                        self.state = JobState.STARTING
                        await asyncio.shield(self.deactivate())
                finally:
                    # Even when a second cancellation interrupts the wait for deactivate() (which runs on).
                    if conn is not None:
                        conn.terminate()  # also releases the advisory lock
