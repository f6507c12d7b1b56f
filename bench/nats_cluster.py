"""The outbox relay against one NATS server and against a three-node JetStream cluster (stream replicas 3).

    python -m bench.nats_cluster [--events 5000] [--rounds 3]

Throughput: a burst of `--events` outbox rows relayed to one server (stream replicas 1) and to the cluster
(replicas 3), the two alternating in each round so that the machine's load falls on both; events/s from the
relay's start to the last row marked sent.  Failover: in each round, the relay's server is SIGKILLed in the
middle of a batch (1250 events stored), once while it leads the stream and once while another node does; the figures are the time from
the kill until the relay's pass fails (at once when the lost connection fails the publish in flight, else its
5 s ack timeout), until a new pass through another node has marked a batch of 500 sent (reconnect, and the
stream's election when the leader died), until the burst is drained, and the stream's count and distinct ids
(every event, none twice).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig

from bench.bootstorm import RESULTS, ROOT, free_port
from core import db, events, migrate
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir
from sync.outbox import STREAM, OutboxRelay
from tests.helpers.natscluster import NatsCluster, move_leader, stored_count

KILL_AFTER = 1250  # events in the stream: mid-batch (the relay marks rows sent after each batch of 500)


async def sent_count(conn) -> int:
    return await conn.fetchval("SELECT count(*) FROM events.outbox WHERE sent_at IS NOT NULL")


async def burst(conn, count: int) -> None:
    await conn.execute("DELETE FROM events.outbox")
    await conn.execute("DELETE FROM sync.status WHERE job = 'outbox'")
    await events.emit_many(conn, "smd", "components", "updated", [f"node-{i % 97}" for i in range(count)],
                           [{"n": i} for i in range(count)])


async def until(predicate, timeout: float = 120) -> float:
    """Poll every 10 ms; the moment it became true."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the relay did not get there in time")
        await asyncio.sleep(0.01)
    return time.monotonic()


async def stored(urls: list[str]) -> tuple[int, int]:
    """(messages in the stream, distinct event ids among them), read to the end by a pull consumer."""
    nc = await nats.connect(servers=urls)
    js = nc.jetstream(timeout=10)
    total = (await js.stream_info(STREAM)).state.messages
    subscription = await js.pull_subscribe("chamicore.>", durable=None, stream=STREAM,
                                           config=ConsumerConfig(ack_policy=AckPolicy.NONE))  # a read, no acks
    ids: list[str] = []
    try:
        while len(ids) < total:
            for message in await subscription.fetch(min(1000, total - len(ids)), timeout=10):
                ids.append(json.loads(message.data)["id"])
    finally:
        await nc.close()
    return len(ids), len(set(ids))


async def throughput(dsn: str, conn, size: int, replicas: int, count: int) -> float:
    cluster = NatsCluster(size).start()
    try:
        await burst(conn, count)
        relay = OutboxRelay(dsn, ",".join(cluster.urls), stream_replicas=replicas)
        started = time.monotonic()
        task = asyncio.create_task(relay.run())
        try:
            finished = await until(lambda: _all_sent(conn, count))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if await stored(cluster.urls) != (count, count):
            raise AssertionError("the stream does not hold every event once")
        return count / (finished - started)
    finally:
        cluster.stop()


async def failover(dsn: str, conn, count: int, leader: bool) -> dict:
    """Kill the relay's server, which leads the stream (`leader`: a reconnect and an election) or does not (a
    reconnect only)."""
    cluster = NatsCluster(3).start()
    try:
        await burst(conn, 1)
        relay = OutboxRelay(dsn, ",".join(cluster.urls), stream_replicas=3)
        task = asyncio.create_task(relay.run())
        observer = await nats.connect(servers=cluster.urls)
        try:
            await until(lambda: _all_sent(conn, 1))
            assert relay._nc is not None and relay._nc.connected_url is not None
            victim = cluster.name_of(relay._nc.connected_url.port)
            await move_leader(observer, STREAM, victim if leader else next(n for n in cluster.names if n != victim))
            await events.emit_many(conn, "smd", "components", "updated", [f"node-{i % 97}" for i in range(1, count)],
                                   [{"n": i} for i in range(1, count)])
            await until(lambda: _stored_at_least(observer.jetstream(), KILL_AFTER))
            killed = time.monotonic()
            cluster.kill(victim)
            noticed = await until(lambda: _failed(relay))  # the pass failed (the rows it got acks for are marked)
            after_failure = await sent_count(conn)
            resumed = await until(lambda: _sent_at_least(conn, after_failure + 1))  # a new pass marked a batch
            drained = await until(lambda: _all_sent(conn, count))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await observer.close()
        messages, distinct = await stored([cluster.url(name) for name in cluster.names if name != victim])
        return {"failed_pass_after_s": round(noticed - killed, 2), "next_batch_marked_after_s": round(resumed - killed, 2),
                "drained_after_s": round(drained - killed, 2), "stream_messages": messages,
                "distinct_ids": distinct, "events": count}
    finally:
        cluster.stop()


async def _stored_at_least(js, count: int) -> bool:
    return await stored_count(js, STREAM) >= count


async def _failed(relay: OutboxRelay) -> bool:
    return relay.last_error is not None


async def _all_sent(conn, count: int) -> bool:
    return await sent_count(conn) >= count


async def _sent_at_least(conn, count: int) -> bool:
    return await sent_count(conn) >= count


async def run(dsn: str, count: int, rounds: int) -> dict:
    conn = await db.connect(dsn)
    await migrate.migrate(conn)
    rates: dict[str, list[float]] = {"one server, replicas 1": [], "three-node cluster, replicas 3": []}
    kills: dict[str, list[dict]] = {"relay's server and stream leader": [], "relay's server, not the leader": []}
    try:
        for round_ in range(rounds):
            order = [(1, 1), (3, 3)] if round_ % 2 == 0 else [(3, 3), (1, 1)]
            for size, replicas in order:
                label = "one server, replicas 1" if size == 1 else "three-node cluster, replicas 3"
                rates[label].append(await throughput(dsn, conn, size, replicas, count))
            for label, leader in (("relay's server and stream leader", True), ("relay's server, not the leader", False)):
                kills[label].append(await failover(dsn, conn, count, leader))
    finally:
        await conn.close()
    return {
        "events": count, "rounds": rounds,
        "events_per_s": {label: {"median": round(statistics.median(values)), "all": [round(v) for v in values]}
                         for label, values in rates.items()},
        "node_killed": kills,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="events in each burst")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.events <= KILL_AFTER:
        parser.error(f"--events must exceed {KILL_AFTER} (the node is killed after {KILL_AFTER})")
    work = Path(tempfile.mkdtemp(prefix="chamicore-natsbench-", dir="/tmp"))
    work.chmod(0o711)  # the PostgreSQL service user must reach its cluster below
    cluster = EmbeddedPostgres(work / "pg", port=free_port(), bin_dir=pgserver_bin_dir() or system_bin_dir(),
                               durable=False)
    cluster.start()
    try:
        results = asyncio.run(run(cluster.dsn, args.events, args.rounds))
    finally:
        cluster.destroy()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "nats_cluster.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
