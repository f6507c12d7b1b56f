"""Switch discovery over SNMP (the snmp driver), scanned by the real scanner against snmpsim serving a switch."""

import json
import logging
import time

import pytest

from sync.discovery.scanner import DiscoveryScanner
from tests.helpers.api import create, problem_of, scan
from tests.helpers.keys import box
from tests.helpers.snmpsim import (
    V3_AUTH_KEY,
    V3_PRIV_KEY,
    V3_USER,
    SnmpSim,
    free_udp_port,
    switch_records,
)
from tests.helpers.tasks import running

COMMUNITY = "c0mmunity-s3cret-7"   # snmpsim serves the switch to this community (its file's name)
V3_CONTEXT = "leaf1"               # ... and to SNMPv3 requests for this context
NICS = "/hsm/v2/Inventory/EthernetInterfaces"
TIMEOUT_S = 10.0                   # the scanner's per-host timeout in these tests

BRIDGE, STATION = b"\x20\x00", b"\x80\x00"  # LLDP capabilities enabled: bridge; station only
PORTS = {1: "Ethernet1", 2: "Ethernet2", 3: "Ethernet3", 4: "Ethernet4", 5: "Ethernet5", 6: "Ethernet6",
         7: "mgmt0"}
UPLINK_MACS = [f"02:00:00:00:06:{n:02x}" for n in range(1, 7)]
FDB = [("02:00:00:00:01:01", 1, 3), ("0c:00:00:00:00:ff", 1, 4),  # a node's MAC; the switch's own (self)
       ("02:00:00:00:02:01", 2, 3), ("02:00:00:00:02:02", 2, 3),  # a node with two NICs on its port
       ("02:00:00:00:04:01", 4, 3),                              # port 4 names node-4, which does not exist
       ("02:00:00:00:05:01", 5, 3),                              # a MAC another component already has
       ("02:00:00:00:07:01", 7, 3)] + [(mac, 6, 3) for mac in UPLINK_MACS]
QFDB = [("02:00:00:00:03:01", 3, 3)]  # a VLAN-aware switch reports this one only in Q-BRIDGE-MIB
LLDP = {2: ("node-2", "eth0", STATION), 6: ("spine1", "Ethernet32", BRIDGE)}
BY_NAME = {"portPattern": r"^Ethernet(?P<port>\d+)$", "nodeId": "node-{port}"}


@pytest.fixture(scope="module")
def switch():
    records = switch_records("leaf1", PORTS, FDB, QFDB, LLDP)
    sim = SnmpSim({COMMUNITY: records, V3_CONTEXT: records}).start()
    yield sim
    sim.close()


async def node(api, node_id, rack=None, unit=None):
    spec = {"type": "Node", "state": "Ready"}
    if rack:
        spec["location"] = {"rack": rack, "unit": unit}
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": node_id}, "spec": spec})


async def credential(api, credential_id, username, secret):
    await create(api, "/auth/v1/credentials", {"id": credential_id, "username": username, "secret": secret})
    return credential_id


async def target(api, target_id, address, credential_id, mapping=None, **snmp):
    await create(api, "/discovery/v1/targets", {"metadata": {"id": target_id}, "spec": {
        "driver": "snmp", "address": address, "credentialId": credential_id,
        "snmp": {"mapping": mapping or BY_NAME, **snmp}}})


async def macs_of(api, component_id):
    items = (await api.get(NICS, params={"componentId": component_id})).json()["items"]
    return sorted(item["spec"]["macAddr"] for item in items)


async def assert_never_shown(secrets, api, conn, caplog, *answers):
    """No secret in the answers, the scan rows, the events, the audit, the targets as read back, or the logs."""
    targets = (await api.get("/discovery/v1/targets")).text
    stored = [targets, caplog.text, *(json.dumps(a) for a in answers)]
    for query in ("SELECT row_to_json(h)::text FROM discovery.scan_hosts h",
                  "SELECT row_to_json(o)::text FROM events.outbox o",
                  "SELECT row_to_json(a)::text FROM auth.audit a"):
        stored += [row[0] for row in await conn.fetch(query)]
    assert caplog.records  # the scanner did log; it is what was searched
    for secret in secrets:
        assert not [text for text in stored if secret in text], secret


