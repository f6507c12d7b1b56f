"""SMD's RedfishEndpoints and ComponentEndpoints through the OpenCHAMI face.

`ochami discover static` and `magellan send` are replayed as they put their requests on the wire
(reference/openchami-api.md §2.4 and §3): ochami with no Content-Type and its User-Agent, magellan with
`Content-Type: application/json` and its crawler's snake_case keys.  What they leave behind is read back
through the native API and the power-control targets, the way Chamicore itself uses it.
"""

import json
import uuid

from core import power_targets
from tests.helpers.api import create, problem_of
from tests.helpers.keys import box
from tests.helpers.tokens import token_for

SMD = "/openchami/hsm/v2"
RFE = SMD + "/Inventory/RedfishEndpoints"
CEP = SMD + "/Inventory/ComponentEndpoints"
OCHAMI = {"User-Agent": "ochami/0.5.0"}
MAGELLAN = {"Content-Type": "application/json", "User-Agent": "Go-http-client/1.1"}
CLUSTER = "https://demo.openchami.cluster:8443"
ACTIONS = ["On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "ForceOn",
           "PushPowerButton", "PowerCycle", "Suspend", "Pause", "Resume"]
RESET_TYPES = ["On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi"]

BMCS = [{"xname": "x1000c1s7b0", "mac": "de:ca:fc:0f:fe:e1", "ip": "172.16.0.101"},
        {"xname": "x1000c1s7b1", "mac": "de:ca:fc:0f:fe:e2", "ip": "172.16.0.102"}]
NODES = [
    {"name": "nid001", "nid": 1, "xname": "x1000c1s7b0n0", "bmc": "x1000c1s7b0",
     "interfaces": [{"mac_addr": "de:ad:be:ee:ee:f1", "ip_addrs": [{"name": "internal", "ip_addr": "172.16.0.1"}]},
                    {"mac_addr": "de:ad:be:ee:ee:f2", "ip_addrs": [{"name": "external", "ip_addr": "10.15.3.100"}]}]},
    {"name": "nid002", "nid": 2, "xname": "x1000c1s7b0n1", "bmc": "x1000c1s7b0",
     "interfaces": [{"mac_addr": "de:ad:be:ee:ee:f3", "ip_addrs": [{"name": "internal", "ip_addr": "172.16.0.2"}]},
                    {"mac_addr": "de:ad:be:ee:ee:f4", "ip_addrs": [{"name": "external", "ip_addr": "10.15.3.101"}]}]},
    {"name": "nid003", "nid": 3, "xname": "x1000c1s7b1n0", "bmc": "x1000c1s7b1",
     "interfaces": [{"mac_addr": "de:ad:be:ee:ee:f5", "ip_addrs": [{"name": "internal", "ip_addr": "172.16.0.3"}]},
                    {"mac_addr": "de:ad:be:ee:ee:f6", "ip_addrs": [{"name": "external", "ip_addr": "10.15.3.102"}]}]},
]


def discover_static_endpoint(bmc):
    """The RedfishEndpoint body `ochami discover static` derives for one BMC (discovery version 2)."""
    systems = [{"uri": f"{CLUSTER}/redfish/v1/Systems/{n['xname']}", "uuid": str(uuid.uuid4()), "name": n["name"],
                "ethernet_interfaces": [{"name": n["xname"], "description": f"Interface {i} for {n['name']}",
                                         "mac": nic["mac_addr"], "ip": nic["ip_addrs"][0]["ip_addr"]}
                                        for i, nic in enumerate(n["interfaces"])],
                "actions": ACTIONS}
               for n in NODES if n["bmc"] == bmc["xname"]]
    return {"ID": bmc["xname"], "Type": "NodeBMC", "UUID": str(uuid.uuid4()), "MACAddr": bmc["mac"],
            "IPAddress": bmc["ip"], "DiscoveryInfo": {"LastAttempt": "0001-01-01T00:00:00Z"}, "SchemaVersion": 1,
            "Systems": systems,
            "Managers": [{"uri": f"{CLUSTER}/redfish/v1/Managers/{bmc['xname']}", "uuid": str(uuid.uuid4()),
                          "name": bmc["xname"],
                          "ethernet_interfaces": [{"name": bmc["xname"], "description": f"Interface for BMC "
                                                   f"{bmc['xname']}", "mac": bmc["mac"], "ip": bmc["ip"]}],
                          "actions": None, "description": "", "type": "NodeBMC"}]}


