"""Power transitions through the admin API, driven by the real engine against sushy-tools' Redfish emulator.

The emulator's fake systems apply a power change 1-11 s after the request,
on the next read: every test here waits for verified states, not for the
request alone.
"""

import asyncio

import pytest

from sync.power.engine import PowerEngine
from tests.helpers.api import create, credential, problem_of, wait_transition
from tests.helpers.keys import box
from tests.helpers.redfish import PASSWORD, RedfishEmulator, fake_system
from tests.helpers.tasks import running

SYSTEMS = [fake_system(1, "Off"), fake_system(2, "Off"), fake_system(3, "On")]


@pytest.fixture
def emulator():
    server = RedfishEmulator(SYSTEMS).start()
    yield server
    server.close()


async def inventory(api, emulator, credential_id="bmc-cred", secret=None):
    """A BMC, its Redfish endpoint and three nodes mapped to the emulator's systems, written by hand."""
    if secret is None:
        await credential(api, credential_id=credential_id)
    else:
        await credential(api, secret=secret, credential_id=credential_id)
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "bmc-1"}, "spec": {"type": "BMC"}})
    for i in (1, 2, 3):
        await create(api, "/hsm/v2/State/Components", {"metadata": {"id": f"node-{i}"}, "spec": {
            "type": "Node", "state": "Populated", "parentId": "bmc-1"}})
    await create(api, "/hsm/v2/Inventory/RedfishEndpoints", {"metadata": {"id": "bmc-1"}, "spec": {
        "address": emulator.url, "credentialId": credential_id,
        "systems": [{"componentId": f"node-{i}", "path": f"/redfish/v1/Systems/{SYSTEMS[i - 1]['uuid']}"}
                    for i in (1, 2, 3)]}})


def engine(dsn, **kwargs):
    return PowerEngine(dsn, box(), verify_s=kwargs.pop("verify_s", 40), poll_s=kwargs.pop("poll_s", 3600), **kwargs)


async def test_power_on_reaches_the_bmc_and_is_verified(api, dsn, emulator, conn):
    await inventory(api, emulator)
    async with running(engine(dsn)) as job:
        started = await create(api, "/power/v1/transitions", {"operation": "On", "nodes": ["node-1", "node-2"]})
        assert started["state"] == "new" and started["counts"] == {"total": 2, "pending": 2}
        done = await wait_transition(api, started["id"])
        # Idle, the engine waits for a notification or its period; its own writes do not wake it.
        passes = job.passes
        await asyncio.sleep(1.5)
        assert job.passes - passes <= 1
    assert done["counts"] == {"total": 2, "succeeded": 2}, done
    assert {t["nodeId"]: t["detail"] for t in done["tasks"]} == {"node-1": "reached On", "node-2": "reached On"}
    # Verified at the BMC itself, written to the inventory and to power status, and announced.
    assert emulator.power_state(SYSTEMS[0]["uuid"]) == emulator.power_state(SYSTEMS[1]["uuid"]) == "On"
    assert emulator.resets() == {SYSTEMS[0]["uuid"]: 1, SYSTEMS[1]["uuid"]: 1}
    states = dict(await conn.fetch("SELECT id, state FROM smd.components WHERE type = 'Node'"))
    # node-3 is On at its BMC: the engine's first status refresh, when it became active, said so.
    assert states == {"node-1": "On", "node-2": "On", "node-3": "On"}
    status = (await api.get("/power/v1/power-status", params={"state": "on"})).json()["items"]
    assert [s["nodeId"] for s in status] == ["node-1", "node-2", "node-3"]
    kinds = {r["type"] for r in await conn.fetch("SELECT type FROM events.outbox WHERE type LIKE 'chamicore.power.%'")}
    assert {"chamicore.power.transitions.created", "chamicore.power.nodes.on",
            "chamicore.power.transitions.completed"} <= kinds


async def test_restart_is_off_then_on_and_a_node_already_there_gets_nothing(api, dsn, emulator):
    await inventory(api, emulator)
    await create(api, "/hsm/v2/groups", {"spec": {"name": "rack1", "members": ["node-1", "node-3"]}})
    async with running(engine(dsn)):
        reset = await create(api, "/power/v1/actions/reset", {"groups": ["rack1"]})
        assert reset["operation"] == "ForceRestart" and reset["steps"] == ["ForceOff", "On"]
        done = await wait_transition(api, reset["id"], 90)
    assert done["counts"] == {"total": 2, "succeeded": 2}, done
    resets = emulator.resets()
    # node-3 was On: ForceOff, then On.  node-1 was Off already: only On.
    assert resets == {SYSTEMS[2]["uuid"]: 2, SYSTEMS[0]["uuid"]: 1}
    assert emulator.power_state(SYSTEMS[2]["uuid"]) == "On"