async def test_v2c_attaches_learned_macs_to_the_nodes_their_ports_name(api, dsn, conn, switch, caplog):
    caplog.set_level(logging.DEBUG)
    for n in (1, 2, 3, 5):
        await node(api, f"node-{n}")
    await node(api, "other")
    await create(api, NICS, {"spec": {"componentId": "other", "macAddr": "02:00:00:00:05:01"}})
    await target(api, "leaf1", switch.address, await credential(api, "leaf1-community", "snmp", COMMUNITY))
    async with running(DiscoveryScanner(dsn, box(), timeout_s=TIMEOUT_S)):
        result = await scan(api, ["leaf1"])

    [host] = result["status"]["results"]
    assert host["host"] == f"snmp://{switch.address}"
    assert await macs_of(api, "node-1") == ["02:00:00:00:01:01"]  # not the switch's own MAC on the same port
    assert await macs_of(api, "node-2") == ["02:00:00:00:02:01", "02:00:00:00:02:02"]
    assert await macs_of(api, "node-3") == ["02:00:00:00:03:01"]  # from Q-BRIDGE-MIB
    nic = (await api.get(NICS, params={"componentId": "node-1"})).json()["items"][0]["spec"]
    assert nic["description"] == "learned on leaf1 Ethernet1"
    # The conflict: reported, and the MAC stays where it was.
    assert await macs_of(api, "other") == ["02:00:00:00:05:01"] and await macs_of(api, "node-5") == []
    assert host["state"] == "failed"  # a conflict needs an admin's eye, as with a Redfish scan
    assert "conflict: MAC 02:00:00:00:05:01 on leaf1 Ethernet5 belongs to 'other', not 'node-5'" in host["detail"]
    assert "Ethernet4 names node 'node-4': no such node; MACs 02:00:00:00:04:01 not attached" in host["detail"]
    # The uplink (an LLDP neighbour that is a bridge, six MACs) is skipped, and said so.
    assert ("Ethernet6: uplink to a bridge or router (LLDP: spine1 port Ethernet32); its 6 MACs skipped"
            in host["detail"])
    assert "1 ports with MACs do not match portPattern" in host["detail"]  # mgmt0
    assert await conn.fetchval("SELECT count(*) FROM smd.ethernet_interfaces WHERE mac = ANY($1::text[])",
                               UPLINK_MACS + ["02:00:00:00:04:01", "02:00:00:00:07:01"]) == 0
    # The switch itself, by its sysName.
    switch_component = (await api.get("/hsm/v2/State/Components/leaf1")).json()
    assert switch_component["spec"]["type"] == "Switch"
    assert sorted(host["components"]) == ["leaf1", "node-1", "node-2", "node-3"]
    event = await conn.fetchval("SELECT data FROM events.outbox WHERE type = 'chamicore.smd.ethernetinterfaces.created' "
                                "AND subject = '020000000101'")
    assert event["source"] == "discovery" and event["scan"] == result["metadata"]["id"]

    # A re-scan changes nothing and duplicates nothing.
    before = await conn.fetchval("SELECT count(*) FROM events.outbox")
    async with running(DiscoveryScanner(dsn, box(), timeout_s=TIMEOUT_S)):
        again = await scan(api, ["leaf1"])
    assert again["status"]["results"][0]["detail"] == host["detail"]
    assert await conn.fetchval("SELECT count(*) FROM events.outbox") == before + 2  # the scan's created + failed
    await assert_never_shown([COMMUNITY], api, conn, caplog, result, again)