def magellan_system(host, system_id, system_uuid, macs, chassis=True):
    """One crawled ComputerSystem as magellan's crawler encodes it (models.InventoryDetail)."""
    return {"uri": f"{host}:443/redfish/v1/Systems/{system_id}", "uuid": system_uuid, "manufacturer": "Dell Inc.",
            "system_type": "Physical", "name": "System", "model": "PowerEdge R650", "serial": "7XJ2KQ3",
            "serial_console": {"impi": {}, "telnet": {}, "ssh": {"port": 22, "enabled": True}},
            "bios_version": "1.9.2",
            "ethernet_interfaces": [
                {"uri": f"{host}:443/redfish/v1/Systems/{system_id}/EthernetInterfaces/NIC.{i}", "mac": mac.upper(),
                 "ip": f"10.1.0.{10 + i}" if i == 0 else "", "name": f"NIC {i}", "description": "Ethernet Interface",
                 "enabled": True} for i, mac in enumerate(macs)]
            + [{"uri": f"{host}:443/redfish/v1/Systems/{system_id}/EthernetInterfaces/ib0", "name": "ib0"}],
            "network_interfaces": [{"uri": f"{host}:443/redfish/v1/Systems/{system_id}/NetworkInterfaces/NIC.1",
                                    "name": "NIC 1", "adapter": {"manufacturer": "Broadcom", "model": "BCM57414"}}],
            "actions": ["On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi"],
            "power": {"state": "On", "mode": "", "restore_policy": "AlwaysOff",
                      "power_control_ids": [f"/redfish/v1/Chassis/{system_id}/Power#/PowerControl/0"]},
            "processor_count": 2, "processor_type": "Intel Xeon", "memory_total": 255.5,
            "trusted_modules": ["TPM2_0 7.2.3.1"],
            "links": {"chassis": [f"/redfish/v1/Chassis/{system_id}"] if chassis else [],
                      "managers": ["/redfish/v1/Managers/iDRAC.Embedded.1"]}}


def magellan_body(bmc_id, host, bmc_mac, node_macs):
    """What `magellan send` POSTs for one collected BMC: the system twice (found under Chassis and under
    Systems, same UUID), the BMC's manager, the MAC found by its IP, and a user but no password."""
    system_uuid = str(uuid.uuid4())
    return {"ID": bmc_id, "Type": "", "Name": "", "FQDN": host, "User": "root", "MACRequired": True,
            "RediscoverOnUpdate": False, "SchemaVersion": 1, "MACAddr": bmc_mac,
            "Systems": [magellan_system(host, "System.Embedded.1", system_uuid, node_macs),
                        magellan_system(host, "System.Embedded.1", system_uuid, node_macs, chassis=False)],
            "Managers": [{"uri": f"{host}:443/redfish/v1/Managers/iDRAC.Embedded.1",
                          "uuid": str(uuid.uuid4()), "name": "Manager", "description": "BMC", "model": "14G Monolithic",
                          "type": "BMC", "firmware_version": "6.10.30.00",
                          "ethernet_interfaces": [{"uri": f"{host}:443/redfish/v1/Managers/iDRAC.Embedded.1/"
                                                          "EthernetInterfaces/NIC.1", "mac": bmc_mac.upper(),
                                                   "ip": host.removeprefix("https://"), "name": "Manager Ethernet",
                                                   "description": "Management Network Interface", "enabled": True}],
                          "serial_console": None, "command_shell": None}]}


async def send(client, method, path, body=None, headers=OCHAMI, **kwargs):
    content = json.dumps(body).encode() if body is not None else None
    return await client.request(method, path, content=content, headers={**headers, **kwargs.pop("extra", {})},
                                **kwargs)


