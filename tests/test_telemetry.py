"""Boot telemetry batches: written in slices, kept (and merged) while the database is away."""

import time

from hotpath import telemetry
from hotpath.telemetry import BootTelemetry
from tests.seed import add_node


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