async def test_v3_maps_ports_to_nodes_by_location(api, dsn, conn, switch, caplog):
    caplog.set_level(logging.DEBUG)
    for unit in (1, 2, 3):
        await node(api, f"r7u{unit}", rack="R7", unit=unit)
    keys = json.dumps({"authKey": V3_AUTH_KEY, "privKey": V3_PRIV_KEY})
    await target(api, "leaf1-v3", switch.address, await credential(api, "leaf1-v3", V3_USER, keys),
                 {"portPattern": r"Ethernet(?P<port>[1-3])", "rack": "R7", "unit": "{port}"},
                 version="3", authProtocol="SHA", privProtocol="AES128", contextName=V3_CONTEXT)
    async with running(DiscoveryScanner(dsn, box(), timeout_s=TIMEOUT_S)):
        result = await scan(api, ["leaf1-v3"])
    [host] = result["status"]["results"]
    assert host["state"] == "ok", host
    assert await macs_of(api, "r7u1") == ["02:00:00:00:01:01"]
    assert await macs_of(api, "r7u2") == ["02:00:00:00:02:01", "02:00:00:00:02:02"]
    assert await macs_of(api, "r7u3") == ["02:00:00:00:03:01"]
    # Ports 4-6 do not match this rule's pattern (6 is still an uplink, skipped before any rule is asked).
    assert "Ethernet6: uplink" in host["detail"] and "3 ports with MACs do not match portPattern" in host["detail"]
    await assert_never_shown([V3_AUTH_KEY, V3_PRIV_KEY], api, conn, caplog, result)


async def test_a_bad_or_silent_switch_fails_its_own_host_within_the_timeout(api, dsn, conn, switch, caplog):
    caplog.set_level(logging.DEBUG)
    await node(api, "node-1")
    await target(api, "good", switch.address, await credential(api, "good", "snmp", COMMUNITY))
    await target(api, "wrong-community", switch.address, await credential(api, "wrong", "snmp", "not-the-community"))
    await target(api, "silent", f"127.0.0.1:{free_udp_port()}", "good")  # nothing listens there
    bad_keys = json.dumps({"authKey": "wrong-auth-key-9", "privKey": V3_PRIV_KEY})
    await target(api, "wrong-keys", switch.address, await credential(api, "wrong-keys", V3_USER, bad_keys),
                 version="3", contextName=V3_CONTEXT)
    started = time.monotonic()
    async with running(DiscoveryScanner(dsn, box(), timeout_s=TIMEOUT_S)) as scanner:
        result = await scan(api, ["good", "wrong-community", "silent", "wrong-keys"])
    # The hosts run side by side, each within its timeout: the scan does not take four of them.
    assert time.monotonic() - started < TIMEOUT_S + 5
    assert result["status"]["state"] == "completed", result["status"]["results"]
    assert result["status"]["error"] == "3 of 4 hosts failed"
    assert scanner.counts()["hostsFailed"] == 3
    hosts = {h["targetId"]: h for h in result["status"]["results"]}
    assert hosts["good"]["state"] == "ok"  # no conflict here: node-4 and node-5 do not exist, only reported
    assert await macs_of(api, "node-1") == ["02:00:00:00:01:01"]
    assert hosts["wrong-community"]["state"] == "failed"
    assert "no SNMP answer" in hosts["wrong-community"]["detail"]
    assert "credential 'wrong'" in hosts["wrong-community"]["detail"]
    assert hosts["silent"]["state"] == "failed" and "no SNMP answer" in hosts["silent"]["detail"]
    assert hosts["wrong-keys"]["state"] == "failed"
    assert "refused credential 'wrong-keys'" in hosts["wrong-keys"]["detail"]
    await assert_never_shown([COMMUNITY, "not-the-community", "wrong-auth-key-9", V3_PRIV_KEY], api, conn, caplog,
                             result)