async def post_components(api):
    """Step 1 of discover static: one request with every node and the user's NID, before the endpoints."""
    body = {"Components": [{"ID": n["xname"], "Type": "Node", "State": "On", "Enabled": True, "NID": n["nid"]}
                           for n in NODES]}
    response = await send(api, "POST", SMD + "/State/Components", body)
    assert response.status_code == 204, response.text


async def nics_of(api, component_id):
    listed = (await api.get(f"/hsm/v2/Inventory/EthernetInterfaces?componentId={component_id}")).json()["items"]
    return sorted((i["spec"]["macAddr"], [a["ipAddress"] for a in i["spec"]["ipAddrs"]],
                    [a["network"] for a in i["spec"]["ipAddrs"]], i["spec"]["description"]) for i in listed)


async def inventory_counts(conn):
    return [await conn.fetchval(f"SELECT count(*) FROM {t}") for t in (
        "smd.components", "smd.ethernet_interfaces", "smd.redfish_endpoints", "smd.redfish_systems",
        "auth.credentials")]


async def outbox(conn, event_type):
    return sorted(r["subject"] for r in await conn.fetch("SELECT subject FROM events.outbox WHERE type = $1",
                                                        event_type))


async def test_discover_static_makes_bmcs_nodes_and_interfaces(api, conn):
    await post_components(api)
    bodies = [discover_static_endpoint(bmc) for bmc in BMCS]
    for body in bodies:
        response = await send(api, "POST", RFE, body)
        assert response.status_code == 201, response.text
        assert response.json() == [{"URI": f"/hsm/v2/Inventory/RedfishEndpoints/{body['ID']}"}]
        assert response.headers["location"] == f"/openchami/hsm/v2/Inventory/RedfishEndpoints/{body['ID']}"

    # The BMCs are components now, located by their xname; the nodes keep the user's NIDs.
    bmc = (await api.get("/hsm/v2/State/Components/x1000c1s7b0")).json()["spec"]
    assert (bmc["type"], bmc["nid"], bmc["enabled"], bmc["location"]) == (
        "BMC", None, True, {"rack": "x1000", "unit": 1, "slot": 7, "subSlot": 0})
    for node in NODES:
        spec = (await api.get(f"/hsm/v2/State/Components/{node['xname']}")).json()["spec"]
        assert (spec["type"], spec["state"], spec["nid"]) == ("Node", "On", node["nid"])
        # Each interface: one IP, no network, the description ochami wrote.
        assert await nics_of(api, node["xname"]) == sorted(
            (nic["mac_addr"], [nic["ip_addrs"][0]["ip_addr"]], [""], f"Interface {i} for {node['name']}")
            for i, nic in enumerate(node["interfaces"]))
    assert await nics_of(api, "x1000c1s7b0") == [("de:ca:fc:0f:fe:e1", ["172.16.0.101"], [""],
                                                 "Interface for BMC x1000c1s7b0")]
    # ... and as ochami and coresmd read them: one IP each, no Network.
    ifaces = (await send(api, "GET", SMD + "/Inventory/EthernetInterfaces", params={"ComponentID": "x1000c1s7b0n1"}))
    assert sorted((i["MACAddress"], i["ComponentID"], i["Type"], i["IPAddresses"]) for i in ifaces.json()) == [
        ("de:ad:be:ee:ee:f3", "x1000c1s7b0n1", "Node", [{"IPAddress": "172.16.0.2"}]),
        ("de:ad:be:ee:ee:f4", "x1000c1s7b0n1", "Node", [{"IPAddress": "10.15.3.101"}])]
    bmcs = (await api.get(SMD + "/State/Components", params={"type": "NodeBMC"})).json()["Components"]
    assert sorted((c["ID"], c["Type"], c.get("NID")) for c in bmcs) == [("x1000c1s7b0", "NodeBMC", None),
                                                                        ("x1000c1s7b1", "NodeBMC", None)]

    # The native endpoint: its address and which Redfish system each node is, which power control uses.
    native = (await api.get("/hsm/v2/Inventory/RedfishEndpoints/x1000c1s7b0")).json()["spec"]
    assert native["address"] == "https://172.16.0.101" and native["insecure"] is False
    assert [(s["componentId"], s["path"], s["uuid"]) for s in native["systems"]] == [
        (s_node["xname"], f"/redfish/v1/Systems/{s_node['xname']}", system["uuid"])
        for s_node, system in zip(NODES[:2], bodies[0]["Systems"], strict=True)]
    targets = {r["id"]: r for r in await power_targets.fetch(conn, [n["xname"] for n in NODES])}
    assert (targets["x1000c1s7b1n0"]["bmc_id"], targets["x1000c1s7b1n0"]["path"]) == (
        "x1000c1s7b1", "/redfish/v1/Systems/x1000c1s7b1n0")

    # Every write went through the write layer: its events are there, one per object.
    assert await outbox(conn, "chamicore.smd.components.created") == sorted(
        [b["xname"] for b in BMCS] + [n["xname"] for n in NODES])
    assert len(await outbox(conn, "chamicore.smd.ethernetinterfaces.created")) == 8
    assert await outbox(conn, "chamicore.smd.redfish-endpoints.created") == ["x1000c1s7b0", "x1000c1s7b1"]

    # smd rfe get, as ochami prints it.
    listed = (await send(api, "GET", RFE)).json()["RedfishEndpoints"]
    assert listed[0] == {"ID": "x1000c1s7b0", "Type": "NodeBMC", "Hostname": "172.16.0.101", "Domain": "",
                         "FQDN": "172.16.0.101", "Enabled": True, "User": "", "Password": "",
                         "RediscoverOnUpdate": False, "DiscoveryInfo": {"LastDiscoveryStatus": "NotYetQueried"},
                         "MACAddr": "de:ca:fc:0f:fe:e1", "IPAddress": "172.16.0.101"}
    assert [e["ID"] for e in listed] == ["x1000c1s7b0", "x1000c1s7b1"]

    # Component endpoints: what BSS and PCS read (a ComputerSystem per node, a Manager per BMC).
    nodes = (await api.get(CEP + "?type=Node")).json()["ComponentEndpoints"]
    assert [e["ID"] for e in nodes] == ["x1000c1s7b0n0", "x1000c1s7b0n1", "x1000c1s7b1n0"]
    first = nodes[0]
    assert (first["RedfishEndpointID"], first["ComponentEndpointType"], first["RedfishType"], first["Enabled"],
            first["OdataID"], first["RedfishURL"], first["RedfishEndpointFQDN"], first["UUID"]) == (
        "x1000c1s7b0", "ComponentEndpointComputerSystem", "ComputerSystem", True,
        "/redfish/v1/Systems/x1000c1s7b0n0", "172.16.0.101/redfish/v1/Systems/x1000c1s7b0n0", "172.16.0.101",
        bodies[0]["Systems"][0]["uuid"])
    reset = first["RedfishSystemInfo"]["Actions"]["#ComputerSystem.Reset"]
    assert reset == {"ResetType@Redfish.AllowableValues": RESET_TYPES,
                     "target": "/redfish/v1/Systems/x1000c1s7b0n0/Actions/ComputerSystem.Reset"}
    assert sorted(n["MACAddress"] for n in first["RedfishSystemInfo"]["EthernetNICInfo"]) == [
        "de:ad:be:ee:ee:f1", "de:ad:be:ee:ee:f2"]
    manager = (await api.get(CEP + "/x1000c1s7b1")).json()
    assert (manager["Type"], manager["ComponentEndpointType"], manager["RedfishEndpointID"]) == (
        "NodeBMC", "ComponentEndpointManager", "x1000c1s7b1")
    assert [n["MACAddress"] for n in manager["RedfishManagerInfo"]["EthernetNICInfo"]] == ["de:ca:fc:0f:fe:e2"]
    assert (await api.get(CEP + "?redfish_ep_id=x1000c1s7b1")).json()["ComponentEndpoints"][0]["ID"] == "x1000c1s7b1"
    problem_of(await api.get(CEP + "/x9c0s0b0n0"), 404)


