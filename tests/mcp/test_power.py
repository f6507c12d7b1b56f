"""A power transition made through MCP, executed by the real power engine against sushy-tools' Redfish
emulator, followed with power.transitions.wait and its progress notifications."""

from __future__ import annotations

import pytest

from tests.admin.test_power import SYSTEMS, engine, inventory
from tests.helpers.redfish import RedfishEmulator
from tests.helpers.tasks import running
from tests.helpers.tokens import token_for
from tests.mcp.conftest import READ_WRITE


@pytest.fixture
def emulator():
    server = RedfishEmulator(SYSTEMS).start()
    yield server
    server.close()


async def test_a_transition_made_through_mcp_runs_and_wait_reports_progress(admin_server_rw, rest, connect,
                                                                             transport, dsn, conn, emulator):
    await inventory(rest, emulator)
    token = await token_for(admin_server_rw.url, dsn, "agent", ["operator"])
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with running(engine(dsn)), connect(admin_server_rw, token, **READ_WRITE) as session:
        off = await session.call_tool("power.transitions.create", {"operation": "ForceOff", "nodes": ["node-3"]})
        assert off.is_error and off.structured_content["problem"]["status"] == 428
        started = await session.call_tool("power.transitions.create", {"operation": "On", "nodes": ["node-1"]})
        assert not started.is_error, started
        transition_id = started.structured_content["id"]
        waited = await session.call_tool("power.transitions.wait", {"id": transition_id, "timeoutS": 90},
                                         progress_callback=on_progress)
    assert not waited.is_error, waited
    assert waited.structured_content["done"] is True
    transition = waited.structured_content["transition"]
    assert transition["counts"] == {"total": 1, "succeeded": 1}, transition
    assert transition["tasks"][0]["detail"] == "reached On"
    assert emulator.power_state(SYSTEMS[0]["uuid"]) == "On"  # done at the BMC itself
    assert emulator.power_state(SYSTEMS[2]["uuid"]) == "On"  # the unconfirmed ForceOff did nothing
    assert progress and progress[-1][:2] == (1, 1) and "completed" in progress[-1][2]
    assert all(total == 1 for _, total, _ in progress)
    rows = await conn.fetch("SELECT action, status, detail FROM auth.audit WHERE action LIKE 'MCP %' ORDER BY seq")
    assert [(r["action"], r["status"]) for r in rows] == [
        ("MCP power.transitions.create", 428), ("MCP power.transitions.create", 201),
        ("MCP power.transitions.wait", 200)]
    assert rows[1]["detail"]["targets"] == ["node-1"] and rows[1]["detail"]["transport"] == transport
    # The transition is the REST one: requested by the agent, announced like any other.
    assert await conn.fetchval("SELECT requested_by FROM power.transitions WHERE id = $1::uuid",
                               transition_id) == "agent"
