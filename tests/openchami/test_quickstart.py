"""OpenCHAMI's quick-start flow, request by request as `ochami` sends it, against real Chamicore servers.

Each step replays what the ochami CLI puts on the wire (reference/openchami-api.md §8): no Content-Type on
bodies, a token where ochami sends one and none where it does not (coresmd-style reads with
CHAMICORE_OPENCHAMI_PUBLIC_READS on), the cluster URI being `<admin>/openchami`.  The boot path is a
second real server on the same database: what `ochami bss boot params set` stores is what a node booting
by MAC gets, through the same change feed as a native edit.
"""

import asyncio
import base64
import http.client
import json
import urllib.parse
import uuid

from tests.helpers.polling import wait_until
from tests.helpers.tokens import token_for

AGENT = "ochami/0.5.0"
BMCS = [{"xname": "x1000c1s7b0", "mac": "de:ca:fc:0f:fe:e1", "ip": "172.16.0.101"},
        {"xname": "x1000c1s7b1", "mac": "de:ca:fc:0f:fe:e2", "ip": "172.16.0.102"}]
NODES = [
    {"name": "nid001", "nid": 1, "xname": "x1000c1s7b0n0", "bmc": "x1000c1s7b0", "groups": ["compute"],
     "interfaces": [{"mac_addr": "de:ad:be:ee:ee:f1", "ip_addrs": [{"name": "internal", "ip_addr": "172.16.0.1"}]},
                    {"mac_addr": "de:ad:be:ee:ee:f2", "ip_addrs": [{"name": "external", "ip_addr": "10.15.3.100"}]}]},
    {"name": "nid002", "nid": 2, "xname": "x1000c1s7b1n0", "bmc": "x1000c1s7b1", "groups": ["compute", "io"],
     "interfaces": [{"mac_addr": "de:ad:be:ee:ee:f3", "ip_addrs": [{"name": "internal", "ip_addr": "172.16.0.2"}]},
                    {"mac_addr": "de:ad:be:ee:ee:f4", "ip_addrs": [{"name": "external", "ip_addr": "10.15.3.101"}]}]},
]
ACTIONS = ["On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "ForceOn",
           "PushPowerButton", "PowerCycle", "Suspend", "Pause", "Resume"]