async def test_a_second_post_is_409_and_overwrite_puts(api, conn):
    await post_components(api)
    body = discover_static_endpoint(BMCS[0])
    assert (await send(api, "POST", RFE, body)).status_code == 201
    before = await inventory_counts(conn)
    problem_of(await send(api, "POST", RFE, body), 409)  # ochami --overwrite keys off exactly this
    assert await inventory_counts(conn) == before

    # --overwrite: the same body PUT; a changed IP and a new node NIC are taken, the NIDs stay.
    body["Systems"][0]["ethernet_interfaces"][0]["ip"] = "172.16.0.201"
    body["Systems"][1]["ethernet_interfaces"].append({"name": "x1000c1s7b0n1", "description": "Interface 2 for nid002",
                                                      "mac": "de:ad:be:ee:ee:f9", "ip": "172.16.0.202"})
    put = await send(api, "PUT", RFE + "/x1000c1s7b0", body)
    assert put.status_code == 200, put.text
    assert (put.json()["ID"], put.json()["Password"], put.json()["MACAddr"]) == ("x1000c1s7b0", "", "de:ca:fc:0f:fe:e1")
    assert ("de:ad:be:ee:ee:f1", ["172.16.0.201"], [""], "Interface 0 for nid001") in await nics_of(api, "x1000c1s7b0n0")
    assert len(await nics_of(api, "x1000c1s7b0n1")) == 3
    assert [(await api.get(f"/hsm/v2/State/Components/{n}")).json()["spec"]["nid"]
            for n in ("x1000c1s7b0n0", "x1000c1s7b0n1")] == [1, 2]

    # A PUT for an endpoint that does not exist creates it (magellan --force-update after any failure).
    fresh = await send(api, "PUT", RFE + "/x1000c1s7b1", discover_static_endpoint(BMCS[1]))
    assert fresh.status_code == 200 and fresh.json()["IPAddress"] == "172.16.0.102"
    problem_of(await send(api, "PUT", RFE + "/x1000c1s7b1", {"ID": "x1000c1s7b0"}), 400)  # ID must match the path
    # A plain PUT (no SchemaVersion) keeps the systems the endpoint has.
    assert (await send(api, "PUT", RFE + "/x1000c1s7b0", {"ID": "x1000c1s7b0", "IPAddress": "172.16.0.101"})
            ).status_code == 200
    assert len((await api.get("/hsm/v2/Inventory/RedfishEndpoints/x1000c1s7b0")).json()["spec"]["systems"]) == 2


