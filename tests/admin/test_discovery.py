"""Discovery through the admin API, scanned by the real scanner against sushy-tools' Redfish emulator."""

import asyncio
import socket

import pytest

from sync.discovery.scanner import DiscoveryScanner
from tests.helpers.api import create, credential, problem_of, scan, wait_scan
from tests.helpers.keys import box
from tests.helpers.redfish import RedfishEmulator, fake_system
from tests.helpers.tasks import running
from tests.helpers.tokens import token_for

SYSTEMS = [fake_system(1, "Off"), fake_system(2, "On", nics=2), fake_system(3, "Off")]


@pytest.fixture
def emulator():
    server = RedfishEmulator(SYSTEMS).start()
    yield server
    server.close()


async def nodes(api):
    return (await api.get("/hsm/v2/State/Components", params={"type": "Node"})).json()["items"]


async def test_redfish_scan_registers_the_bmc_its_nodes_and_their_macs(api, dsn, emulator, boot_server):
    cred = await credential(api)
    await create(api, "/discovery/v1/targets", {"metadata": {"id": "rack1-bmc"}, "spec": {
        "driver": "redfish", "address": emulator.url, "credentialId": cred}})
    async with running(DiscoveryScanner(dsn, box())):
        result = await scan(api, ["rack1-bmc"])
    assert result["status"]["state"] == "completed", result
    [host] = result["status"]["results"]
    assert host["state"] == "ok" and host["host"] == emulator.url

    bmcs = (await api.get("/hsm/v2/State/Components", params={"type": "BMC"})).json()["items"]
    assert len(bmcs) == 1
    bmc_id = bmcs[0]["metadata"]["id"]
    found = await nodes(api)
    assert len(found) == 3
    assert sorted(host["components"]) == sorted([bmc_id] + [n["metadata"]["id"] for n in found])
    for node in found:
        assert node["spec"]["parentId"] == bmc_id
        # The emulator's chassis says where: Location.Placement of its Chassis.
        assert node["spec"]["location"]["rack"] == "WEB43" and node["spec"]["location"]["unit"] == 12
    states = {n["metadata"]["id"]: n["spec"]["state"] for n in found}

    endpoint = (await api.get(f"/hsm/v2/Inventory/RedfishEndpoints/{bmc_id}")).json()["spec"]
    assert endpoint["address"] == emulator.url and endpoint["credentialId"] == cred
    by_uuid = {s["uuid"]: s for s in endpoint["systems"]}
    assert set(by_uuid) == {s["uuid"] for s in SYSTEMS}
    for system in SYSTEMS:
        mapped = by_uuid[system["uuid"]]
        assert mapped["path"] == f"/redfish/v1/Systems/{system['uuid']}"
        assert mapped["manufacturer"] == "Sushy Emulator"
        assert states[mapped["componentId"]] == system["power_state"]
        macs = (await api.get("/hsm/v2/Inventory/EthernetInterfaces",
                              params={"componentId": mapped["componentId"]})).json()["items"]
        assert sorted(m["spec"]["macAddr"] for m in macs) == sorted(n["mac"] for n in system["nics"])

    status = (await api.get("/power/v1/power-status")).json()["items"]
    assert {s["nodeId"]: s["powerState"] for s in status} == {
        by_uuid[s["uuid"]]["componentId"]: s["power_state"].lower() for s in SYSTEMS}

    # The boot path serves the discovered nodes by the MACs discovery found.
    await create(api, "/boot/v1/bootparams", {"metadata": {"id": "site"}, "spec": {
        "kernel": "http://images.test/vmlinuz", "initrd": "http://images.test/initrd", "cmdline": "console=ttyS0"}})
    server = boot_server()
    node_id = by_uuid[SYSTEMS[1]["uuid"]]["componentId"]
    for nic in SYSTEMS[1]["nics"]:
        code, _, body = server.get(f"/boot/v1/bootscript?mac={nic['mac'].replace(':', '-').upper()}")
        assert code == 200
        assert b"kernel http://images.test/vmlinuz" in body and node_id.encode() in body


