"""Bulk import, atomic provisioning and decommissioning."""

import json

import pytest

from core import power_targets
from core.nodefiles import read_nodes
from tests.helpers.api import create, credential, problem_of
from tests.helpers.redfish import PASSWORD
from tests.helpers.tokens import token_for


def node(i, **extra):
    return {"id": f"node-{i:05d}", "role": "Compute", "nid": i,
            "networkInterfaces": [{"macAddr": f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}",
                                   "ipAddrs": [{"ipAddress": f"10.0.{i >> 8}.{i & 255}"}]}], **extra}


async def test_import_json_array(api, conn):
    items = [node(i) for i in range(1, 301)]
    items[0]["bootParams"] = {"kernel": "http://k/{{id}}", "cmdline": "quiet"}
    items[1]["cloudInit"] = {"userData": "#cloud-config\n{}\n", "metaData": {"x": 1}}
    response = await api.post("/hsm/v2/import", json=items)
    assert response.status_code == 201, response.text
    assert response.json()["created"] == 300
    assert await conn.fetchval("SELECT count(*) FROM smd.components") == 300
    assert await conn.fetchval("SELECT count(*) FROM smd.ethernet_interfaces") == 300
    assert await conn.fetchval("SELECT kernel FROM bss.boot_params WHERE component_id = 'node-00001'") == "http://k/{{id}}"
    assert await conn.fetchval("SELECT meta_data FROM cloudinit.payloads WHERE component_id = 'node-00002'") == {"x": 1}
    assert await conn.fetchval("SELECT count(*) FROM events.outbox WHERE type = 'chamicore.smd.components.created'") \
        == 300