async def test_magellan_send(api, conn):
    body = magellan_body("x1000c1s7b0", "https://172.16.0.101", "b0:7b:25:aa:00:01",
                         ["b0:7b:25:aa:10:01", "b0:7b:25:aa:10:02"])
    response = await send(api, "POST", RFE, body, headers=MAGELLAN)
    assert response.status_code == 201, response.text

    # One node for the system found twice; a new node: NID 1, Role Compute, State On.
    node = (await api.get("/hsm/v2/State/Components/x1000c1s7b0n0")).json()["spec"]
    assert (node["type"], node["state"], node["role"], node["nid"]) == ("Node", "On", "Compute", 1)
    assert (await api.get("/hsm/v2/State/Components/x1000c1s7b0n1")).status_code == 404
    assert await nics_of(api, "x1000c1s7b0n0") == [("b0:7b:25:aa:10:01", ["10.1.0.10"], [""], "Ethernet Interface"),
                                                   ("b0:7b:25:aa:10:02", [], [], "Ethernet Interface")]
    assert await nics_of(api, "x1000c1s7b0") == [("b0:7b:25:aa:00:01", ["172.16.0.101"], [""],
                                                 "Management Network Interface")]
    native = (await api.get("/hsm/v2/Inventory/RedfishEndpoints/x1000c1s7b0")).json()["spec"]
    assert native["address"] == "https://172.16.0.101" and native["credentialId"] is None
    [system] = native["systems"]
    assert (system["path"], system["uuid"], system["serial"], system["manufacturer"], system["model"]) == (
        "/redfish/v1/Systems/System.Embedded.1", body["Systems"][0]["uuid"], "7XJ2KQ3", "Dell Inc.", "PowerEdge R650")
    # A user name without a password stores nothing: power control says what is missing.
    [target] = await power_targets.fetch(conn, ["x1000c1s7b0n0"])
    assert "has no credential" in power_targets.target_problem(target)
    assert (await send(api, "GET", RFE + "/x1000c1s7b0")).json()["User"] == ""

    # A second BMC: its node is i = 0 again, and NID 1 is taken, so it gets none (NIDs are unique here).
    second = magellan_body("x1000c1s7b1", "https://172.16.0.102", "b0:7b:25:aa:00:02", ["b0:7b:25:aa:20:01"])
    assert (await send(api, "POST", RFE, second, headers=MAGELLAN)).status_code == 201
    assert (await api.get("/hsm/v2/State/Components/x1000c1s7b1n0")).json()["spec"]["nid"] is None

    # --force-update: any failure is followed by a PUT of the same body.
    problem_of(await send(api, "POST", RFE, body, headers=MAGELLAN), 409)
    assert (await send(api, "PUT", RFE + "/x1000c1s7b0", body, headers=MAGELLAN)).status_code == 200
    assert await conn.fetchval("SELECT count(*) FROM smd.components WHERE type = 'Node'") == 2


