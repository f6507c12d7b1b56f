"""coresmd's cache refresh against a real admin server: 100,000 nodes, each with one interface, polled the
way coresmd polls SMD every 30 s (two GETs, no token, CHAMICORE_OPENCHAMI_PUBLIC_READS on) and decoded
into coresmd's own structures (internal/smdclient/smdclient.go).  Every row must arrive with what coresmd
uses: the MAC as an exact lower-case colon key, its component, type and first IP; the node's NID."""

import asyncio
import random
import re
import urllib.request

import msgspec

from core import db

NODES = 100_000
BMCS = 16  # a few NodeBMCs with an interface each: coresmd treats them apart from nodes
SMD = "/openchami/hsm/v2"
MAC = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}")  # the DHCP server's spelling, which coresmd matches exactly

SEED = """
INSERT INTO smd.components (id, type, state, role, nid, rack, unit, slot, sub_slot)
SELECT format('x%sc0s%sb0n0', 1000 + i / 64, i % 64), 'Node', 'Ready', 'Compute', i + 1,
       format('x%s', 1000 + i / 64), 0, i % 64, 0
FROM generate_series(0, {nodes} - 1) AS i;

INSERT INTO smd.ethernet_interfaces (id, component_id, mac, ip_addrs, description)
SELECT replace(m, ':', ''), format('x%sc0s%sb0n0', 1000 + i / 64, i % 64), m,
       jsonb_build_array(jsonb_build_object('ipAddress', format('10.%s.%s.%s', i >> 16 & 255, i >> 8 & 255,
                                                                i & 255), 'network', 'mgmt')),
       format('Interface 0 for nid%s', i + 1)
FROM generate_series(0, {nodes} - 1) AS i,
     lpad(to_hex(i), 8, '0') AS h,
     concat_ws(':', '02', '00', substr(h, 1, 2), substr(h, 3, 2), substr(h, 5, 2), substr(h, 7, 2)) AS m;

INSERT INTO smd.components (id, type, state, rack, unit, slot)
SELECT format('x9000c0s%sb0', b), 'BMC', 'Ready', 'x9000', 0, b FROM generate_series(0, {bmcs} - 1) AS b;
INSERT INTO smd.ethernet_interfaces (id, component_id, mac, ip_addrs)
SELECT format('0a0000%s', lpad(to_hex(b), 6, '0')), format('x9000c0s%sb0', b),
       format('0a:00:00:%s:%s:%s', '00', '00', lpad(to_hex(b), 2, '0')),
       jsonb_build_array(jsonb_build_object('ipAddress', format('172.16.0.%s', b + 1)))
FROM generate_series(0, {bmcs} - 1) AS b;
"""


def node_of(i: int) -> tuple[str, str, str]:
    """(xname, MAC, IP) of node i as SEED writes them."""
    return (f"x{1000 + i // 64}c0s{i % 64}b0n0", f"02:00:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:"
            f"{i >> 8 & 255:02x}:{i & 255:02x}", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")


# coresmd's structures, field for field.
class IPAddress(msgspec.Struct):
    IPAddress: str


class EthernetInterface(msgspec.Struct):
    MACAddress: str
    ComponentID: str
    Type: str
    Description: str
    IPAddresses: list[IPAddress]


class Component(msgspec.Struct):
    ID: str
    Type: str
    NID: int = 0


class Components(msgspec.Struct):
    Components: list[Component]


def poll(url: str) -> bytes:
    """A GET as Go's HTTP client sends it, with no token."""
    request = urllib.request.Request(url, headers={"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200 and response.headers["Content-Type"] == "application/json"
        assert response.headers.get("Content-Encoding") is None
        return response.read()


def test_coresmd_poll_of_100k_nodes(dsn, admin_server):
    async def seed():
        conn = await db.connect(dsn)
        # Without the triggers: the change feed's NOTIFY of 100,000 keys is not what this test is about.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(SEED.format(nodes=NODES, bmcs=BMCS))
        await conn.execute("ANALYZE")
        await conn.close()

    asyncio.run(seed())
    server = admin_server(CHAMICORE_OPENCHAMI_PUBLIC_READS="true")

    raw = poll(server.url + SMD + "/Inventory/EthernetInterfaces")
    interfaces = msgspec.json.decode(raw, type=list[EthernetInterface])
    assert len(interfaces) == NODES + BMCS
    by_mac = {nic.MACAddress: nic for nic in interfaces}
    assert len(by_mac) == NODES + BMCS and all(MAC.fullmatch(mac) for mac in by_mac)
    for i in random.Random(16).sample(range(NODES), 500) + [0, NODES - 1]:
        node, mac, ip = node_of(i)
        nic = by_mac[mac]
        assert (nic.ComponentID, nic.Type, nic.Description) == (node, "Node", f"Interface 0 for nid{i + 1}")
        assert [a.IPAddress for a in nic.IPAddresses] == [ip]
    bmc = by_mac["0a:00:00:00:00:0f"]
    assert (bmc.ComponentID, bmc.Type, [a.IPAddress for a in bmc.IPAddresses]) == ("x9000c0s15b0", "NodeBMC",
                                                                                     ["172.16.0.16"])
    # Without a token only what coresmd reads is shown: no ids, no networks, no timestamps.
    generic = msgspec.json.decode(raw)
    assert {tuple(row) for row in generic} == {("MACAddress", "ComponentID", "Type", "Description", "IPAddresses")}
    assert {tuple(a) for row in generic for a in row["IPAddresses"]} == {("IPAddress",)}

    raw = poll(server.url + SMD + "/State/Components")
    listed = msgspec.json.decode(raw, type=Components).Components
    assert len(listed) == NODES + BMCS
    by_id = {c.ID: c for c in listed}
    for i in random.Random(17).sample(range(NODES), 500):
        node, _, _ = node_of(i)
        assert (by_id[node].Type, by_id[node].NID) == ("Node", i + 1)
    assert (by_id["x9000c0s0b0"].Type, by_id["x9000c0s0b0"].NID) == ("NodeBMC", 0)
    assert {tuple(c) for c in msgspec.json.decode(raw)["Components"]} == {("ID", "Type", "NID"), ("ID", "Type")}
