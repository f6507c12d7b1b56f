"""The power engine SIGKILLed mid-transition: the standby replica takes over, no task is lost or run twice.

Two `chamicore serve sync` processes share the database; one holds the
power job's advisory lock.  It is killed while resets are in flight against
sushy-tools' emulator.  The standby must finish the transition from what
the database says, and the emulator's own request log must show each reset
exactly as often as the operation needs it.
"""

import asyncio
import os
import signal
import subprocess
import sys

from core import db
from tests.helpers.api import create, credential
from tests.helpers.keys import CREDENTIALS_KEY
from tests.helpers.paths import ROOT
from tests.helpers.redfish import RedfishEmulator, fake_system

NODES = 8
# Half the nodes start On (ForceRestart: ForceOff, then On), half Off (only On is needed).
SYSTEMS = [fake_system(i, "On" if i % 2 else "Off") for i in range(1, NODES + 1)]


def start_sync(dsn: str) -> subprocess.Popen:
    env = dict(os.environ, CHAMICORE_DATABASE_URL=dsn, CHAMICORE_LOG_LEVEL="warning",
               CHAMICORE_CREDENTIALS_KEY=CREDENTIALS_KEY, CHAMICORE_POWER_POLL_S="3600",
               CHAMICORE_POWER_BMC_CONCURRENCY="2", CHAMICORE_POWER_VERIFY_S="60")
    return subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "sync"], cwd=ROOT, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def until(predicate, timeout: float, what: str):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := await predicate()):
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.1)
    return value


async def test_standby_finishes_a_transition_after_the_active_engine_is_killed(api, dsn):
    emulator = RedfishEmulator(SYSTEMS).start()
    conn = await db.connect(dsn)
    active = standby = None
    try:
        await credential(api)
        await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "bmc-1"}, "spec": {"type": "BMC"}})
        for i in range(1, NODES + 1):
            await create(api, "/hsm/v2/State/Components", {"metadata": {"id": f"node-{i}"}, "spec": {
                "type": "Node", "parentId": "bmc-1"}})
        await create(api, "/hsm/v2/Inventory/RedfishEndpoints", {"metadata": {"id": "bmc-1"}, "spec": {
            "address": emulator.url, "credentialId": "bmc-cred",
            "systems": [{"componentId": f"node-{i}", "path": f"/redfish/v1/Systems/{SYSTEMS[i - 1]['uuid']}"}
                        for i in range(1, NODES + 1)]}})

        active = start_sync(dsn)

        async def power_active_pid():
            return await conn.fetchval("SELECT split_part(instance, ':', 2)::int FROM sync.status "
                                       "WHERE job = 'power' AND state = 'active' ORDER BY updated_at DESC LIMIT 1")

        assert await until(power_active_pid, 30, "the first replica active") == active.pid
        standby = start_sync(dsn)
        await until(lambda: conn.fetchval("SELECT true FROM sync.status WHERE job = 'power' AND state = 'standby'"),
                    30, "the second replica standing by")

        started = await create(api, "/power/v1/transitions", {"operation": "ForceRestart",
                                                               "groups": [], "nodes": [f"node-{i}" for i in
                                                                                       range(1, NODES + 1)]})
        # Kill the active engine once resets are going out and before the transition is done.
        await until(lambda: conn.fetchval("SELECT count(*) >= 3 FROM power.tasks WHERE sends > 0"), 60,
                    "resets in flight")
        assert await conn.fetchval("SELECT state FROM power.transitions") == "in-progress"
        os.killpg(active.pid, signal.SIGKILL)
        active.wait()

        await until(lambda: conn.fetchval("SELECT state = 'completed' FROM power.transitions"), 150,
                    "the transition completed by the standby")
        assert await power_active_pid() == standby.pid
        body = (await api.get(f"/power/v1/transitions/{started['id']}")).json()
        assert body["counts"] == {"total": NODES, "succeeded": NODES}, body

        # What the BMC itself saw: each reset the operation needs, exactly once.
        wanted = {s["uuid"]: 2 if s["power_state"] == "On" else 1 for s in SYSTEMS}
        assert emulator.resets() == wanted
        for system in SYSTEMS:
            assert emulator.power_state(system["uuid"]) == "On"
        states = {r["state"] for r in await conn.fetch("SELECT state FROM smd.components WHERE type = 'Node'")}
        assert states == {"On"}
    finally:
        for process in (active, standby):
            if process and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
        await conn.close()
        emulator.close()