async def test_a_rescan_updates_and_never_duplicates(api, dsn, emulator, conn):
    cred = await credential(api)
    await create(api, "/discovery/v1/targets", {"metadata": {"id": "tgt"}, "spec": {
        "driver": "redfish", "address": emulator.url, "credentialId": cred}})
    async with running(DiscoveryScanner(dsn, box())):
        await scan(api, ["tgt"])
        first = {n["metadata"]["id"]: n for n in await nodes(api)}
        # An admin's own choices survive a re-scan; what the BMC says is refreshed.
        some = sorted(first)[0]
        response = await api.patch(f"/hsm/v2/State/Components/{some}", json={"spec": {"role": "Compute", "nid": 7}})
        assert response.status_code == 200, response.text
        await conn.execute("UPDATE smd.components SET rack = 'moved' WHERE id = $1", some)
        events_before = await conn.fetchval("SELECT count(*) FROM events.outbox")
        again = await scan(api, ["tgt"])
    assert again["status"]["state"] == "completed"
    second = {n["metadata"]["id"]: n for n in await nodes(api)}
    assert set(second) == set(first)
    assert await conn.fetchval("SELECT count(*) FROM smd.components WHERE type = 'BMC'") == 1
    assert await conn.fetchval("SELECT count(*) FROM smd.ethernet_interfaces") == 4
    assert await conn.fetchval("SELECT count(*) FROM smd.redfish_systems") == 3
    assert second[some]["spec"]["role"] == "Compute" and second[some]["spec"]["nid"] == 7
    assert second[some]["spec"]["location"]["rack"] == "WEB43"
    # Only the node whose rack changed was written again (one event), not all of them.
    changed = await conn.fetch("SELECT subject FROM events.outbox WHERE seq > (SELECT max(seq) FROM events.outbox) - $1 "
                               "AND type = 'chamicore.smd.components.updated'",
                               await conn.fetchval("SELECT count(*) FROM events.outbox") - events_before)
    assert [r["subject"] for r in changed] == [some]


async def test_wrong_credentials_fail_the_host_with_what_to_do(api, dsn, emulator, conn):
    cred = await credential(api, secret="not-the-password", credential_id="wrong")
    await create(api, "/discovery/v1/targets", {"metadata": {"id": "tgt"}, "spec": {
        "driver": "redfish", "address": emulator.url, "credentialId": cred}})
    async with running(DiscoveryScanner(dsn, box())) as scanner:
        result = await scan(api, ["tgt"])
    assert result["status"]["state"] == "failed"
    assert result["status"]["error"] == "1 of 1 hosts failed"
    assert (scanner.counts()["hosts"], scanner.counts()["hostsFailed"]) == (1, 1)  # read by the admin API's /metrics
    [host] = result["status"]["results"]
    assert host["state"] == "failed"
    assert "rejected credential 'wrong'" in host["detail"] and "/auth/v1/credentials/wrong" in host["detail"]
    assert await conn.fetchval("SELECT count(*) FROM smd.components") == 0


async def test_tls_is_verified_unless_the_target_says_insecure(api, dsn):
    emulator = RedfishEmulator(SYSTEMS[:1], tls=True).start()
    try:
        cred = await credential(api)
        await create(api, "/discovery/v1/targets", {"metadata": {"id": "strict"}, "spec": {
            "driver": "redfish", "address": emulator.url, "credentialId": cred}})
        await create(api, "/discovery/v1/targets", {"metadata": {"id": "lax"}, "spec": {
            "driver": "redfish", "address": emulator.url.replace("127.0.0.1", "localhost"), "credentialId": cred,
            "insecure": True}})
        async with running(DiscoveryScanner(dsn, box())):
            strict = await scan(api, ["strict"])
            assert strict["status"]["state"] == "failed"
            assert "TLS verification failed" in strict["status"]["results"][0]["detail"]
            assert await nodes(api) == []
            lax = await scan(api, ["lax"])
        assert lax["status"]["state"] == "completed", lax
        assert len(await nodes(api)) == 1
        endpoint = (await api.get("/hsm/v2/Inventory/RedfishEndpoints")).json()["items"][0]["spec"]
        assert endpoint["insecure"] is True
    finally:
        emulator.close()


