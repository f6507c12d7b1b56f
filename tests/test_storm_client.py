"""The boot-storm client of bench/ against a real boot server (small, so it runs in CI)."""

import msgspec
import pytest

from bench import fleet
from bench.storm import run_storm


@pytest.mark.parametrize("ramp", [None, 0.3])
async def test_storm_counts_every_answer(conn, boot_server, ramp):
    await fleet.seed(conn, 60)
    server = boot_server()
    result = await run_storm("127.0.0.1", server.port, nodes=80, registered=60, timeout=10, ramp=ramp)
    summary = result.summary()
    assert summary["errors"] == 0, summary["error_samples"]
    assert summary["answered_connections"] == 80
    assert summary["requests"] == 60 * 4 + 20 * 2  # known: script + 3 documents; unknown: script + retry
    if ramp:
        # Asks spread uniformly over the ramp: the last of 80 comes near its end.
        assert summary["held_connections"] == 80 and summary["duration_s"] >= ramp * 0.8


async def test_storm_reports_refused_connections():
    result = await run_storm("127.0.0.1", 1, nodes=5, registered=5, timeout=2)
    assert result.errors == 5 and result.answered_connections == 0
    assert "ConnectionRefusedError" in result.error_samples[0] or "OSError" in result.error_samples[0]


async def test_storm_counts_wrong_answers(conn, boot_server):
    await fleet.seed(conn, 20)
    server = boot_server()

    def check(node: int, number: int, body: bytes) -> bool:
        if node == 7 and number == 2:
            return False  # node 7's meta-data judged wrong on purpose: counted, and the node not answered
        if number == 0:
            return f"hostname=node-{node} ".encode() in body
        if number == 2:
            return msgspec.json.decode(body)["local-hostname"] == f"node-{node}"
        return body.startswith(b"#cloud-config")

    result = await run_storm("127.0.0.1", server.port, nodes=20, registered=20, timeout=10, check=check)
    assert (result.wrong, result.errors, result.answered_connections) == (1, 0, 19), result.error_samples
    assert "node 7, request 2" in result.error_samples[0]
