"""The ipmi driver and IPMI power control, against OpenIPMI's real ipmi_sim (tests/helpers/ipmisim.py).

Each simulator is a BMC on its own UDP port of 127.0.0.1 whose chassis power
is a file its chassis-control program keeps: a power change is real state,
read back from the simulator (not from what the engine wrote), and every
chassis action it performed is listed, so a test can count what reached it.
"""

import asyncio

import pytest

from sync.discovery.scanner import DiscoveryScanner
from sync.power.engine import PowerEngine
from tests.helpers.api import create, credential, problem_of, scan, wait_transition
from tests.helpers.ipmisim import PASSWORD, IpmiSim, free_udp_port
from tests.helpers.keys import box
from tests.helpers.polling import wait_until
from tests.helpers.tasks import running

GUIDS = ["a1b2c3d4e5f60718293a4b5c6d7e8f90", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"]


def sim(index: int, power: int = 0, **kwargs) -> IpmiSim:
    return IpmiSim(guid=GUIDS[index], manufacturer=f"Vendor {index}", product=f"Model {index}",
                   serial=f"SN-{index:04d}", mac=f"02:00:00:00:10:{index:02x}", ip=f"10.50.0.{index + 1}",
                   power=power, name=f"bmc{index}", **kwargs)


def wire_uuid(guid: str) -> str:
    """The UUID a BMC's GUID bytes spell (SMBIOS order: the first three fields little-endian), as dmidecode says."""
    raw = bytes.fromhex(guid)
    swapped = raw[3::-1] + raw[5:3:-1] + raw[7:5:-1] + raw[8:]
    text = swapped.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@pytest.fixture
def bmcs():
    started = [sim(0, power=0).start(), sim(1, power=1).start()]
    yield started
    for bmc in started:
        bmc.close()


async def target(api, target_id: str, address: str, credential_id: str = "ipmi-cred") -> None:
    await create(api, "/discovery/v1/targets", {"metadata": {"id": target_id}, "spec": {
        "driver": "ipmi", "address": address, "credentialId": credential_id}})


def scanner(dsn) -> DiscoveryScanner:
    return DiscoveryScanner(dsn, box(), timeout_s=8.0)


async def test_a_scan_registers_each_bmc_and_its_node_and_bad_hosts_fail_alone(api, dsn, conn, bmcs):
    # Two good BMCs, one whose credential is wrong, one that does not answer at all: one scan.
    liar = IpmiSim(guid="00112233445566778899aabbccddeeff", mac="02:00:00:00:10:99", name="locked").start()
    try:
        await credential(api, secret=PASSWORD, credential_id="ipmi-cred")
        await credential(api, secret="not-the-password", credential_id="wrong-cred")
        await target(api, "good-0", bmcs[0].address)
        await target(api, "good-1", bmcs[1].address)
        await target(api, "wrong", liar.address, "wrong-cred")
        dead = f"127.0.0.1:{free_udp_port()}"
        await target(api, "dead", dead)
        async with running(scanner(dsn)):
            result = await scan(api, ["good-0", "good-1", "wrong", "dead"], timeout=60)
        assert liar.requests() == []
    finally:
        liar.close()
    by_host = {h["host"]: h for h in result["status"]["results"]}
    assert result["status"]["state"] == "completed", result
    assert by_host[f"ipmi://{bmcs[0].address}"]["state"] == "ok", by_host
    assert by_host[f"ipmi://{bmcs[1].address}"]["state"] == "ok", by_host
    wrong = by_host[f"ipmi://{liar.address}"]
    assert wrong["state"] == "failed" and "rejected credential 'wrong-cred'" in wrong["detail"], wrong
    assert "not-the-password" not in str(result)
    gone = by_host[f"ipmi://{dead}"]
    assert gone["state"] == "failed" and f"ipmi://{dead}" in gone["detail"], gone
    assert "no IPMI session" in gone["detail"] or "no answer" in gone["detail"], gone

    # Each BMC: an IPMI endpoint, its LAN MAC and IP; its node: GUID and FRU, mapped to the chassis; power read.
    for index, bmc in enumerate(bmcs):
        endpoint = await conn.fetchrow("SELECT * FROM smd.redfish_endpoints WHERE address = $1",
                                       f"ipmi://{bmc.address}")
        assert endpoint is not None and endpoint["credential_id"] == "ipmi-cred" and not endpoint["insecure"]
        nic = await conn.fetchrow("SELECT * FROM smd.ethernet_interfaces WHERE component_id = $1", endpoint["id"])
        assert nic["mac"] == bmc.mac
        assert [a["ipAddress"] for a in nic["ip_addrs"]] == [bmc.ip]
        system = await conn.fetchrow("SELECT * FROM smd.redfish_systems WHERE endpoint_id = $1", endpoint["id"])
        assert system["path"] == "ipmi:chassis"
        assert (system["uuid"], system["manufacturer"], system["model"], system["serial"]) == (
            wire_uuid(GUIDS[index]), f"Vendor {index}", f"Model {index}", f"SN-{index:04d}")
        node = await conn.fetchrow("SELECT * FROM smd.components WHERE id = $1", system["component_id"])
        assert node["type"] == "Node" and node["parent_id"] == endpoint["id"]
        assert node["state"] == ("On" if index == 1 else "Off")
        assert await conn.fetchval("SELECT power_state FROM power.status WHERE node_id = $1", node["id"]) == (
            "on" if index == 1 else "off")
    # Reading is all a scan does: no chassis action reached either BMC.
    assert bmcs[0].requests() == bmcs[1].requests() == []

    # A second scan finds the same components (by the endpoint's chassis mapping), and makes no new ones.
    before = await conn.fetchval("SELECT count(*) FROM smd.components")
    async with running(scanner(dsn)):
        again = await scan(api, ["good-0", "good-1"], timeout=60)
    assert again["status"]["state"] == "completed", again
    assert await conn.fetchval("SELECT count(*) FROM smd.components") == before


async def test_bad_ipmi_targets_are_refused_and_change_nothing(api, conn):
    await credential(api, secret=PASSWORD, credential_id="ipmi-cred")
    cases = [
        ({"driver": "ipmi", "address": "10.0.0.1"}, "$.spec.credentialId"),
        ({"driver": "ipmi", "address": "10.0.0.1", "credentialId": "ipmi-cred", "insecure": True}, "$.spec.insecure"),
        ({"driver": "ipmi", "address": "https://10.0.0.1", "credentialId": "ipmi-cred"}, "$.spec.address"),
        ({"driver": "ipmi", "address": "10.0.0.1:0", "credentialId": "ipmi-cred"}, "$.spec.address"),
        ({"driver": "ipmi", "address": "user@10.0.0.1", "credentialId": "ipmi-cred"}, "$.spec.address"),
        ({"driver": "ipmi", "address": "10.0.0.0/8", "credentialId": "ipmi-cred"}, "$.spec.address"),
        ({"driver": "ipmi", "address": "10.0.0.1", "credentialId": "ipmi-cred", "document": "[]"},
         "$.spec.document"),
    ]
    for spec, pointer in cases:
        body = problem_of(await api.post("/discovery/v1/targets", json={"spec": spec}), 422)
        assert pointer in str(body), (spec, body)
    assert await conn.fetchval("SELECT count(*) FROM discovery.targets") == 0


async def ipmi_nodes(api, dsn, bmcs) -> dict[int, str]:
    """Discover the BMCs; node id by simulator index."""
    await credential(api, secret=PASSWORD, credential_id="ipmi-cred")
    for index, bmc in enumerate(bmcs):
        await target(api, f"bmc-{index}", bmc.address)
    async with running(scanner(dsn)):
        result = await scan(api, [f"bmc-{i}" for i in range(len(bmcs))], timeout=60)
    assert {h["state"] for h in result["status"]["results"]} == {"ok"}, result
    by_target = {h["targetId"]: h["components"] for h in result["status"]["results"]}
    # A host's components: its BMC, then its node.
    return {index: by_target[f"bmc-{index}"][1] for index in range(len(bmcs))}


def engine(dsn, **kwargs) -> PowerEngine:
    return PowerEngine(dsn, box(), timeout_s=kwargs.pop("timeout_s", 5.0), verify_s=kwargs.pop("verify_s", 20),
                       poll_s=kwargs.pop("poll_s", 3600), **kwargs)


async def test_power_on_off_and_restart_reach_the_chassis_and_are_verified(api, dsn, conn, bmcs):
    nodes = await ipmi_nodes(api, dsn, bmcs)
    off_node, on_node = nodes[0], nodes[1]
    async with running(engine(dsn)):
        started = await create(api, "/power/v1/transitions", {"operation": "On", "nodes": [off_node, on_node]})
        done = await wait_transition(api, started["id"])
        assert done["counts"] == {"total": 2, "succeeded": 2}, done
        assert {t["nodeId"]: t["detail"] for t in done["tasks"]} == {off_node: "reached On", on_node: "already On"}
        # Read back from the simulators: one chassis power-on, sent to the node that was off only.
        assert bmcs[0].power_state() == bmcs[1].power_state() == "on"
        assert bmcs[0].requests() == ["power 1"] and bmcs[1].requests() == []

        started = await create(api, "/power/v1/transitions", {"operation": "ForceOff", "nodes": [off_node]})
        done = await wait_transition(api, started["id"])
        assert done["counts"] == {"total": 1, "succeeded": 1}, done
        assert bmcs[0].power_state() == "off" and bmcs[0].requests() == ["power 1", "power 0"]

        # A restart is off then on, each verified; a soft off is chassis control's soft shutdown.
        started = await create(api, "/power/v1/transitions", {"operation": "GracefulRestart", "nodes": [on_node]})
        done = await wait_transition(api, started["id"])
        assert done["counts"] == {"total": 1, "succeeded": 1}, done
        assert bmcs[1].requests() == ["shutdown 1", "power 1"] and bmcs[1].power_state() == "on"
        started = await create(api, "/power/v1/transitions", {"operation": "ForceRestart", "nodes": [on_node]})
        done = await wait_transition(api, started["id"])
        assert done["counts"] == {"total": 1, "succeeded": 1}, done
        assert bmcs[1].requests()[-2:] == ["power 0", "power 1"] and bmcs[1].power_state() == "on"
    states = dict(await conn.fetch("SELECT id, state FROM smd.components WHERE id = ANY($1)", [off_node, on_node]))
    assert states == {off_node: "Off", on_node: "On"}


async def test_power_status_refresh_reads_ipmi_nodes_and_a_dead_bmc_is_unavailable_alone(api, dsn, conn, bmcs):
    nodes = await ipmi_nodes(api, dsn, bmcs)
    bmcs[0].set_power_state(True)   # pressed at the chassis: only a refresh can know
    bmcs[1].stop()                  # and this BMC has died since the scan
    async with running(engine(dsn, poll_s=0.5, timeout_s=2.0)):
        async def refreshed():
            rows = dict(await conn.fetch("SELECT node_id, management_state FROM power.status"))
            return rows.get(nodes[1]) == "unavailable" and await conn.fetchval(
                "SELECT power_state FROM power.status WHERE node_id = $1", nodes[0]) == "on"
        deadline = asyncio.get_running_loop().time() + 40
        while not await refreshed():
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)
    status = {s["nodeId"]: s for s in (await api.get("/power/v1/power-status")).json()["items"]}
    assert status[nodes[0]]["powerState"] == "on" and status[nodes[0]]["managementState"] == "available"
    assert status[nodes[1]]["powerState"] == "undefined"
    assert f"ipmi://{bmcs[1].address}" in status[nodes[1]]["error"]


