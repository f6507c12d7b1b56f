"""The change feed: keeps one worker's index in step with PostgreSQL.

LISTEN on `chamicore_boot` first, then load everything, so that no change
falls between the two.  An edit after a quiet spell is applied at once;
while notifications keep coming, applies are at least `coalesce_s` apart,
so a burst is gathered into a few batches.  A batch's touched nodes are
re-read in one snapshot and replaced in the live index node by node (a
full reload swaps in a new index whole).  On a lost connection the old
index keeps serving while the feed reconnects with backoff and reloads
everything (notifications may have been missed).  A cheap periodic
fingerprint check reloads when the database changed without telling us.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import json
import logging
import os
import time
from collections.abc import Callable

import asyncpg

from core import db, sdnotify, tracing
from core.backoff import Backoff
from hotpath import loader
from hotpath.answers import AnswerBuilder, NodeBatch, sign_entries
from hotpath.index import Index

log = logging.getLogger("chamicore.hotpath.feed")

CHANNEL = "chamicore_boot"
APPLICATION_NAME = "chamicore-boot-feed"
# Past this many touched nodes a full reload is cheaper than a targeted one.
FULL_RELOAD_THRESHOLD = 20_000
# Traces linked to one batch's span at most (a bulk import can carry thousands).
MAX_TRACES = 32


class FeedState(enum.StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


class _Pending:
    __slots__ = ("ids", "macs", "nids", "groups", "roles", "selectors", "full", "first_heard", "traces")

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.macs: set[str] = set()
        self.nids: set[int] = set()
        self.groups: set[str] = set()
        self.roles: set[str] = set()
        self.selectors: list[dict] = []  # of the profiles changed: the nodes they match (old and new) re-render
        self.full = False
        self.first_heard: float | None = None
        self.traces: list[str] = []  # the writers' traceparents, when they are traced

    def __bool__(self) -> bool:
        return self.full or bool(self.ids or self.macs or self.nids or self.groups or self.roles or self.selectors)


class ChangeFeed:
    def __init__(
        self,
        dsn: str,
        builder: AnswerBuilder,
        publish: Callable[[Index], None],
        get_index: Callable[[], Index],
        *,
        coalesce_s: float = 0.005,
        check_interval_s: float = 30.0,
        backoff_max_s: float = 5.0,
        query_timeout_s: float = 30.0,
    ) -> None:
        self.dsn = dsn
        # A statement that gets no answer (a backend killed under it, a network that drops packets)
        # must end in a reconnect, not leave the feed waiting forever while /readiness says live.
        self.query_timeout_s = query_timeout_s
        self.builder = builder
        self._publish = publish
        self._get_index = get_index
        self.coalesce_s = coalesce_s
        self.check_interval_s = check_interval_s
        self.backoff_max_s = backoff_max_s

        self.state = FeedState.CONNECTING
        self.ready = asyncio.Event()  # set after the first full load
        self.last_error: str | None = None
        self.full_reloads = 0
        self.partial_updates = 0
        self.notifications = 0
        self.last_lag_s: float | None = None  # first notification heard -> swapped in
        self.last_full_reload_s: float | None = None

        self._pending = _Pending()
        self._wake = asyncio.Event()
        self._lost = asyncio.Event()
        self._fingerprint: tuple | None = None
        self._heard_since_check = 0
        self._applied_at = float("-inf")  # when the last batch was applied (time.monotonic())
        self._task: asyncio.Task | None = None

    # -- lifecycle --------------------------------------------------------

    def start(self) -> asyncio.Task:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="chamicore-change-feed")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.state = FeedState.STOPPED

    async def run(self) -> None:
        backoff = Backoff(base=0.1, cap=self.backoff_max_s)
        while True:
            conn = None
            try:
                conn = await db.connect(self.dsn, timeout=5, command_timeout=self.query_timeout_s,
                                        server_settings={"application_name": APPLICATION_NAME})
                self._lost = await db.listen(conn, CHANNEL, self._wake, self._on_notify)
                self._pending = _Pending()
                await self._full_reload(conn)
                backoff.reset()
                self.state = FeedState.LIVE
                self.last_error = None
                await self._serve(conn)
            except asyncio.CancelledError:
                raise
            except db.DATABASE_ERRORS as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.state = FeedState.RECONNECTING if self.ready.is_set() else FeedState.CONNECTING
                delay = backoff.next()
                log.warning("change feed: %s; keeping the current index, retrying in %.2f s",
                            self.last_error, delay)
                await asyncio.sleep(delay)
            finally:
                if conn is not None:
                    conn.terminate()

    # -- notifications ----------------------------------------------------

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self.notifications += 1
        self._heard_since_check += 1
        pending = self._pending
        if pending.first_heard is None:
            pending.first_heard = time.perf_counter()
        try:
            if not isinstance(payload, str):  # asyncpg hands NOTIFY payloads over as text
                raise TypeError(f"a {type(payload).__name__} payload")
            message = json.loads(payload)
            if message.get("resync"):
                pending.full = True
            else:
                keys = message.get("keys") or {}
                pending.ids.update(keys.get("componentIds", ()))
                pending.macs.update(keys.get("macs", ()))
                pending.nids.update(int(nid) for nid in keys.get("nids", ()))
                pending.groups.update(keys.get("groups", ()))
                pending.roles.update(keys.get("roles", ()))
                for selector in keys.get("selectors", ()):
                    if not isinstance(selector, dict) or not selector:  # an empty selector matches every node
                        pending.full = True
                    elif selector not in pending.selectors:
                        pending.selectors.append(selector)
                if keys.get("site"):
                    pending.full = True
            trace = message.get("traceparent")
            if isinstance(trace, str) and len(pending.traces) < MAX_TRACES and trace not in pending.traces:
                pending.traces.append(trace)
        except (ValueError, AttributeError, TypeError):
            log.warning("change feed: unreadable notification %.200r; reloading everything", payload)
            pending.full = True

    async def _serve(self, conn: asyncpg.Connection) -> None:
        next_check = time.monotonic() + self.check_interval_s
        while True:
            timeout = max(0.0, next_check - time.monotonic())
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation (stop()) that lands in the
            # loop turn the wake does, and the feed would carry on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            if self._lost.is_set() or conn.is_closed():
                raise ConnectionError("lost the LISTEN connection to PostgreSQL")
            if self._wake.is_set():
                self._wake.clear()
                # At most one apply per coalesce_s: a lone edit goes out at once, a burst is gathered meanwhile.
                wait = self._applied_at + self.coalesce_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._apply_pending(conn)
                self._applied_at = time.monotonic()
            if time.monotonic() >= next_check:
                await self._check_drift(conn)
                next_check = time.monotonic() + self.check_interval_s

    async def _apply_pending(self, conn: asyncpg.Connection) -> None:
        pending, self._pending = self._pending, _Pending()
        if not pending:
            return
        # One span per batch applied (never per boot request), in the trace of the first change it carries.
        with tracing.span("feed apply", parent=pending.traces[0] if pending.traces else None,
                          links=pending.traces[1:], attributes={"chamicore.feed.full": pending.full,
                                                                "chamicore.feed.traced_changes": len(pending.traces)}):
            await self._apply(conn, pending)

    async def _apply(self, conn: asyncpg.Connection, pending: _Pending) -> None:
        if pending.full:
            await self._full_reload(conn)
        else:
            touched = set(pending.ids)
            if pending.ids or pending.roles or pending.groups or pending.macs or pending.nids:  # not a profile alone
                touched |= await loader.affected_components(conn, pending.ids, pending.roles, pending.groups,
                                                            pending.macs, pending.nids)
            if pending.selectors:
                touched |= await loader.selector_components(conn, pending.selectors)
            if len(touched) > FULL_RELOAD_THRESHOLD:
                await self._full_reload(conn)
            else:
                answers: list = []
                batch = self.builder.batch(self._get_index())
                await loader.load(conn, lambda rows, params, payloads: answers.extend(batch(rows, params, payloads)),
                                  sorted(touched), profiles=batch.use_profiles)
                await self._sign(batch)
                self._get_index().replace(touched, answers)
                self.partial_updates += 1
        if pending.first_heard is not None:
            self.last_lag_s = time.perf_counter() - pending.first_heard

    async def _full_reload(self, conn: asyncpg.Connection) -> None:
        started = time.perf_counter()
        index = Index()
        batch = self.builder.batch(self._get_index())
        # The build makes about ten objects per node and none of them form
        # cycles: pause the cyclic collector instead of letting it rescan the
        # growing index again and again.
        gc.disable()
        try:
            fingerprint = await loader.load(conn, lambda rows, params, payloads: index.add(batch(rows, params, payloads)),
                                            profiles=batch.use_profiles)
        finally:
            gc.enable()
        await self._sign(batch)
        self._fingerprint = fingerprint
        self._heard_since_check = 0
        self._publish(index)
        # Park the long-lived index outside the collector's generations, so a
        # collection during a boot storm does not walk a million objects.
        gc.freeze()
        self.full_reloads += 1
        self.last_full_reload_s = time.perf_counter() - started
        if not self.ready.is_set():
            sdnotify.notify(f"READY=1\nSTATUS=serving {len(index)} nodes")  # Type=notify units start here
        self.ready.set()
        log.info("change feed: loaded %d nodes (%d MACs) in %.3f s", len(index), index.mac_count,
                 self.last_full_reload_s)

    async def _sign(self, batch: NodeBatch) -> None:
        """Signs the scripts this batch rendered (CHAMICORE_BOOT_SIGNING_*) in worker threads, one share per
        CPU, before they are served; the current index keeps answering meanwhile."""
        signer = self.builder.signer
        if signer is not None:
            shares = batch.take_unsigned(len(os.sched_getaffinity(0)))
            await asyncio.gather(*(asyncio.to_thread(sign_entries, signer, share) for share in shares))

    async def _check_drift(self, conn: asyncpg.Connection) -> None:
        current = await loader.fingerprint(conn)
        heard = self._heard_since_check
        previous, self._fingerprint, self._heard_since_check = self._fingerprint, current, 0
        if previous is not None and current != previous and heard == 0:
            log.warning("change feed: the database changed without notifying; reloading everything")
            await self._full_reload(conn)