async def test_nodes_that_cannot_be_reached_fail_alone_with_what_to_do(api, dsn, emulator):
    await inventory(api, emulator)
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "orphan"}, "spec": {"type": "Node"}})
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "bmc-2"}, "spec": {"type": "BMC"}})
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "node-9"}, "spec": {
        "type": "Node", "parentId": "bmc-2"}})
    await create(api, "/hsm/v2/Inventory/RedfishEndpoints", {"metadata": {"id": "bmc-2"}, "spec": {
        "address": "http://127.0.0.1:9"}})
    async with running(engine(dsn)):
        started = await create(api, "/power/v1/transitions", {"operation": "ForceOff",
                                                               "nodes": ["orphan", "node-9", "node-3"]})
        failed = {t["nodeId"]: t["detail"] for t in started["tasks"] if t["state"] == "failed"}
        assert "has no BMC" in failed["orphan"] and "parentId" in failed["orphan"]
        assert "BMC 'bmc-2' has no credential" in failed["node-9"]
        assert "/hsm/v2/Inventory/RedfishEndpoints/bmc-2" in failed["node-9"]
        done = await wait_transition(api, started["id"])
    assert done["counts"] == {"total": 3, "failed": 2, "succeeded": 1}
    assert emulator.power_state(SYSTEMS[2]["uuid"]) == "Off"


async def test_wrong_credentials_and_unsupported_actions_fail_the_task_clearly(api, dsn, emulator):
    await inventory(api, emulator, secret="wrong")
    async with running(engine(dsn)):
        started = await create(api, "/power/v1/transitions", {"operation": "On", "nodes": ["node-1"]})
        done = await wait_transition(api, started["id"])
    [task] = done["tasks"]
    assert task["state"] == "failed"
    assert "rejected credential 'bmc-cred'" in task["detail"] and "/auth/v1/credentials/bmc-cred" in task["detail"]
    response = await api.patch("/auth/v1/credentials/bmc-cred", json={"secret": PASSWORD})
    assert response.status_code == 200, response.text
    async with running(engine(dsn)):
        nmi = await create(api, "/power/v1/transitions", {"operation": "Nmi", "nodes": ["node-3"]})
        done = await wait_transition(api, nmi["id"])
    [task] = done["tasks"]
    assert task["state"] == "failed" and "HTTP 501" in task["detail"], task  # the fake driver has no NMI
    assert task["attempts"] == 1  # not retryable: tried once


async def test_a_dead_bmc_is_retried_with_backoff_then_given_up(api, dsn, emulator):
    await inventory(api, emulator)
    emulator.stop()
    async with running(engine(dsn, max_attempts=3)) as job:
        started = await create(api, "/power/v1/transitions", {"operation": "On", "nodes": ["node-1"]})
        done = await wait_transition(api, started["id"], 30)
    [task] = done["tasks"]
    assert task["state"] == "failed" and task["attempts"] == 3
    assert job.counts()["tasksFailed"] == 1  # once for the task, not per try (the admin API's /metrics reads it)
    assert "cannot connect" in task["detail"] and "gave up after 3 tries" in task["detail"]


async def test_dry_run_plans_and_writes_nothing(api, dsn, emulator, conn):
    await inventory(api, emulator)
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "orphan"}, "spec": {"type": "Node"}})
    response = await api.post("/power/v1/actions/off", json={"nodes": ["node-1", "orphan"], "dryRun": True})
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["dryRun"] is True and plan["operation"] == "GracefulShutdown"
    assert {t["nodeId"]: t["state"] for t in plan["tasks"]} == {"node-1": "would-run", "orphan": "would-fail"}
    assert await conn.fetchval("SELECT count(*) FROM power.transitions") == 0
    assert await conn.fetchval("SELECT count(*) FROM events.outbox WHERE type LIKE 'chamicore.power.%'") == 0