async def test_a_wrong_password_fails_the_task_with_what_to_do_and_others_finish(api, dsn, conn, bmcs):
    nodes = await ipmi_nodes(api, dsn, bmcs)
    # A third BMC, entered by hand with a credential whose secret is wrong.
    locked = IpmiSim(guid="00112233445566778899aabbccddeeff", mac="02:00:00:00:10:99", power=1, name="locked").start()
    try:
        await credential(api, secret="stale-secret", credential_id="stale-cred")
        await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "bmc-locked"}, "spec": {"type": "BMC"}})
        await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "node-locked"}, "spec": {
            "type": "Node", "parentId": "bmc-locked"}})
        await conn.execute("INSERT INTO smd.redfish_endpoints (id, address, credential_id) VALUES "
                           "('bmc-locked', $1, 'stale-cred')", f"ipmi://{locked.address}")
        async with running(engine(dsn)):
            started = await create(api, "/power/v1/transitions", {"operation": "ForceOff",
                                                                   "nodes": [nodes[1], "node-locked"]})
            done = await wait_transition(api, started["id"])
        tasks = {t["nodeId"]: t for t in done["tasks"]}
        assert tasks[nodes[1]]["state"] == "succeeded", done
        assert bmcs[1].power_state() == "off" and bmcs[1].requests() == ["power 0"]
        failed = tasks["node-locked"]
        assert failed["state"] == "failed" and "rejected credential 'stale-cred'" in failed["detail"], failed
        assert "PATCH /auth/v1/credentials/stale-cred" in failed["detail"]
        assert "stale-secret" not in str(done)
        assert locked.requests() == [] and locked.power_state() == "on"
    finally:
        locked.close()


