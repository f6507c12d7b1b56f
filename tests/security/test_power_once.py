"""An operation that cannot be verified (Nmi) reaches a BMC at most once, whatever the BMC does with its answer.

The BMC is the real sushy-tools emulator behind tests/helpers/redfish_proxy.py, which
counts the Reset POSTs that reached it and answers late or not at all (a
mock of a slow or flaky BMC).  The engine gives up on an answer after 0.5 s.
"""

import pytest

from sync.power.engine import PowerEngine
from tests.helpers.api import create, credential, wait_transition
from tests.helpers.keys import box
from tests.helpers.ports import free_port
from tests.helpers.redfish import RedfishEmulator, fake_system
from tests.helpers.redfish_proxy import RedfishProxy, Seen
from tests.helpers.tasks import running

SYSTEMS = [fake_system(1, "Off"), fake_system(2, "On")]
TIMEOUT_S = 0.5


def is_reset(seen: Seen) -> bool:
    return seen.method == "POST" and seen.path.endswith("/Actions/ComputerSystem.Reset")


@pytest.fixture
def emulator():
    server = RedfishEmulator(SYSTEMS).start()
    yield server
    server.close()


async def inventory(api, address):
    """A BMC at `address` and its two nodes, mapped by hand."""
    await credential(api)
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "bmc-1"}, "spec": {"type": "BMC"}})
    for i in (1, 2):
        await create(api, "/hsm/v2/State/Components", {"metadata": {"id": f"node-{i}"}, "spec": {
            "type": "Node", "parentId": "bmc-1"}})
    await create(api, "/hsm/v2/Inventory/RedfishEndpoints", {"metadata": {"id": "bmc-1"}, "spec": {
        "address": address, "credentialId": "bmc-cred",
        "systems": [{"componentId": f"node-{i}", "path": f"/redfish/v1/Systems/{SYSTEMS[i - 1]['uuid']}"}
                    for i in (1, 2)]}})


def engine(dsn, **kwargs):
    return PowerEngine(dsn, box(), timeout_s=TIMEOUT_S, verify_s=40, poll_s=3600, **kwargs)


def first_reset_only(seen: Seen, nth: int) -> bool:
    return is_reset(seen) and nth == 1


@pytest.mark.parametrize("misbehaviour", ["late answer", "connection dropped"])
async def test_an_nmi_whose_answer_is_lost_is_not_sent_again(api, dsn, emulator, misbehaviour):
    # The first Reset reaches the BMC; its answer comes 4 s after the engine stopped waiting, or never.
    if misbehaviour == "late answer":
        proxy = RedfishProxy(emulator.url, delay_s=lambda seen, nth: 4.0 if first_reset_only(seen, nth) else 0)
    else:
        proxy = RedfishProxy(emulator.url, drop=first_reset_only)
    await proxy.start()
    try:
        await inventory(api, proxy.url)
        async with running(engine(dsn, max_attempts=5)):
            started = await create(api, "/power/v1/transitions", {"operation": "Nmi", "nodes": ["node-2"]})
            done = await wait_transition(api, started["id"], 30)
    finally:
        await proxy.close()
    assert proxy.resets() == ["Nmi"], proxy.requests  # once, never twice
    [task] = done["tasks"]
    assert task["state"] == "failed", task
    assert "Nmi" in task["detail"] and "not sent again" in task["detail"], task


async def test_an_nmi_that_could_not_connect_is_retried(api, dsn):
    """Connection refused (nothing listens there): the request certainly did not leave, so trying again is safe."""
    await inventory(api, f"http://127.0.0.1:{free_port()}")
    async with running(engine(dsn, max_attempts=3)):
        started = await create(api, "/power/v1/transitions", {"operation": "Nmi", "nodes": ["node-2"]})
        done = await wait_transition(api, started["id"], 30)
    [task] = done["tasks"]
    assert task["state"] == "failed" and task["attempts"] == 3, task
    assert "cannot connect" in task["detail"] and "gave up after 3 tries" in task["detail"]


async def test_an_on_whose_answer_is_late_is_verified_before_it_is_sent_again(api, dsn, emulator):
    """A verifiable operation whose outcome is unknown is checked at the BMC first (the emulator applies
    it 1-11 s later), not sent again at once."""
    proxy = RedfishProxy(emulator.url, delay_s=lambda seen, nth: 4.0 if first_reset_only(seen, nth) else 0)
    await proxy.start()
    try:
        await inventory(api, proxy.url)
        async with running(engine(dsn, unconfirmed_s=20)):
            started = await create(api, "/power/v1/transitions", {"operation": "On", "nodes": ["node-1"]})
            done = await wait_transition(api, started["id"], 60)
    finally:
        await proxy.close()
    assert proxy.resets() == ["On"], proxy.requests
    [task] = done["tasks"]
    assert task["state"] == "succeeded" and task["detail"] == "reached On", task
    assert emulator.power_state(SYSTEMS[0]["uuid"]) == "On"