async def test_abort_stops_what_has_not_happened_yet(api, dsn, emulator, conn):
    await inventory(api, emulator)
    started = await create(api, "/power/v1/transitions", {"operation": "On", "nodes": ["node-1", "node-2"]})
    # A node already in a transition is not given a second one.
    problem_of(await api.post("/power/v1/actions/on", json={"nodes": ["node-2"]}), 409)
    response = await api.delete(f"/power/v1/transitions/{started['id']}")
    assert response.status_code == 202 and response.json()["state"] == "abort-signaled"
    async with running(engine(dsn)):
        done = await wait_transition(api, started["id"], 20)
    assert done["state"] == "aborted" and done["counts"] == {"total": 2, "aborted": 2}
    assert emulator.resets() == {}
    problem_of(await api.delete(f"/power/v1/transitions/{started['id']}"), 409)


async def test_bad_power_requests_are_refused_and_change_nothing(api, emulator, conn, admin_app):
    await inventory(api, emulator)
    cases = [
        ({"operation": "On"}, 422),
        ({"operation": "Explode", "nodes": ["node-1"]}, 422),
        ({"operation": "On", "nodes": ["no-such-node"]}, 422),
        ({"operation": "On", "nodes": ["bmc-1"]}, 422),
        ({"operation": "On", "groups": ["no-such-group"]}, 422),
        ({"operation": "On", "nodes": ["not an id!"]}, 422),
        ({"operation": "On", "nodes": ["node-1"], "extra": 1}, 422),
    ]
    for body, status in cases:
        problem_of(await api.post("/power/v1/transitions", json=body), status)
    admin_app.state.config = admin_app.state.config.replace(power_bulk_limit=2)
    body = problem_of(await api.post("/power/v1/actions/on", json={"nodes": ["node-1", "node-2", "node-3"]}), 422)
    assert "CHAMICORE_POWER_BULK_LIMIT" in body["detail"]
    problem_of(await api.get("/power/v1/transitions/not-a-uuid"), 404)
    problem_of(await api.get("/power/v1/transitions/6f1c2a52-0000-4000-8000-000000000000"), 404)
    problem_of(await api.get("/power/v1/power-status", params={"state": "smoking"}), 400)
    assert await conn.fetchval("SELECT count(*) FROM power.transitions") == 0


async def test_power_status_is_refreshed_from_the_bmcs(api, dsn, emulator, conn):
    await inventory(api, emulator)
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "orphan"}, "spec": {"type": "Node"}})
    async with running(engine(dsn, poll_s=0.5)):
        for _ in range(100):
            if await conn.fetchval("SELECT count(*) FROM power.status") == 3:
                break
            await asyncio.sleep(0.1)
    status = {s["nodeId"]: s for s in (await api.get("/power/v1/power-status")).json()["items"]}
    assert {k: v["powerState"] for k, v in status.items()} == {
        "node-1": "off", "node-2": "off", "node-3": "on", "orphan": "undefined"}
    assert status["node-3"]["managementState"] == "available"
    only = (await api.get("/power/v1/power-status", params={"node": "node-3,orphan", "state": "on"})).json()
    assert [s["nodeId"] for s in only["items"]] == ["node-3"]


async def test_a_request_cut_off_mid_send_is_verified_before_it_is_sent_again(api, dsn, emulator, conn):
    """What a killed engine leaves: tasks in `sending`.  node-2's request reached its BMC, which has not
    applied it yet (it takes 1-11 s); node-1's never left.  The next engine must not send node-2 a second
    On, and must send node-1 its On once."""
    await inventory(api, emulator)
    started = await create(api, "/power/v1/transitions", {"operation": "On", "nodes": ["node-1", "node-2"]})
    await conn.execute("UPDATE power.transitions SET state = 'in-progress' WHERE id = $1::uuid", started["id"])
    await conn.execute("UPDATE power.tasks SET state = 'sending', attempts = 1 WHERE transition_id = $1::uuid",
                       started["id"])
    emulator.reset(SYSTEMS[1]["uuid"], "On")  # the dead engine's request
    async with running(engine(dsn, unconfirmed_s=15)):
        done = await wait_transition(api, started["id"], 90)
    assert done["counts"] == {"total": 2, "succeeded": 2}, done
    assert emulator.resets() == {SYSTEMS[0]["uuid"]: 1, SYSTEMS[1]["uuid"]: 1}