async def test_bad_targets_are_refused_naming_the_field_and_change_nothing(api, conn):
    cred = await credential(api, "leaf-community", "snmp", COMMUNITY)
    base = {"driver": "snmp", "address": "10.0.0.2", "credentialId": cred, "snmp": {"mapping": BY_NAME}}
    cases = [
        ({"snmp": {"mapping": {**BY_NAME, "portPattern": "Ethernet(?P<port>\\d+"}}},
         "$.spec.snmp.mapping.portPattern"),
        ({"snmp": {"mapping": {**BY_NAME, "nodeId": "node-{slot}"}}}, "$.spec.snmp.mapping.nodeId"),
        ({"snmp": {"mapping": {**BY_NAME, "nodeId": "node-{port.__class__}"}}}, "$.spec.snmp.mapping.nodeId"),
        ({"snmp": {"mapping": {**BY_NAME, "nodeId": "node-{port!r}"}}}, "$.spec.snmp.mapping.nodeId"),
        ({"snmp": {"mapping": {**BY_NAME, "nodeId": "node-{port:>999999999}"}}}, "$.spec.snmp.mapping.nodeId"),
        ({"snmp": {"mapping": {**BY_NAME, "nodeId": "node-{port:03}"}}}, "$.spec.snmp.mapping.nodeId"),
        ({"snmp": {"mapping": {**BY_NAME, "nodeId": "node-{port"}}}, "$.spec.snmp.mapping.nodeId"),
        ({"snmp": {"mapping": {**BY_NAME, "rack": "R1", "unit": "{port}"}}}, "$.spec.snmp.mapping.nodeId"),
        ({"snmp": {"mapping": {"portPattern": "x(?P<u>\\d)", "rack": "R1"}}}, "$.spec.snmp.mapping"),
        ({"address": "http://10.0.0.2/"}, "$.spec.address"),
        ({"address": "switch 1"}, "$.spec.address"),
        ({"credentialId": None}, "$.spec.credentialId"),
        ({"document": "mac\n02:00:00:00:00:01\n"}, "$.spec.document"),
        ({"driver": "redfish"}, "$.spec.snmp"),
        ({"snmp": None}, "$.spec.snmp"),
    ]
    for change, field in cases:
        response = await api.post("/discovery/v1/targets", json={"spec": {**base, **change}})
        body = problem_of(response, 422)
        assert [e["field"] for e in body.get("errors", [])] == [field], (change, body)
    assert problem_of(await api.post("/discovery/v1/targets", json={"spec": {
        **base, "snmp": {"mapping": BY_NAME, "version": "1"}}}), 422)
    assert await conn.fetchval("SELECT count(*) FROM discovery.targets") == 0
    # A good one is shown back as written, with its rule, and never its secret.
    created = await create(api, "/discovery/v1/targets", {"metadata": {"id": "sw"}, "spec": base})
    mapping = created["spec"]["snmp"]["mapping"]
    assert {name: mapping[name] for name in (*BY_NAME, "maxMacsPerPort")} == {**BY_NAME, "maxMacsPerPort": 4}
    assert created["spec"]["snmp"]["version"] == "2c" and COMMUNITY not in json.dumps(created)


# Catastrophic backtracking on a name of 40 a's: well over 10 s of re's or regex's time without a limit.
SLOW = {"portPattern": r"(?:(?:a|aa)+!|Ethernet(?P<port>\d+))", "nodeId": "node-{port}"}


async def test_a_port_pattern_that_backtracks_without_end_stops_its_switch_not_the_daemon(api, dsn, conn):
    """portPattern runs with a time limit per port name (names come from the switch): the pattern that runs out of
    time stops that switch's attach with a problem naming the port, instead of holding the sync daemon."""
    ports = {1: "Ethernet1", 2: "a" * 40, 3: "Ethernet3"}
    fdb = [("02:00:00:00:11:01", 1, 3), ("02:00:00:00:11:02", 2, 3), ("02:00:00:00:11:03", 3, 3)]
    sim = SnmpSim({COMMUNITY: switch_records("leaf9", ports, fdb, [], {})}).start()
    try:
        for n in (1, 3):
            await node(api, f"node-{n}")
        await target(api, "leaf9", sim.address, await credential(api, "leaf9-community", "snmp", COMMUNITY), SLOW)
        async with running(DiscoveryScanner(dsn, box(), timeout_s=TIMEOUT_S)):
            result = await scan(api, ["leaf9"])
    finally:
        sim.close()
    [host] = result["status"]["results"]
    assert "portPattern took over 50 ms on the port name 'aaaa" in host["detail"], host
    assert "simplify it; this switch's remaining ports skipped" in host["detail"]
    assert await macs_of(api, "node-1") == ["02:00:00:00:11:01"]  # the port before it is attached
    assert await macs_of(api, "node-3") == []  # the ports after it are not