async def test_credentials_are_stored_sealed_and_never_shown(api, anonymous, conn, dsn):
    body = {**discover_static_endpoint(BMCS[0]), "User": "root", "Password": "s3cr3t-bmc-pw", "Systems": []}
    created = await send(api, "POST", RFE, body)
    assert created.status_code == 201 and b"s3cr3t" not in created.content
    row = await conn.fetchrow("SELECT * FROM auth.credentials WHERE id = 'x1000c1s7b0-redfish'")
    assert row["username"] == "root"
    assert box().open(bytes(row["secret_enc"]), row["id"]).decode() == "s3cr3t-bmc-pw"
    assert await conn.fetchval("SELECT credential_id FROM smd.redfish_endpoints WHERE id = 'x1000c1s7b0'") == row["id"]
    for path in (RFE, RFE + "/x1000c1s7b0", CEP, "/hsm/v2/Inventory/RedfishEndpoints/x1000c1s7b0",
                 "/auth/v1/credentials/x1000c1s7b0-redfish"):
        got = await api.get(path)
        assert got.status_code == 200 and b"s3cr3t" not in got.content, path
    shown = (await api.get(RFE + "/x1000c1s7b0")).json()
    assert (shown["User"], shown["Password"]) == ("root", "")
    audit = await conn.fetch("SELECT * FROM auth.audit")
    assert audit and not any("s3cr3t" in str(dict(r)) for r in audit)

    # A PUT without a password keeps the credential; one with a new password replaces the secret.
    assert (await send(api, "PUT", RFE + "/x1000c1s7b0", {**body, "Password": ""})).status_code == 200
    assert await conn.fetchval("SELECT credential_id FROM smd.redfish_endpoints WHERE id = 'x1000c1s7b0'") == row["id"]
    put = await send(api, "PUT", RFE + "/x1000c1s7b0", {**body, "Password": "rotated-pw"})
    assert put.status_code == 200 and b"rotated" not in put.content
    sealed = await conn.fetchval("SELECT secret_enc FROM auth.credentials WHERE id = 'x1000c1s7b0-redfish'")
    assert box().open(bytes(sealed), row["id"]).decode() == "rotated-pw"

    # The operator stores BMC passwords (write:credentials) without reading secrets: allowed.
    operator = {"Authorization": "Bearer " + await token_for(anonymous, dsn, "ops", ["operator"])}
    with_node = {**discover_static_endpoint(BMCS[1]), "User": "root", "Password": "other-pw"}
    assert (await send(anonymous, "POST", RFE, with_node, extra=operator)).status_code == 201
    [target] = await power_targets.fetch(conn, ["x1000c1s7b1n0"])
    assert power_targets.target_problem(target) is None and target["credential_id"] == "x1000c1s7b1-redfish"