async def test_import_ndjson_with_parents_in_any_order(api, conn):
    lines = [json.dumps({"id": "n1", "parentId": "bmc1"}), "", json.dumps({"id": "bmc1", "type": "BMC"})]
    response = await api.post("/hsm/v2/import", content="\n".join(lines),
                              headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 201, response.text
    assert await conn.fetchval("SELECT parent_id FROM smd.components WHERE id = 'n1'") == "bmc1"


async def test_import_reports_every_bad_item_and_writes_nothing(api, conn):
    items = [node(i) for i in range(1, 11)]
    items[2]["nid"] = "three"
    items[4]["networkInterfaces"][0]["macAddr"] = "garbage"
    items[6]["id"] = items[5]["id"]
    items[7]["bootParams"] = {"kernel": "ftp://nope"}
    items[8]["cloudInit"] = {"userData": "no header"}
    items[9]["colour"] = "blue"
    problem = problem_of(await api.post("/hsm/v2/import", json=items), 422)
    fields = [e["field"] for e in problem["errors"]]
    assert fields == ["$[2].nid", "$[4].networkInterfaces[0].macAddr", "$[7].bootParams.kernel",
                      "$[8].cloudInit.userData", "$[9]", "$[6].id"]
    assert "6 of 10" in problem["detail"]
    assert await conn.fetchval("SELECT count(*) FROM smd.components") == 0


async def test_import_conflicts_with_existing_data(api, conn):
    assert (await api.post("/hsm/v2/import", json=[node(1), node(2)])).status_code == 201
    again = [node(3), node(1) | {"id": "other"}, node(2)]
    problem = problem_of(await api.post("/hsm/v2/import", json=again), 409)
    fields = sorted(e["field"] for e in problem["errors"])
    assert fields == ["$[1].networkInterfaces[0].macAddr", "$[1].nid", "$[2].id",
                      "$[2].networkInterfaces[0].macAddr", "$[2].nid"]
    assert await conn.fetchval("SELECT count(*) FROM smd.components") == 2


async def test_import_limits(api):
    problem_of(await api.post("/hsm/v2/import", json=[]), 422)
    problem_of(await api.post("/hsm/v2/import", json={"id": "x"}), 422)
    problem_of(await api.post("/hsm/v2/import", json=[{}] * 10_001), 422)
    dry = await api.post("/hsm/v2/import?dryRun=true", json=[node(1)])
    assert dry.status_code == 200 and dry.json()["dryRun"] is True
    assert (await api.get("/hsm/v2/State/Components")).json()["metadata"]["total"] == 0


async def test_provision_creates_then_converges(api, conn):
    body = {"role": "Compute", "nid": 5,
            "networkInterfaces": [{"macAddr": "aa:bb:cc:00:00:01"}, {"macAddr": "aa:bb:cc:00:00:02"}],
            "bootParams": {"kernel": "http://k1"}, "cloudInit": {"userData": "#cloud-config\n"}}
    dry = (await api.post("/hsm/v2/nodes/node-5/provision?dryRun=true", json=body)).json()
    assert dry["dryRun"] and "created component node-5" in dry["changes"]
    assert await conn.fetchval("SELECT count(*) FROM smd.components") == 0  # rolled back
    plan = (await api.post("/hsm/v2/nodes/node-5/provision", json=body)).json()
    assert plan["changes"] == ["created component node-5", "added interface aa:bb:cc:00:00:01",
                               "added interface aa:bb:cc:00:00:02", "created boot parameters node-5-boot",
                               "created cloud-init payload node-5-cloud-init"]
    assert plan["node"]["spec"]["nid"] == 5
    body2 = {"role": "Storage", "nid": 5, "networkInterfaces": [{"macAddr": "AA-BB-CC-00-00-02"},
                                                                 {"macAddr": "aa:bb:cc:00:00:03"}],
             "bootParams": {"kernel": "http://k2"}, "cloudInit": None}
    plan = (await api.post("/hsm/v2/nodes/node-5/provision", json=body2)).json()
    assert plan["changes"] == ["updated component node-5", "removed interface aa:bb:cc:00:00:01",
                               "added interface aa:bb:cc:00:00:03", "updated boot parameters node-5-boot",
                               "removed cloud-init payload node-5-cloud-init"]
    macs = [r["mac"] for r in await conn.fetch("SELECT mac FROM smd.ethernet_interfaces ORDER BY mac")]
    assert macs == ["aa:bb:cc:00:00:02", "aa:bb:cc:00:00:03"]
    assert await conn.fetchval("SELECT kernel FROM bss.boot_params") == "http://k2"
    # Leaving bootParams out keeps them.
    plan = (await api.post("/hsm/v2/nodes/node-5/provision", json={"role": "Storage", "nid": 5, "networkInterfaces": [
        {"macAddr": "aa:bb:cc:00:00:02"}, {"macAddr": "aa:bb:cc:00:00:03"}]})).json()
    assert plan["changes"] == ["updated component node-5"]
    assert await conn.fetchval("SELECT count(*) FROM bss.boot_params") == 1


async def test_provision_failure_is_atomic(api, conn):
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "owner"}, "spec": {
        "type": "Node", "networkInterfaces": [{"macAddr": "aa:bb:cc:00:00:09"}]}})
    body = {"networkInterfaces": [{"macAddr": "aa:bb:cc:00:00:09"}], "bootParams": {"kernel": "http://k"}}
    problem = problem_of(await api.post("/hsm/v2/nodes/new-node/provision", json=body), 409)
    assert "owner" in problem["detail"]
    assert not await conn.fetchval("SELECT true FROM smd.components WHERE id = 'new-node'")
    problem_of(await api.post("/hsm/v2/nodes/new-node/provision", json={"bootParams": {"kernel": "gopher://x"}}), 422)


async def test_decommission_and_purge(api, conn):
    await api.post("/hsm/v2/nodes/n1/provision", json={"networkInterfaces": [{"macAddr": "aa:bb:cc:00:00:01"}],
                                                        "bootParams": {"kernel": "http://k"}})
    await create(api, "/hsm/v2/groups", {"spec": {"name": "g1", "members": ["n1"]}})
    plan = (await api.post("/hsm/v2/nodes/n1/decommission")).json()
    assert plan["changes"] == ["removed interface aabbcc000001", "removed boot parameters n1-boot", "left group g1",
                               "disabled component n1 (state Empty)"]
    row = await conn.fetchrow("SELECT enabled, state FROM smd.components WHERE id = 'n1'")
    assert (row["enabled"], row["state"]) == (False, "Empty")
    purge = (await api.post("/hsm/v2/nodes/n1/decommission?purge=true&dryRun=1")).json()
    assert purge["changes"] == ["deleted component n1"] and purge["dryRun"]
    assert await conn.fetchval("SELECT true FROM smd.components WHERE id = 'n1'")
    assert (await api.post("/hsm/v2/nodes/n1/decommission?purge=true")).json()["changes"] == ["deleted component n1"]
    problem_of(await api.post("/hsm/v2/nodes/n1/decommission"), 404)