async def test_csv_and_json_node_lists(api, dsn, conn):
    csv_doc = ("id,mac,ip,nid,role,rack,unit,bmc\n"
               "cn-01,52:54:00:dd:00:01,10.9.0.1,101,Compute,R7,1,\n"
               ",52-54-00-DD-00-02,,102,Compute,R7,2,\n")
    await create(api, "/discovery/v1/targets", {"metadata": {"id": "list"}, "spec": {
        "driver": "csv", "document": csv_doc}})
    json_doc = '[{"mac": "52:54:00:dd:00:03", "nid": 103, "role": "Storage", "bmcAddress": "http://10.0.0.9"}]'
    await create(api, "/discovery/v1/targets", {"metadata": {"id": "more"}, "spec": {
        "driver": "json", "document": json_doc}})
    async with running(DiscoveryScanner(dsn, box())):
        result = await scan(api, [])  # every enabled target
        assert result["status"]["state"] == "completed", result
        again = await scan(api, ["list", "more"])
    assert again["status"]["counts"] == {"ok": 2}
    found = {n["spec"]["nid"]: n for n in await nodes(api)}
    assert sorted(found) == [101, 102, 103]
    assert found[101]["metadata"]["id"] == "cn-01" and found[101]["spec"]["location"]["rack"] == "R7"
    assert found[103]["spec"]["role"] == "Storage"
    assert found[102]["metadata"]["id"].startswith("node-")
    ip = await conn.fetchval("SELECT ip_addrs FROM smd.ethernet_interfaces WHERE mac = '52:54:00:dd:00:01'")
    assert ip == [{"ipAddress": "10.9.0.1", "network": ""}]
    # bmcAddress made a BMC with that endpoint, parent of the node.
    bmc = await conn.fetchrow("SELECT id, address FROM smd.redfish_endpoints")
    assert bmc["address"] == "http://10.0.0.9" and found[103]["spec"]["parentId"] == bmc["id"]
    assert await conn.fetchval("SELECT count(*) FROM smd.ethernet_interfaces") == 3


