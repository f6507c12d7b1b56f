"""Live pages: the database's NOTIFY channels, relayed to browsers as server-sent events.

One LISTEN connection per admin process, whatever the number of open pages.
Each browser gets the names of the topics that changed (never their data: a
page asks for what it shows through the REST operations, with its own
scopes).  A topic is announced to every page at once, at most once every
INTERVAL_S (boot telemetry: every 2 s, as the boot path flushes it), so a
boot storm of 10,000 nodes costs the console one refresh of what shows it
every 2 s, shared by all the pages open (console/dashboard.py SharedLoads).  The boot path
itself does nothing for this: its telemetry flush already writes to the
database, and a trigger there notifies (migration 0016).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import asyncpg

from core import db
from core.backoff import Backoff

log = logging.getLogger("chamicore.admin.console")
# NOTIFY channel -> the topic a page subscribes to.
CHANNELS = {
    "chamicore_boot": "inventory",        # components, interfaces, groups, boot parameters, payloads (the feed)
    "chamicore_telemetry": "boot",        # the boot path's batch of nodes seen
    "chamicore_outbox": "events",         # every change event, audit-worthy or not
    "chamicore_discovery": "discovery",   # scans requested or cancelled
    "chamicore_discovery_progress": "discovery",  # scans and their hosts moving along (migration 0018)
    "chamicore_power": "power",           # transitions requested or aborted
    "chamicore_power_progress": "power",  # transitions and their tasks moving along (migration 0018)
    "chamicore_auth": "auth",             # keys, revocations
}
TOPICS = frozenset(CHANNELS.values())
COALESCE_S = 0.5  # a page's stream gathers the topics announced within this into one batch
INTERVAL_S = {"boot": 2.0}  # least time between two announcements of a topic; others: COALESCE_S
KEEPALIVE_S = 15.0  # a comment line, so proxies do not close an idle stream
MAX_LISTENERS = 1000  # browsers per admin process; the next one is told to retry


class LiveHub:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._listeners: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task | None = None
        # How many times each topic changed: what pages computed for one version can be shared by all of them.
        self.versions: dict[str, int] = dict.fromkeys(TOPICS, 0)
        self.shared_loads: dict[tuple, tuple] = {}  # what pages computed, by version (console/dashboard.py)
        self._announced: dict[str, float] = {}
        self._due: set[str] = set()
        self.connected = asyncio.Event()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LiveHub]:
        self._task = asyncio.create_task(self._listen(), name="chamicore-console-live")
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def full(self) -> bool:
        return len(self._listeners) >= MAX_LISTENERS

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[str]]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=len(TOPICS) * 4)
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)

    def notify(self, topic: str) -> None:
        """A NOTIFY for `topic`: announced now, or once its interval since the last announcement has passed."""
        if topic in self._due:
            return
        loop = asyncio.get_running_loop()
        wait = self._announced.get(topic, -1e9) + INTERVAL_S.get(topic, COALESCE_S) - loop.time()
        if wait <= 0:
            self.publish(topic)
        else:
            self._due.add(topic)
            loop.call_later(wait, self._announce_due, topic)

    def _announce_due(self, topic: str) -> None:
        self._due.discard(topic)
        self.publish(topic)

    def publish(self, topic: str) -> None:
        self._announced[topic] = asyncio.get_running_loop().time()
        self.versions[topic] += 1
        for queue in self._listeners:
            if topic not in queue._queue:  # type: ignore[attr-defined]  # already pending: one is enough
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(topic)

    async def _listen(self) -> None:
        backoff = Backoff(base=0.2, cap=5.0)
        while True:
            try:
                await self._listen_once(backoff)
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError, TimeoutError) as exc:
                self.connected.clear()
                delay = backoff.next()
                log.warning("console live updates: %s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    async def _listen_once(self, backoff: Backoff) -> None:
        conn = await db.connect(self.dsn, timeout=5, server_settings={"application_name": "chamicore-console-live"})
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            for channel, topic in CHANNELS.items():
                await conn.add_listener(channel, lambda *_args, topic=topic: self.notify(topic))
            self.connected.set()
            backoff.reset()
            for topic in TOPICS:  # whatever changed while no one listened
                self.publish(topic)
            await lost.wait()
            raise ConnectionError("the console's LISTEN connection was lost")
        finally:
            conn.terminate()