# Every column the CSV header documents (core/nodefiles.py), in a file an admin would write.
CSV = """id,type,role,subRole,nid,arch,enabled,rack,unit,slot,subSlot,mac,ip,bmc,bmcCredential,bmcInsecure,groups,kernel,initrd,cmdline
x1000c1s7b0n0,Node,Compute,gpu,10,x86_64,true,x1000,1,7,0,02:00:00:00:0a:01;02:00:00:00:0a:02,10.0.10.1,https://127.0.0.1:8443,bmc-cred,true,compute;gpu,http://img/vmlinuz,http://img/initrd,quiet
x1000c1s7b0n1,Node,Compute,,11,,,x1000,1,7,1,02:00:00:00:0b:01,10.0.11.1,https://127.0.0.1:8443,bmc-cred,true,compute,,,
ipmi-node,Node,Service,,12,,yes,r2,3,,,02:00:00:00:0c:01,,ipmi://127.0.0.1:6230,bmc-cred,,compute gpu,,,
reuse-node,,Compute,,13,,,,,,,,,10.9.9.9,,,,,,
"""


async def _counts(conn):
    return [await conn.fetchval(f"SELECT count(*) FROM {table}") for table in (
        "smd.components", "smd.redfish_endpoints", "smd.group_members", "smd.ethernet_interfaces", "bss.boot_params",
        "events.outbox")]


async def _setup_bmcs_and_groups(api):
    await credential(api)
    await create(api, "/hsm/v2/groups", {"spec": {"name": "compute"}})
    await create(api, "/hsm/v2/groups", {"spec": {"name": "gpu"}})
    await create(api, "/hsm/v2/partitions", {"spec": {"name": "p1"}})
    # A BMC declared by hand: an import naming its address reuses it.
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "old-bmc"}, "spec": {"type": "BMC"}})
    await create(api, "/hsm/v2/Inventory/RedfishEndpoints", {"metadata": {"id": "old-bmc"},
                                                              "spec": {"address": "10.9.9.9"}})


