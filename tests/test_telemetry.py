"""Boot telemetry batches: written in slices, kept (and merged) while the database is away."""

import time

from hotpath import telemetry
from hotpath.telemetry import BootTelemetry
from tests.helpers.seed import add_node


async def test_rows_wait_for_the_database_and_counts_add_up(conn, dsn, monkeypatch):
    monkeypatch.setattr(telemetry, "FLUSH_SLICE", 2)  # several slices per flush
    for i in range(5):
        await add_node(conn, f"n{i}")
    recorder = BootTelemetry("postgresql://postgres@127.0.0.1:1/nowhere")
    now = time.time()
    for i in range(5):
        recorder.record(f"n{i}", 0, now, "10.0.0.9:5000")
    recorder.record("gone", 0, now, "10.0.0.9:5000")  # a node deleted meanwhile: skipped, not an error
    assert await recorder.flush() == 0 and recorder.last_error and recorder.pending == 6
    recorder.record("n0", 2, now + 1, "[fe80::1]:68")  # newer request while the database was away
    recorder.dsn = dsn
    assert await recorder.flush() == 6 and recorder.pending == 0 and recorder.last_error is None
    rows = {r["component_id"]: r for r in await conn.fetch("SELECT * FROM bss.boot_telemetry")}
    assert set(rows) == {f"n{i}" for i in range(5)}
    assert rows["n0"]["requests"] == 2 and rows["n0"]["endpoint"] == "cloud-init"
    assert str(rows["n0"]["source_ip"]) == "fe80::1" and str(rows["n1"]["source_ip"]) == "10.0.0.9"
    assert abs(rows["n1"]["seen_at"].timestamp() - now) < 0.001
    await recorder.stop()


async def test_a_node_that_keeps_asking_is_written_once_per_interval(conn, dsn):
    for name in ("a", "b"):
        await add_node(conn, f"node-{name}")
    recorder = BootTelemetry(dsn, node_interval_s=3600)
    now = time.time()
    recorder.record("node-a", 0, now, "10.0.0.1:68")
    assert await recorder.flush() == 1  # a first request is written at the next flush
    for i in range(5):
        recorder.record("node-a", 2, now + 1 + i, "10.0.0.1:68")
    recorder.record("node-b", 0, now + 2, "10.0.0.2:68")
    assert await recorder.flush() == 1 and recorder.pending == 1  # node-b is new; node-a waits its turn
    assert await conn.fetchval("SELECT requests FROM bss.boot_telemetry WHERE component_id = 'node-a'") == 1
    await recorder.stop()  # on stop, everything pending is written
    row = await conn.fetchrow("SELECT requests, endpoint, seen_at FROM bss.boot_telemetry WHERE component_id = 'node-a'")
    assert row["requests"] == 6 and row["endpoint"] == "cloud-init"
    assert abs(row["seen_at"].timestamp() - (now + 5)) < 0.001


async def test_records_of_deleted_nodes_are_dropped_once_written(conn, dsn, monkeypatch):
    """A worker keeps one record per node that asked; a node deleted since (not in the index any more) loses its
    record at the next forget, once it has nothing left to write, and never while the worker loads."""
    for name in ("kept", "cloud-only", "gone", "gone-pending", "gone-staged"):
        await add_node(conn, name)
    served: list = [({"kept": 1}, {"cloud-only": 1})]
    recorder = BootTelemetry(dsn, known=lambda: served[0])
    now = time.time()
    for name in ("kept", "cloud-only", "gone", "gone-pending", "gone-staged"):
        recorder.record(name, 0, now, "10.0.0.1:68")
    assert await recorder.flush(force=True) == 5
    recorder.record("gone-pending", 0, now + 1, "10.0.0.1:68")  # a row still to write
    recorder.record_stage("gone-staged", telemetry.SCRIPT, now + 1)  # a stage still to write
    served[0] = None  # loading: nothing is known, nothing is dropped
    assert recorder.forget() == 0 and len(recorder.activity.nodes) == 5
    served[0] = ({"kept": 1}, {"cloud-only": 1})
    assert recorder.forget() == 1 and set(recorder.activity.nodes) == {"kept", "cloud-only", "gone-pending",
                                                                       "gone-staged"}
    # Once written, they go too (flush forgets every FORGET_EVERY_S, here at once).
    monkeypatch.setattr(telemetry, "FORGET_EVERY_S", 0.0)
    await recorder.flush(force=True)
    assert await recorder.flush(force=True) == 0 and set(recorder.activity.nodes) == {"kept", "cloud-only"}
    assert await conn.fetchval("SELECT requests FROM bss.boot_telemetry WHERE component_id = 'gone-pending'") == 2
    await recorder.stop()
