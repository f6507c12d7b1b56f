"""The outbox relay: events.outbox rows to NATS JetStream, in order, none lost.

Rows are published oldest first (by seq) as CloudEvents 1.0 JSON on
`chamicore.<domain>.<resource>.<action>` in the stream CHAMICORE, with
`Nats-Msg-Id` set to the event id, and marked sent only after JetStream
acknowledged them.  If NATS is away the rows wait in the table; a publish
repeated after a crash is dropped by JetStream's duplicate window.

Against a NATS cluster the relay is given every server's URL and connects to
whichever answers; the stream should then have 3 replicas (a lost node loses
nothing).  A node lost mid-batch fails the pass; the next pass connects to
another node and publishes again what was not acknowledged, with the same
Nats-Msg-Id, so an event the lost node did store is not stored twice.
"""

from __future__ import annotations

import asyncio
import json
import logging

import asyncpg
import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from core import tracing
from core.config import nats_servers
from sync.service import Job, raise_if_cancelled

log = logging.getLogger("chamicore.sync.outbox")

STREAM = "CHAMICORE"
SUBJECTS = ["chamicore.>"]
BATCH = 500


def cloud_event(row) -> bytes:
    return json.dumps({
        "specversion": "1.0",
        "id": str(row["id"]),
        "source": row["source"],
        "type": row["type"],
        "subject": row["subject"],
        "time": row["time"].isoformat().replace("+00:00", "Z"),
        "datacontenttype": row["datacontenttype"],
        "data": row["data"],
    }, separators=(",", ":")).encode()


CLOSE_TIMEOUT_S = 2.0


async def _nats_error(exc: Exception) -> None:
    # nats-py logs a traceback at ERROR for each server of a cluster's list that refuses a connect; the relay's own
    # warning says whether the pass failed, so one line here.
    log.info("NATS: %s: %s", type(exc).__name__, exc)


def _fail_waiting_acks(nc: NATS) -> None:
    """Fail at once the requests still waiting on a connection that has closed.

    nats-py leaves them waiting out their whole timeout (5 s for a publish's ack) though no answer can come on a
    closed connection: a server lost mid-batch then cost 5 s before the relay moved to another one.  (nats-py keeps
    them in a private map; without it, as in another version, they time out as before.)"""
    for future in list(getattr(nc, "_resp_map", {}).values()):
        if not future.done():
            future.set_exception(nats.errors.ConnectionClosedError())


class OutboxRelay(Job):
    name = "outbox"
    channel = "chamicore_outbox"
    period_s = 5.0

    def __init__(self, dsn: str, nats_url: str, retention_s: int = 7 * 86400, stream_replicas: int = 1) -> None:
        super().__init__(dsn)
        self.nats_servers = nats_servers(nats_url)
        self.stream_replicas = stream_replicas
        self.retention_s = retention_s
        self.published = 0
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None  # set and cleared together with _nc

    async def _jetstream(self) -> JetStreamContext:
        if self._nc is None or self._js is None or self._nc.is_closed or not self._nc.is_connected:
            if self._nc is not None:
                await self._close()
            # Fail at once when NATS is away: nats-py's connect tries a server again (every reconnect_time_wait)
            # until it has failed more than max_reconnect_attempts times, and forever when that is 0.  The count is
            # per server: with a cluster's list it goes round the servers (in random order) and takes the first
            # that answers, and fails only when each one has refused twice.
            nc = NATS()

            async def closed() -> None:
                _fail_waiting_acks(nc)

            await nc.connect(servers=self.nats_servers, connect_timeout=2, max_reconnect_attempts=1,
                             reconnect_time_wait=0, allow_reconnect=False, error_cb=_nats_error, closed_cb=closed)
            self._nc = nc
            self._js = self._nc.jetstream(timeout=5)
            try:
                await self._js.add_stream(StreamConfig(name=STREAM, subjects=SUBJECTS,
                                                       num_replicas=self.stream_replicas))
            except nats.js.errors.BadRequestError:
                pass  # exists already (perhaps with settings an operator chose): keep it
        return self._js

    async def deactivate(self) -> None:
        """Stopped or no longer active: close the NATS connection (bounded) and its background tasks with it."""
        await self._close()

    async def _close(self) -> None:
        if self._nc is not None:
            try:
                # Bounded: closing flushes what is buffered, which waits forever on a server that is gone.
                # (asyncio.timeout, not wait_for: a close finishing with a cancellation must not drop it.)
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self._nc.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; it is gone either way
                pass
        self._nc = self._js = None

    async def work_once(self, conn: asyncpg.Connection) -> bool:
        rows = await conn.fetch(
            "SELECT seq, id, source, type, subject, time, datacontenttype, data, traceparent FROM events.outbox "
            "WHERE sent_at IS NULL ORDER BY seq LIMIT $1", BATCH)
        sent: list[int] = []
        try:
            if rows:
                js = await self._jetstream()
                for row in rows:
                    headers = {"Nats-Msg-Id": str(row["id"])}
                    with tracing.publishing(row["type"], row["traceparent"], headers):  # W3C traceparent header
                        await js.publish(row["type"], cloud_event(row), stream=STREAM, headers=headers)
                    sent.append(row["seq"])
                    raise_if_cancelled()  # nats-py may have dropped a cancellation that came with the ack
        except Exception:
            # Keep what did get through, then let the service back off and retry the rest.
            if self._nc is not None:
                await self._close()
            raise
        finally:
            if sent:
                await self._mark(conn, sent)
        await conn.execute("DELETE FROM events.outbox WHERE sent_at < now() - make_interval(secs => $1)",
                           self.retention_s)
        return len(rows) == BATCH

    def counts(self) -> dict:
        return {"passes": self.passes, "published": self.published}

    async def _mark(self, conn: asyncpg.Connection, seqs: list[int]) -> None:
        await conn.execute("UPDATE events.outbox SET sent_at = now() WHERE seq = ANY($1::bigint[])", seqs)
        self.published += len(seqs)
