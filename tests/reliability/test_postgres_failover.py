"""PostgreSQL fails over under Chamicore: a primary and its streaming-replication standby, the primary killed
(`pg_ctl stop -m immediate`) and the standby promoted, with every service on the multi-host DSN
`postgresql://...@127.0.0.1:P1,127.0.0.1:P2/postgres?target_session_attrs=read-write`.

Replication is synchronous here (synchronous_standby_names = '*'): a commit a client saw succeed is on the
standby before the answer.  With asynchronous replication the last commits before a crash can be lost with the
old primary; that is PostgreSQL's window, not Chamicore's (the README says so).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import json
import threading
import time

import asyncpg
import httpx
import pytest

from bench import fleet
from bench.storm import run_storm
from core import db, events, migrate
from sync.outbox import OutboxRelay
from sync.service import JobState
from tests.helpers.exposition import families
from tests.helpers.paths import tmp_root
from tests.helpers.pgreplica import ReplicatedPair
from tests.helpers.servers import ServiceServer
from tests.helpers.tasks import stop_task
from tests.helpers.tokens import token_for
from tests.reliability.test_outbox_faults import nats_server, stream_messages  # noqa: F401 - a fixture

STORMED = 1200  # nodes 1..1200 boot in the storm
WATCHED = range(1201, 1241)  # asked in a loop, every answer checked, from before the crash to after the resync
IN_THE_GAP = range(1401, 1421)  # asked only while there is no primary: their telemetry waits in memory


@pytest.fixture
def pair():
    replicated = ReplicatedPair(tmp_root() / "pair").start()
    yield replicated
    replicated.destroy()


async def poll(predicate, timeout: float, what: str, interval: float = 0.05):
    """`predicate()` (a coroutine function) until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while not (value := await predicate()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(interval)
    return value


class Watcher:
    """Boot requests in a loop from a thread, each answer checked: the node's own script, never an error."""

    def __init__(self, server: ServiceServer) -> None:
        self.server = server
        self.answered = 0
        self.failures: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            for i in WATCHED:
                try:
                    status, _, body = self.server.get(f"/boot/v1/bootscript?mac={fleet.mac_of(i)}")
                except OSError as exc:
                    self.failures.append((i, repr(exc)))
                    continue
                if status != 200 or not body.startswith(b"#!ipxe") or f"nid={i} ".encode() not in body:
                    self.failures.append((i, status, body[:120]))
                self.answered += 1

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


async def test_boot_path_and_admin_api_ride_out_a_failover(pair):
    dsn = pair.dsn()
    conn = await db.connect(dsn)
    await migrate.migrate(conn)
    await fleet.seed(conn, 1500)
    await conn.close()
    boot = ServiceServer(dsn, "rsgi").start(timeout=60)
    admin = ServiceServer(dsn, service="admin").start(timeout=60)
    try:
        token = await token_for(admin.url, dsn)
        async with httpx.AsyncClient(base_url=admin.url, timeout=10,
                                     headers={"Authorization": f"Bearer {token}"}) as api:
            statuses: list[int] = []

            async def patch_kernel(kernel: str) -> httpx.Response:
                response = await api.patch("/boot/v1/bootparams/compute", json={"spec": {"kernel": kernel}})
                statuses.append(response.status_code)
                return response

            assert (await patch_kernel("http://images/before")).status_code == 200
            with Watcher(boot) as watcher:
                await poll(lambda: _true(watcher.answered >= 40), 20, "the watcher's first answers")

                # A read and a write in flight when the primary dies (held on a lock until then) are 503s too.
                locker = await db.connect(dsn)
                await locker.execute("BEGIN; LOCK TABLE bss.boot_params IN ACCESS EXCLUSIVE MODE")
                in_flight = [asyncio.create_task(patch_kernel("http://images/in-flight")),
                             asyncio.create_task(api.get("/boot/v1/bootparams/compute"))]
                # Watched from another connection: inside the locker's transaction pg_stat_activity would stay
                # the snapshot its first read took (PostgreSQL keeps it until the transaction ends).
                observer = await db.connect(dsn)
                await poll(lambda: _true_async(observer.fetchval(
                    "SELECT count(*) >= 2 FROM pg_stat_activity WHERE application_name = 'chamicore-admin' "
                    "AND wait_event_type = 'Lock'")), 30, "the admin requests waiting on the lock")
                await observer.close()

                storm_task = asyncio.create_task(run_storm("127.0.0.1", boot.port, nodes=STORMED,
                                                           registered=STORMED, timeout=60, ramp=8.0))
                storm_ended: list[float] = []
                storm_task.add_done_callback(lambda _: storm_ended.append(time.monotonic()))
                # Mid-storm: the kill comes once the storm's nodes have asked for some of their cloud-init data.
                await poll(lambda: asyncio.to_thread(_cloud_init_answers, boot, 300), 60, "the storm under way")
                pair.kill_primary()
                killed = time.monotonic()
                locker.terminate()
                for request in in_flight:
                    answer = await request
                    assert answer.status_code == 503 and "retry-after" in answer.headers, answer.text
                # No primary: the admin API says so (503, Retry-After, a problem), never a 500.
                gap = await poll(lambda: _is_503(patch_kernel("http://images/in-the-gap")), 20,
                                 "a 503 from the admin API while there is no primary")
                assert gap.headers["content-type"].startswith("application/problem+json")
                assert int(gap.headers["retry-after"]) > 0 and gap.json()["status"] == 503
                read = await api.get("/boot/v1/bootparams/compute")
                assert read.status_code == 503 and "retry-after" in read.headers
                # Nodes that boot now are answered from memory; their telemetry can only be kept.
                for i in IN_THE_GAP:
                    status, _, body = boot.get(f"/boot/v1/bootscript?mac={fleet.mac_of(i)}")
                    assert status == 200 and f"nid={i} ".encode() in body

                await asyncio.to_thread(pair.promote)
                promoted = time.monotonic()
                accepted = await poll(lambda: _is_ok(patch_kernel("http://images/after-failover")), 30,
                                      "an admin write after the promotion", interval=0.02)
                write_s = time.monotonic() - promoted
                assert accepted.json()["spec"]["kernel"] == "http://images/after-failover"
                assert 500 not in statuses and set(statuses) <= {200, 503}, statuses

                # The feed found the new primary, resynced, and hears its notifications.
                await poll(lambda: asyncio.to_thread(_boots_with, boot, 1, b"http://images/after-failover"), 30,
                           "the edit made after the promotion on the boot path")
                feed_s = time.monotonic() - promoted
                summary = (await storm_task).summary()
            assert watcher.failures == [], watcher.failures[:5]
            assert summary["errors"] == 0, summary["error_samples"]
            assert summary["answered_connections"] == STORMED and summary["requests"] == STORMED * 4
            assert storm_ended[0] > promoted, "the storm ended before the failover was over"

            # Telemetry of the boots in the gap reached the new primary once it could.
            new_primary = await db.connect(dsn)
            try:
                gap_ids = [f"node-{i}" for i in IN_THE_GAP]
                await poll(lambda: _true_async(new_primary.fetchval(
                    "SELECT count(*) = $2 FROM bss.boot_telemetry WHERE component_id = ANY($1::text[])",
                    gap_ids, len(gap_ids))), 20, "the gap's boot telemetry on the new primary")
                assert await new_primary.fetchval("SELECT pg_is_in_recovery()") is False
            finally:
                await new_primary.close()
        print(f"\nfailover: no primary for {promoted - killed:.2f} s; admin writes accepted {write_s:.2f} s after the "
              f"promotion, "
              f"the boot path serving the edit {feed_s:.2f} s after it; watcher {watcher.answered} answers, "
              f"storm {summary['requests']} requests, 0 errors")
    finally:
        boot.stop()
        admin.stop()


async def _true(value) -> bool:
    return bool(value)


async def _true_async(awaitable) -> bool:
    return bool(await awaitable)


async def _is_503(response) -> httpx.Response | None:
    answer = await response
    return answer if answer.status_code == 503 else None


async def _is_ok(response) -> httpx.Response | None:
    answer = await response
    return answer if answer.status_code == 200 else None


def _cloud_init_answers(server: ServiceServer, at_least: int) -> bool:
    requests = families(server.get("/metrics")[2])["chamicore_boot_requests"]
    return sum(sample.value for sample in requests.samples
               if sample.name.endswith("_total") and sample.labels["endpoint"] == "cloud-init") >= at_least


def _boots_with(server: ServiceServer, i: int, expected: bytes) -> bool:
    return expected in server.get(f"/boot/v1/bootscript?mac={fleet.mac_of(i)}")[2]


class EventWriter:
    """Outbox events committed one by one, as admin edits commit them; each either acknowledged (the commit
    returned) or uncertain (the connection died during the statement: committed or not, the client cannot know)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.acked: list[str] = []
        self.uncertain: list[str] = []
        self.failed_connects = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        conn = None
        n = 0
        while not self.stop.is_set():
            if conn is None:
                try:
                    conn = await db.connect(self.dsn, timeout=5)
                except OSError:
                    self.failed_connects += 1
                    await asyncio.sleep(0.05)  # pacing the retries while there is no primary
                    continue
            subject = f"event-{n}"
            n += 1
            try:
                await events.emit(conn, "smd", "components", "updated", subject, {"n": n})
                self.acked.append(subject)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                self.uncertain.append(subject)
                conn.terminate()
                conn = None
        if conn is not None:
            await conn.close()


async def test_sync_daemons_reelect_and_the_relay_delivers_every_event_once(pair, nats_server):  # noqa: F811
    dsn = pair.dsn()
    conn = await db.connect(dsn)
    await migrate.migrate(conn)
    await conn.close()
    relays = [OutboxRelay(dsn, nats_server.url) for _ in range(2)]  # two replicas of the sync daemon
    for n, relay in enumerate(relays):
        relay.instance += f"/replica-{n}"
        relay.standby_retry_s = 0.2
    writer = EventWriter(dsn)
    tasks = [asyncio.create_task(job.run()) for job in (*relays, writer)]

    def active() -> list[OutboxRelay]:
        return [relay for relay in relays if relay.state == JobState.ACTIVE]

    try:
        await poll(lambda: _true(len(active()) == 1 and len(writer.acked) >= 200 and active()[0].published >= 50),
                   30, "one active relay publishing")
        pair.kill_primary()
        await poll(lambda: _true(not active()), 20, "the relays noticing that the primary is gone")
        await poll(lambda: _true(writer.failed_connects > 0), 20, "a writer finding no primary")

        await asyncio.to_thread(pair.promote)
        promoted, promoted_at = time.monotonic(), datetime.datetime.now(datetime.UTC)
        await poll(lambda: _true(len(active()) == 1), 30, "a relay active on the new primary", interval=0.02)
        elected_s = time.monotonic() - promoted
        written_before = len(writer.acked)
        await poll(lambda: _true(len(writer.acked) >= written_before + 200), 30, "events written after the promotion")
        writer.stop.set()
        await tasks.pop()

        new_primary = await db.connect(dsn)
        try:
            await poll(lambda: _true_async(new_primary.fetchval(
                "SELECT count(*) = 0 FROM events.outbox WHERE sent_at IS NULL")), 30, "the outbox drained")
            # Both replicas report from the new primary: one active, one standing by.
            leader, = active()
            await poll(lambda: _true_async(new_primary.fetchval(
                "SELECT array_agg(state ORDER BY state) = '{active,standby}' FROM sync.status WHERE job = 'outbox' "
                "AND updated_at > $1", promoted_at)), 20, "both replicas reporting on the new primary")
        finally:
            await new_primary.close()
    finally:
        for task in tasks:
            await stop_task(task)

    messages = await stream_messages(nats_server.url)
    subjects = [json.loads(m.data)["subject"] for m in messages]
    twice = [s for s, count in collections.Counter(subjects).items() if count > 1]
    assert twice == [], f"delivered more than once: {twice[:10]}"
    assert len({m.headers["Nats-Msg-Id"] for m in messages}) == len(messages)
    assert [m.metadata.sequence.stream for m in messages] == list(range(1, len(messages) + 1))
    missing = set(writer.acked) - set(subjects)
    assert not missing, f"{len(missing)} acknowledged events never reached NATS: {sorted(missing)[:10]}"
    unexplained = set(subjects) - set(writer.acked) - set(writer.uncertain)
    assert not unexplained, unexplained
    print(f"\nfailover: a relay active on the new primary {elected_s:.2f} s after the promotion (leader "
          f"{leader.instance}); {len(writer.acked)} acknowledged events, {len(writer.uncertain)} uncertain, "
          f"{len(messages)} messages, none twice, none missing")



async def test_no_primary_and_a_frozen_primary_are_connection_errors_until_the_standby_is_found(pair):
    """Mid-failover every host may answer as a standby: a ConnectionError (retried like a lost database) for a
    connection and a pool alike, not asyncpg's internal error (which the feed and the admin API do not expect).
    Then a first host that accepts TCP and never answers: each host gets the connect timeout of its own (asyncpg
    alone spends it all on the first host and never reaches the second)."""
    standby_only = f"postgresql://postgres@127.0.0.1:{pair.standby.port}/postgres?target_session_attrs=read-write"
    with pytest.raises(db.NoPrimaryError):
        await db.connect(standby_only, timeout=5)
    pool = await db.create_pool(standby_only, min_size=0)
    try:
        with pytest.raises(ConnectionError):
            async with pool.acquire():
                pass
    finally:
        await pool.close()

    pair.freeze_primary()
    try:
        await asyncio.to_thread(pair.promote)
        started = time.monotonic()
        conn = await db.connect(pair.dsn(), timeout=2)
        try:
            assert await conn.fetchval("SELECT inet_server_port()") == pair.standby.port
            assert await conn.fetchval("SELECT pg_is_in_recovery()") is False
        finally:
            await conn.close()
        assert time.monotonic() - started < 10
        pool = await db.create_pool(pair.dsn(), min_size=1, timeout=2)
        try:
            assert await pool.fetchval("SELECT inet_server_port()") == pair.standby.port
        finally:
            await pool.close()
    finally:
        pair.freeze_primary(resume=True)