async def test_scopes(api, anonymous, conn, dsn):
    assert (await api.put("/auth/v1/roles/inventory", json={"scopes": ["read:smd", "write:smd"]})).status_code in (
        200, 201)
    inventory_only = {"Authorization": "Bearer " + await token_for(anonymous, dsn, "inv", ["inventory"])}
    viewer = {"Authorization": "Bearer " + await token_for(anonymous, dsn, "view", ["viewer"])}
    body = discover_static_endpoint(BMCS[0])
    # A password takes write:credentials too; without it, nothing is written.
    refused = problem_of(await send(anonymous, "POST", RFE, {**body, "User": "root", "Password": "pw"},
                                    extra=inventory_only), 403)
    assert "write:credentials" in refused["detail"] and "pw" not in refused["detail"].replace("password", "")
    assert await inventory_counts(conn) == [0, 0, 0, 0, 0]
    assert (await send(anonymous, "POST", RFE, body, extra=inventory_only)).status_code == 201
    # A viewer reads, and writes nothing.
    assert (await send(anonymous, "GET", RFE, extra=viewer)).json()["RedfishEndpoints"][0]["ID"] == "x1000c1s7b0"
    assert (await send(anonymous, "GET", CEP, extra=viewer)).status_code == 200
    for method, path in (("POST", RFE), ("PUT", RFE + "/x1000c1s7b0"), ("DELETE", RFE + "/x1000c1s7b0"),
                         ("DELETE", RFE)):
        assert "write:smd" in problem_of(await send(anonymous, method, path, body, extra=viewer), 403)["detail"]
    # No token, no answer: BSS probes this route and reads a 401 as "auth is on".
    assert (await anonymous.get(RFE)).status_code == 401
    assert await conn.fetchval("SELECT count(*) FROM smd.redfish_endpoints") == 1


async def test_bad_bodies_are_refused_and_change_nothing(api, conn):
    good = discover_static_endpoint(BMCS[0])
    system = {"uri": f"{CLUSTER}/redfish/v1/Systems/x1000c1s7b0n0", "uuid": str(uuid.uuid4()),
              "ethernet_interfaces": [{"mac": "de:ad:be:ee:ee:f1", "ip": "172.16.0.1"}]}
    good["Systems"] = [system]
    bad = [
        {**good, "ID": "bmc-1"}, {**good, "ID": "x1000c1s7b0n0"}, {**good, "ID": "x1000m0"}, {**good, "ID": ""},
        {**good, "ID": 7}, {**good, "MACAddr": "not-a-mac"}, {**good, "IPAddress": "300.1.1.1"},
        {**good, "FQDN": "https://[::1"}, {**good, "SchemaVersion": "one"}, {**good, "Systems": {"a": 1}},
        {**good, "Enabled": "yes"}, {**good, "Managers": [{"ethernet_interfaces": [{"mac": "zz", "ip": "1.2.3.4"}]}]},
        {**good, "Systems": [{**system, "ethernet_interfaces": [{"mac": "de:ad:be:ee:ee:f1", "ip": "no-ip"}]}]},
        {**good, "Systems": [{**system, "uri": "https://h/other/1"}]},
        {**good, "Systems": [{**system, "uuid": "not-a-uuid"}]},
        {**good, "Systems": [system, {**system, "uuid": str(uuid.uuid4())}]},  # the same MAC on two nodes
        {**good, "User": "", "Password": "pw"}, {**good, "Name": "bell\u0007"},
        {"RedfishEndpoints": [discover_static_endpoint(BMCS[1]), {**good, "ID": "nope"}]},
        {"RedfishEndpoints": []}, ["not", "an", "object"],
    ]
    for body in bad:
        response = await send(api, "POST", RFE, body)
        problem_of(response, 400)
        assert b"pw" not in response.content
    problem_of(await send(api, "POST", RFE, None), 400)
    problem_of(await api.post(RFE, content=b"{not json", headers={"Content-Type": "application/json"}), 400)
    assert await inventory_counts(conn) == [0, 0, 0, 0, 0]

    # Conflicts with what exists: 409, and the rest of the request is not written either.
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "other-node"}, "spec": {"type": "Node"}})
    await create(api, "/hsm/v2/Inventory/EthernetInterfaces", {"spec": {"componentId": "other-node",
                                                                        "macAddr": "de:ad:be:ee:ee:f1"}})
    before = await inventory_counts(conn)
    assert "other-node" in problem_of(await send(api, "POST", RFE, good), 409)["detail"]
    assert await inventory_counts(conn) == before
    assert (await send(api, "POST", RFE, discover_static_endpoint(BMCS[1]))).status_code == 201
    same_address = {**discover_static_endpoint(BMCS[0]), "Systems": [], "IPAddress": BMCS[1]["ip"],
                    "MACAddr": "de:ca:fc:0f:fe:99", "Managers": []}
    problem_of(await send(api, "POST", RFE, same_address), 409)  # the FQDN is another endpoint's
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "x1000c1s7b5"}, "spec": {"type": "Node"}})
    problem_of(await send(api, "POST", RFE, {"ID": "x1000c1s7b5", "IPAddress": "172.16.0.105"}), 409)
    assert (await api.get(RFE)).json()["RedfishEndpoints"][0]["ID"] == "x1000c1s7b1"
    assert len((await api.get(RFE)).json()["RedfishEndpoints"]) == 1