class SilentHost:
    """Accepts connections and never answers: a BMC that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self):
        self.sock.close()


async def test_a_hanging_host_times_out_and_a_scan_can_be_cancelled(api, dsn, conn):
    silent = SilentHost()
    try:
        await create(api, "/discovery/v1/targets", {"metadata": {"id": "hangs"}, "spec": {
            "driver": "redfish", "address": silent.url}})
        async with running(DiscoveryScanner(dsn, box(), timeout_s=0.5)):
            result = await scan(api, ["hangs"])
        assert result["status"]["state"] == "failed"
        assert "no complete answer within 0.5 s" in result["status"]["results"][0]["detail"]

        async with running(DiscoveryScanner(dsn, box(), timeout_s=60)):
            started = await create(api, "/discovery/v1/scans", {"targets": ["hangs"]})
            scan_id = started["metadata"]["id"]
            await wait_scan(api, scan_id, 10, ("running",))
            response = await api.post(f"/discovery/v1/scans/{scan_id}/cancel")
            assert response.status_code == 200, response.text
            t0 = asyncio.get_running_loop().time()
            # The scanner lets go of it: it is free for the next scan within a second, not after 60 s.
            follow = await create(api, "/discovery/v1/scans", {"targets": ["hangs"]})
            await wait_scan(api, follow["metadata"]["id"], 10, ("running",))
            assert asyncio.get_running_loop().time() - t0 < 5
        cancelled = (await api.get(f"/discovery/v1/scans/{scan_id}")).json()
        assert cancelled["status"]["state"] == "cancelled"
        assert cancelled["status"]["results"][0]["state"] == "cancelled"
        problem_of(await api.post(f"/discovery/v1/scans/{scan_id}/cancel"), 409)
    finally:
        silent.close()


async def test_a_scan_left_running_by_a_dead_scanner_is_resumed(api, dsn, emulator, conn):
    cred = await credential(api)
    await create(api, "/discovery/v1/targets", {"metadata": {"id": "tgt"}, "spec": {
        "driver": "redfish", "address": emulator.url, "credentialId": cred}})
    # What a scanner killed mid-scan leaves behind: a running scan, a host half done.
    await conn.execute("INSERT INTO discovery.scans (id, state, owner, started_at) "
                       "VALUES ('scan-dead0001', 'running', 'gone:1', now())")
    await conn.execute("INSERT INTO discovery.scan_hosts (scan_id, target_id, host, state, started_at) "
                       "VALUES ('scan-dead0001', 'tgt', $1, 'running', now())", emulator.url)
    async with running(DiscoveryScanner(dsn, box())):
        result = await wait_scan(api, "scan-dead0001")
    assert result["status"]["state"] == "completed"
    assert result["status"]["results"][0]["state"] == "ok"
    assert len(await nodes(api)) == 3


async def test_scheduled_targets_are_scanned_when_due(api, dsn, emulator, conn):
    cred = await credential(api)
    await create(api, "/discovery/v1/targets", {"metadata": {"id": "nightly"}, "spec": {
        "driver": "redfish", "address": emulator.url, "credentialId": cred, "scheduleS": 3600}})
    async with running(DiscoveryScanner(dsn, box())):
        for _ in range(300):
            if await conn.fetchval("SELECT count(*) FROM discovery.scans WHERE requested_by = 'schedule' "
                                   "AND state = 'completed'"):
                break
            await asyncio.sleep(0.1)
    assert await conn.fetchval("SELECT count(*) FROM discovery.scans") == 1  # due once, not again within the hour
    assert len(await nodes(api)) == 3


async def test_bad_targets_and_scans_are_refused_and_change_nothing(api, conn):
    cases = [
        ({"driver": "redfish", "address": ""}, "$.spec.address"),
        ({"driver": "redfish", "address": "10.0.0.0/8"}, "$.spec.address"),
        ({"driver": "redfish", "address": "10.0.0.9-10.0.0.1"}, "$.spec.address"),
        ({"driver": "redfish", "address": "http://bmc:99999"}, "$.spec.address"),
        ({"driver": "redfish", "address": "10.0.0.1", "document": "x"}, "$.spec.document"),
        ({"driver": "redfish", "address": "10.0.0.1", "credentialId": "nope"}, "$.spec.credentialId"),
        ({"driver": "csv", "document": "id,name\nx,y\n"}, "$.spec.document"),
        ({"driver": "csv", "document": "mac\nnot-a-mac\n"}, "$.spec.document"),
        ({"driver": "json", "document": "{"}, "$.spec.document"),
        ({"driver": "json"}, "$.spec.document"),
    ]
    for spec, field in cases:
        body = problem_of(await api.post("/discovery/v1/targets", json={"spec": spec}), 422)
        assert body["errors"][0]["field"] == field, (spec, body)
    problem_of(await api.post("/discovery/v1/targets", json={"spec": {"driver": "ipmi", "address": "x"}}), 422)
    problem_of(await api.post("/discovery/v1/targets", json={"spec": {"driver": "redfish", "address": "x",
                                                                      "schedule_s": 5}}), 422)
    problem_of(await api.post("/discovery/v1/scans", json={"targets": ["missing"]}), 422)
    problem_of(await api.post("/discovery/v1/scans", json={}), 422)  # no targets at all yet
    problem_of(await api.get("/discovery/v1/scans/scan-nope"), 404)
    problem_of(await api.get("/discovery/v1/scans", params={"state": "exploded"}), 400)
    assert await conn.fetchval("SELECT count(*) FROM discovery.targets") == 0
    assert await conn.fetchval("SELECT count(*) FROM discovery.scans") == 0
    drivers = (await api.get("/discovery/v1/drivers")).json()
    assert [d["name"] for d in drivers] == ["redfish", "csv", "json", "ipmi", "snmp"]


async def test_a_viewer_reads_but_cannot_scan(anonymous, dsn):
    token = await token_for(anonymous, dsn, "viewer", ["viewer"])
    headers = {"Authorization": f"Bearer {token}"}
    assert (await anonymous.get("/discovery/v1/scans", headers=headers)).status_code == 200
    body = problem_of(await anonymous.post("/discovery/v1/scans", json={}, headers=headers), 403)
    assert "write:discovery" in body["detail"]