async def test_import_csv_with_bmcs_and_groups_dry_run_then_real(api, conn):
    await _setup_bmcs_and_groups(api)
    nodes = read_nodes(CSV, "rack12.csv")
    assert nodes[0]["bmc"] == {"address": "https://127.0.0.1:8443", "credentialId": "bmc-cred", "insecure": True}
    assert nodes[2]["groups"] == ["compute", "gpu"]
    before = await _counts(conn)

    dry = await api.post("/hsm/v2/import?dryRun=true", json=nodes)
    assert dry.status_code == 200, dry.text
    diff = dry.json()
    assert await _counts(conn) == before  # nothing written, not even an event
    assert diff["dryRun"] is True and diff["created"] == 0
    assert diff["ids"] == ["x1000c1s7b0n0", "x1000c1s7b0n1", "ipmi-node", "reuse-node"]
    assert diff["bmcs"] == [
        {"id": "x1000c1s7b0", "address": "https://127.0.0.1:8443", "action": "created",
         "nodes": ["x1000c1s7b0n0", "x1000c1s7b0n1"]},
        {"id": "ipmi-node-bmc", "address": "ipmi://127.0.0.1:6230", "action": "created", "nodes": ["ipmi-node"]},
        {"id": "old-bmc", "address": "https://10.9.9.9", "action": "reused", "nodes": ["reuse-node"]}]
    assert diff["groups"] == {"compute": ["x1000c1s7b0n0", "x1000c1s7b0n1", "ipmi-node"],
                              "gpu": ["x1000c1s7b0n0", "ipmi-node"]}

    done = await api.post("/hsm/v2/import", json=nodes)
    assert done.status_code == 201, done.text
    assert {**done.json(), "created": 0, "dryRun": True} == diff  # the dry run told exactly what happened
    bmc = await conn.fetchrow("SELECT type, rack, unit, slot FROM smd.components WHERE id = 'x1000c1s7b0'")
    assert dict(bmc) == {"type": "BMC", "rack": "x1000", "unit": 1, "slot": 7}
    endpoints = {r["id"]: (r["address"], r["credential_id"], r["insecure"]) for r in await conn.fetch(
        "SELECT id, address, credential_id, insecure FROM smd.redfish_endpoints")}
    assert endpoints == {"x1000c1s7b0": ("https://127.0.0.1:8443", "bmc-cred", True),
                         "ipmi-node-bmc": ("ipmi://127.0.0.1:6230", "bmc-cred", False),
                         "old-bmc": ("https://10.9.9.9", None, False)}
    # Power control reaches each node through its BMC.
    targets = {r["id"]: r for r in await power_targets.fetch(conn, [n["id"] for n in nodes])}
    assert {node: (row["bmc_id"], row["address"]) for node, row in targets.items()} == {
        "x1000c1s7b0n0": ("x1000c1s7b0", "https://127.0.0.1:8443"),
        "x1000c1s7b0n1": ("x1000c1s7b0", "https://127.0.0.1:8443"),
        "ipmi-node": ("ipmi-node-bmc", "ipmi://127.0.0.1:6230"), "reuse-node": ("old-bmc", "https://10.9.9.9")}
    assert power_targets.target_problem(targets["ipmi-node"]) is None
    assert "no credential" in power_targets.target_problem(targets["reuse-node"])
    members = (await api.get("/hsm/v2/groups/gpu/members")).json()["members"]
    assert members == ["ipmi-node", "x1000c1s7b0n0"]
    spec = (await api.get("/hsm/v2/State/Components/x1000c1s7b0n0")).json()["spec"]
    assert spec["subRole"] == "gpu" and spec["location"] == {"rack": "x1000", "unit": 1, "slot": 7, "subSlot": 0}
    assert await conn.fetchval("SELECT count(*) FROM smd.ethernet_interfaces WHERE component_id = 'x1000c1s7b0n0'") == 2
    assert await conn.fetchval("SELECT initrd FROM bss.boot_params WHERE component_id = 'x1000c1s7b0n0'") == \
        "http://img/initrd"
    # The events native writes make: memberships as a member-added each, endpoints and BMC components created.
    events = {r["type"]: r["n"] for r in await conn.fetch(
        "SELECT type, count(*) AS n FROM events.outbox GROUP BY type")}
    assert events["chamicore.smd.groups.member-added"] == 5
    assert events["chamicore.smd.redfish-endpoints.created"] == 3  # two imported, one declared by hand
    bmc_events = await conn.fetch("SELECT data FROM events.outbox WHERE type = 'chamicore.smd.components.created' "
                                  "AND subject = 'ipmi-node-bmc'")
    assert [e["data"]["source"] for e in bmc_events] == ["import"]
    assert not await conn.fetchval("SELECT count(*) FROM events.outbox WHERE strpos(data::text, $1) > 0", PASSWORD)


def _bad(field_value):
    return [{"id": "good-1", "bmc": {"address": "10.1.0.1"}, "groups": ["compute"]},
            {"id": "bad-1", **field_value}]


@pytest.mark.parametrize(("item", "status", "field", "words"), [
    ({"groups": ["compute", "nope"]}, 422, "$[1].groups[1]", "no group 'nope'"),
    ({"groups": ["p1"]}, 422, "$[1].groups[0]", "partition"),
    ({"groups": ["gpu", "gpu"]}, 422, "$[1].groups[1]", "listed twice"),
    ({"bmc": {"address": "ftp://10.1.0.2"}}, 422, "$[1].bmc.address", "not a host or URL"),
    ({"bmc": {"address": "ipmi://10.1.0.2:99999"}}, 422, "$[1].bmc.address", ""),
    ({"bmc": {"address": "https://root:calvin@10.1.0.2"}}, 422, "$[1].bmc.address", "store a credential"),
    ({"bmc": {"address": "10.1.0.2", "credentialId": "missing"}}, 422, "$[1].bmc.credentialId",
     "no credential 'missing'"),
    ({"bmc": {"address": "10.1.0.1", "credentialId": "bmc-cred"}}, 422, "$[1].bmc.credentialId", "item 0"),
    ({"bmc": {"address": "10.1.0.2"}, "parentId": "old-bmc"}, 422, "$[1].parentId", "leave parentId out"),
    ({"type": "Switch", "bmc": {"address": "10.1.0.2"}}, 422, "$[1].bmc", "only a Node"),
    ({"bmc": {"address": "https://10.9.9.9", "credentialId": "bmc-cred"}}, 409, "$[1].bmc.credentialId",
     "already the endpoint of BMC 'old-bmc'"),
    ({"id": "x1000c1s7b0n0", "bmc": {"address": "10.1.0.3"}}, 409, "$[1].bmc", "which is a Node"),
])
async def test_import_refuses_bad_bmcs_and_groups_and_writes_nothing(api, conn, item, status, field, words):
    await _setup_bmcs_and_groups(api)
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "x1000c1s7b0"}, "spec": {"type": "Node"}})
    before = await _counts(conn)
    problem = problem_of(await api.post("/hsm/v2/import", json=_bad(item)), status)
    assert [e["field"] for e in problem["errors"]] == [field] and words in problem["errors"][0]["detail"]
    assert "nothing was imported" in problem["detail"]
    assert await _counts(conn) == before