async def test_a_request_cut_off_mid_send_is_verified_before_it_is_sent_again(api, dsn, conn, bmcs):
    """What a killed engine leaves: tasks in `sending`.  node 0's power-on reached its BMC; node 1's (an
    off) never left.  The next engine must not send node 0 a second power-on, and must send node 1 its off once."""
    nodes = await ipmi_nodes(api, dsn, bmcs)
    started = await create(api, "/power/v1/transitions", {"operation": "On", "nodes": [nodes[0]]})
    off = await create(api, "/power/v1/transitions", {"operation": "ForceOff", "nodes": [nodes[1]]})
    for transition in (started, off):
        await conn.execute("UPDATE power.transitions SET state = 'in-progress' WHERE id = $1::uuid", transition["id"])
        await conn.execute("UPDATE power.tasks SET state = 'sending', attempts = 1 WHERE transition_id = $1::uuid",
                           transition["id"])
    bmcs[0].set_power_state(True)  # the dead engine's request, applied
    async with running(engine(dsn, unconfirmed_s=3)):
        done = await wait_transition(api, started["id"], 60)
        done_off = await wait_transition(api, off["id"], 60)
    assert done["counts"] == {"total": 1, "succeeded": 1}, done
    assert done_off["counts"] == {"total": 1, "succeeded": 1}, done_off
    assert bmcs[0].requests() == []            # verified, not sent again
    assert bmcs[1].requests() == ["power 0"]   # not there within the window: sent once
    assert wait_until(lambda: bmcs[1].power_state() == "off")