class Ochami:
    """Requests as ochami builds them: no Content-Type, its User-Agent, a token only when told to."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def send(self, method: str, path: str, body=None, *, token: bool = True, query: dict | None = None):
        # http.client, not urllib: urllib adds a form Content-Type to every body, and ochami sends none.
        url = urllib.parse.urlsplit(self.base + path)
        target = url.path + ("?" + urllib.parse.urlencode(sorted(query.items()), doseq=True) if query else "")
        headers = {"User-Agent": AGENT}
        if token:
            headers["Authorization"] = f"Bearer {self.token}"
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        try:
            connection.request(method, target, json.dumps(body).encode() if body is not None else None, headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def json(self, method: str, path: str, body=None, **kwargs):
        status, _, raw = self.send(method, path, body, **kwargs)
        assert 200 <= status < 300, (method, path, status, raw[:500])
        return json.loads(raw)  # ochami re-encodes every body it prints: it must be JSON


def discover_static_bodies():
    """The bodies `ochami discover static` derives from the nodes file (discovery version 2)."""
    components = {"Components": [{"ID": n["xname"], "Type": "Node", "State": "On", "Enabled": True, "NID": n["nid"]}
                                 for n in NODES]}
    endpoints = []
    for bmc in BMCS:
        systems = [{
            "uri": f"https://demo.openchami.cluster:8443/redfish/v1/Systems/{n['xname']}",
            "uuid": str(uuid.uuid4()), "name": n["name"], "actions": ACTIONS,
            "ethernet_interfaces": [{"name": n["xname"], "description": f"Interface {i} for {n['name']}",
                                     "mac": nic["mac_addr"], "ip": nic["ip_addrs"][0]["ip_addr"]}
                                    for i, nic in enumerate(n["interfaces"])],
        } for n in NODES if n["bmc"] == bmc["xname"]]
        endpoints.append({
            "ID": bmc["xname"], "Type": "NodeBMC", "UUID": str(uuid.uuid4()), "MACAddr": bmc["mac"],
            "IPAddress": bmc["ip"], "DiscoveryInfo": {"LastAttempt": "0001-01-01T00:00:00Z"}, "SchemaVersion": 1,
            "Systems": systems,
            "Managers": [{"uri": f"https://demo.openchami.cluster:8443/redfish/v1/Managers/{bmc['xname']}",
                          "uuid": str(uuid.uuid4()), "name": bmc["xname"], "actions": None, "description": "",
                          "type": "NodeBMC",
                          "ethernet_interfaces": [{"name": bmc["xname"], "mac": bmc["mac"], "ip": bmc["ip"],
                                                   "description": f"Interface for BMC {bmc['xname']}"}]}],
        })
    groups = {}
    for node in NODES:
        for group in node["groups"]:
            groups.setdefault(group, []).append(node["xname"])
    group_bodies = [{"label": g, "description": f"The {g} group", "members": {"ids": ids}} for g, ids in groups.items()]
    return components, endpoints, group_bodies


def test_the_openchami_quick_start_works_against_chamicore(admin_server, boot_server, dsn):
    boot = boot_server()
    admin = admin_server(CHAMICORE_OPENCHAMI_PUBLIC_READS="true", CHAMICORE_BOOT_URL=boot.url)
    token = asyncio.run(token_for(admin.url, dsn, "demo-admin", ["admin"]))
    ochami = Ochami(admin.url + "/openchami", token)

    # 1. smd service status (no token)
    assert ochami.json("GET", "/hsm/v2/service/ready", token=False) == {"code": 0, "message": "HSM is healthy"}

    # 2. discover static: components, one RedfishEndpoint per BMC, one group each (bodies never read)
    components, endpoints, groups = discover_static_bodies()
    status, _, raw = ochami.send("POST", "/hsm/v2/State/Components", components)
    assert status == 204, raw
    for body in endpoints:
        status, _, raw = ochami.send("POST", "/hsm/v2/Inventory/RedfishEndpoints", body)
        assert status == 201, raw
    for body in groups:
        status, _, raw = ochami.send("POST", "/hsm/v2/groups", body)
        assert status == 201, raw

    # 3. smd component get (no token): the user's NIDs and the NodeBMCs
    listed = {c["ID"]: c for c in ochami.json("GET", "/hsm/v2/State/Components", token=False)["Components"]}
    assert {i: (c["Type"], c.get("NID")) for i, c in listed.items()} == {
        "x1000c1s7b0n0": ("Node", 1), "x1000c1s7b1n0": ("Node", 2),
        "x1000c1s7b0": ("NodeBMC", None), "x1000c1s7b1": ("NodeBMC", None)}

    # 4. smd component get --nid 2 (token always)
    node2 = ochami.json("GET", "/hsm/v2/State/Components/ByNID/2")
    assert (node2["ID"], node2["Type"], node2["NID"], node2["State"]) == ("x1000c1s7b1n0", "Node", 2, "On")

    # 5. smd iface get (no token): a bare array, each node's two NICs and each BMC's one
    interfaces = ochami.json("GET", "/hsm/v2/Inventory/EthernetInterfaces", token=False)
    by_mac = {i["MACAddress"]: i for i in interfaces}
    assert len(interfaces) == 6
    for node in NODES:
        for nic in node["interfaces"]:
            found = by_mac[nic["mac_addr"]]
            assert found["ComponentID"] == node["xname"] and found["Type"] == "Node"
            assert [a["IPAddress"] for a in found["IPAddresses"]] == [nic["ip_addrs"][0]["ip_addr"]]
    for bmc in BMCS:
        assert by_mac[bmc["mac"]]["ComponentID"] == bmc["xname"]

    # 6. smd group get (token): a bare array
    labels = {g["label"]: sorted(g["members"]["ids"]) for g in ochami.json("GET", "/hsm/v2/groups")}
    assert labels == {"compute": ["x1000c1s7b0n0", "x1000c1s7b1n0"], "io": ["x1000c1s7b1n0"]}

    # 7. bss boot params set --xname A,B
    params = {"hosts": ["x1000c1s7b0n0", "x1000c1s7b1n0"], "params": "console=ttyS0,115200 quiet",
              "kernel": "http://172.16.0.254/boot/vmlinuz", "initrd": "http://172.16.0.254/boot/initrd.img",
              "cloud-init": {"meta-data": None, "user-data": None,
                             "phone-home": {"pub_key_dsa": "", "pub_key_rsa": "", "pub_key_ecdsa": "",
                                            "instance_id": "", "hostname": "", "fqdn": ""}}}
    status, _, raw = ochami.send("PUT", "/boot/v1/bootparameters", params)
    assert status == 200, raw

    # 8. bss boot params get --xname A
    got = ochami.json("GET", "/boot/v1/bootparameters", query={"name": "x1000c1s7b0n0"})
    assert len(got) == 1 and got[0]["hosts"] == ["x1000c1s7b0n0"]
    assert (got[0]["kernel"], got[0]["initrd"], got[0]["params"]) == (params["kernel"], params["initrd"],
                                                                      params["params"])
    assert "cloud-init" in got[0]

    # 9. bss boot script get --mac (no token): the boot path serves what was just set, and so does the admin origin
    mac = "de:ad:be:ee:ee:f1"
    script = wait_until(lambda: (b := boot.get("/boot/v1/bootscript?mac=" + urllib.parse.quote(mac))[2])
                        and b"/boot/vmlinuz" in b and b, timeout=5)
    assert script.startswith(b"#!ipxe") and b"console=ttyS0,115200 quiet" in script
    status, headers, via_admin = ochami.send("GET", "/boot/v1/bootscript", token=False, query={"mac": mac})
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert via_admin.startswith(b"#!ipxe") and b"/boot/vmlinuz" in via_admin

    # 10. cloud-init defaults set
    defaults = {"cluster-name": "demo", "short-name": "nid", "nid-length": 3, "base-url": "http://172.16.0.254/",
                "public-keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDemoKeyOnly demo@admin"]}
    status, _, raw = ochami.send("POST", "/cloud-init/admin/cluster-defaults", defaults)
    assert status == 201, raw
    got_defaults = ochami.json("GET", "/cloud-init/admin/cluster-defaults")
    assert got_defaults["cluster-name"] == "demo" and got_defaults["base-url"] == "http://172.16.0.254"

    # 11. cloud-init group add, a base64 file per group (one request per group)
    files = {"compute": "#cloud-config\nwrite_files:\n- path: /etc/motd\n  content: compute node\n",
             "io": "#cloud-config\npackages:\n- nfs-common\n"}
    for name, text in files.items():
        body = {"name": name, "description": f"{name} config", "meta-data": {"role": name},
                "file": {"content": base64.b64encode(text.encode()).decode(), "filename": "", "encoding": "base64"}}
        status, _, raw = ochami.send("POST", "/cloud-init/admin/groups", body)
        assert status == 201, raw
    status, _, raw = ochami.send("POST", "/cloud-init/admin/groups", {"name": "io", "file": {"content": ""}})
    assert status == 409, raw

    # 12. cloud-init group get raw: an object keyed by name, content as stored (base64)
    stored = ochami.json("GET", "/cloud-init/admin/groups")
    assert base64.b64decode(stored["compute"]["file"]["content"]).decode() == files["compute"]
    assert stored["io"]["file"]["encoding"] == "base64"

    # ... and the node's user-data: a node in both groups gets both groups' parts, in name order
    user_data = wait_until(lambda: (s := ochami.send("GET", "/cloud-init/admin/impersonation/x1000c1s7b1n0/user-data"))
                           and s[0] == 200 and b"nfs-common" in s[2] and s[2], timeout=5).decode()
    assert user_data.index("/etc/motd") < user_data.index("nfs-common")
    meta = ochami.send("GET", "/cloud-init/admin/impersonation/x1000c1s7b1n0/meta-data")[2].decode()
    assert "nid002" in meta and "demo" in meta

    # 13. pcs service status: readiness 204 (no token)
    status, _, raw = ochami.send("GET", "/readiness", token=False)
    assert status == 204, raw

    # 14. pcs transition start --xname X on
    started = ochami.json("POST", "/transitions", {"operation": "on", "taskDeadlineMinutes": None,
                                                   "location": [{"xname": "x1000c1s7b0n0"}]})
    assert started["operation"] == "On"
    transition_id = str(uuid.UUID(started["transitionID"]))

    # 15. pcs transition show ID
    shown = ochami.json("GET", f"/transitions/{transition_id}")
    assert shown["transitionID"] == transition_id and shown["operation"] == "On"
    assert shown["taskCounts"]["total"] == 1 and [t["xname"] for t in shown["tasks"]] == ["x1000c1s7b0n0"]
    assert shown["transitionStatus"] in ("new", "in-progress", "completed")

    # 16. pcs status show X: ochami prints status[0]
    power = ochami.json("GET", "/power-status", query={"xname": "x1000c1s7b0n0"})
    assert power["status"][0]["xname"] == "x1000c1s7b0n0"

    # Same data: the native API sees what ochami wrote.
    native = Ochami(admin.url, token)
    spec = native.json("GET", "/hsm/v2/State/Components/x1000c1s7b1n0")["spec"]
    assert (spec["nid"], spec["location"]["rack"]) == (2, "x1000")