async def test_import_bmc_needs_the_credential_binding_and_reuses_a_bare_bmc(api, anonymous, conn, dsn):
    await _setup_bmcs_and_groups(api)
    operator = {"Authorization": f"Bearer {await token_for(anonymous, dsn, 'ops', ['operator'])}"}
    item = {"id": "n5", "bmc": {"address": "https://10.5.0.1", "credentialId": "bmc-cred"}}
    # A token that cannot read credentials may not send one to an address it is not sent to today.
    problem = problem_of(await anonymous.post("/hsm/v2/import", json=[item], headers=operator), 403)
    assert "read:credentials" in problem["detail"] and "https://10.5.0.1" in problem["detail"]
    assert not await conn.fetchval("SELECT true FROM smd.components WHERE id = 'n5'")
    # A BMC component without an endpoint (declared earlier) gets one.
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "n5-bmc"}, "spec": {"type": "BMC"}})
    done = await api.post("/hsm/v2/import", json=[item])
    assert done.status_code == 201, done.text
    assert done.json()["bmcs"][0]["action"] == "endpoint-added"
    assert await conn.fetchval("SELECT parent_id FROM smd.components WHERE id = 'n5'") == "n5-bmc"
    # The operator may now import another node behind that BMC: the credential already goes there.
    again = await anonymous.post("/hsm/v2/import", json=[{"id": "n6", "bmc": item["bmc"]}], headers=operator)
    assert again.status_code == 201, again.text
    assert again.json()["bmcs"] == [{"id": "n5-bmc", "address": "https://10.5.0.1", "action": "reused",
                                     "nodes": ["n6"]}]


async def test_endpoint_route_takes_ipmi_addresses_as_import_does(api, conn):
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "ipmi-bmc"}, "spec": {"type": "BMC"}})
    problem = problem_of(await api.post("/hsm/v2/Inventory/RedfishEndpoints", json={
        "metadata": {"id": "ipmi-bmc"}, "spec": {"address": "https://root:calvin@10.7.0.1"}}), 422)
    assert problem["errors"][0]["field"] == "$.spec.address" and "calvin" not in problem["detail"]
    # A bare host of 300 characters is within the schema, but not once it gains its scheme: what is stored must
    # read back through the same schema.
    long_host = ".".join(["a" * 59] * 5)
    problem = problem_of(await api.post("/hsm/v2/Inventory/RedfishEndpoints", json={
        "metadata": {"id": "ipmi-bmc"}, "spec": {"address": long_host}}), 422)
    assert problem["errors"][0]["field"] == "$.spec.address" and "longer than 300" in problem["detail"]
    assert await conn.fetchval("SELECT count(*) FROM smd.redfish_endpoints") == 0
    made = await create(api, "/hsm/v2/Inventory/RedfishEndpoints", {"metadata": {"id": "ipmi-bmc"},
                                                                     "spec": {"address": "ipmi://10.7.0.1"}})
    assert made["spec"]["address"] == "ipmi://10.7.0.1:623"
    done = await api.post("/hsm/v2/import", json=[{"id": "n7", "bmc": {"address": "ipmi://10.7.0.1:623"}}])
    assert done.status_code == 201, done.text
    assert done.json()["bmcs"][0] == {"id": "ipmi-bmc", "address": "ipmi://10.7.0.1:623", "action": "reused",
                                      "nodes": ["n7"]}
    assert await conn.fetchval("SELECT parent_id FROM smd.components WHERE id = 'n7'") == "ipmi-bmc"