async def test_many_in_one_post_filters_and_deletes(api, conn):
    body = {"RedfishEndpoints": [
        {"ID": "X1000C1S7B0", "FQDN": "x1000c1s7b0.mgmt.cluster:8443", "MACAddr": "DE-CA-FC-0F-FE-E1",
         "IPAddress": "172.16.0.101"},
        {"ID": "x1000c1s7b1", "Hostname": "bmc1", "Domain": "mgmt.cluster", "Enabled": False}]}
    created = await send(api, "POST", RFE, body)
    assert created.status_code == 201, created.text
    assert created.json() == [{"URI": "/hsm/v2/Inventory/RedfishEndpoints/x1000c1s7b0"},
                              {"URI": "/hsm/v2/Inventory/RedfishEndpoints/x1000c1s7b1"}]
    first, second = (await api.get(RFE)).json()["RedfishEndpoints"]
    assert (first["FQDN"], first["Hostname"], first["Domain"], first["MACAddr"], first["IPAddress"]) == (
        "x1000c1s7b0.mgmt.cluster:8443", "x1000c1s7b0", "mgmt.cluster", "de:ca:fc:0f:fe:e1", "172.16.0.101")
    assert (second["FQDN"], second["Hostname"], second["Enabled"]) == ("bmc1.mgmt.cluster", "bmc1", False)
    assert "MACAddr" not in second and "IPAddress" not in second

    async def ids(query):
        response = await api.get(RFE + query)
        assert response.status_code == 200, response.text
        return [e["ID"] for e in response.json()["RedfishEndpoints"]]

    assert await ids("?id=X1000C1S7B1") == ["x1000c1s7b1"]
    assert await ids("?type=NodeBMC") == ["x1000c1s7b0", "x1000c1s7b1"]
    assert await ids("?type=RouterBMC") == []
    assert await ids("?fqdn=bmc1.mgmt.cluster") == ["x1000c1s7b1"]
    assert await ids("?MACAddr=DE:CA:FC:0F:FE:E1") == ["x1000c1s7b0"]
    assert await ids("?ipaddress=172.16.0.101") == ["x1000c1s7b0"]
    assert await ids("?uuid=" + str(uuid.uuid4())) == []
    problem_of(await api.get(RFE + "?macaddr=nope"), 400)
    problem_of(await api.get(RFE + "?colour=red"), 400)
    problem_of(await api.get(RFE + "/x9c0s0b0"), 404)

    deleted = await send(api, "DELETE", RFE + "/x1000c1s7b0")
    assert deleted.status_code == 200 and deleted.json() == {"code": 0, "message": "deleted 1 entry"}
    problem_of(await send(api, "DELETE", RFE + "/x1000c1s7b0"), 404)
    assert (await api.get("/hsm/v2/State/Components/x1000c1s7b0")).status_code == 200  # the BMC stays
    assert await outbox(conn, "chamicore.smd.redfish-endpoints.deleted") == ["x1000c1s7b0"]
    everything = await send(api, "DELETE", RFE)
    assert everything.status_code == 200 and everything.json() == {"code": 0, "message": "deleted 1 entries"}
    problem_of(await send(api, "DELETE", RFE), 404)
    assert (await api.get(RFE)).json() == {"RedfishEndpoints": []}
    assert (await api.get(CEP)).json() == {"ComponentEndpoints": []}
