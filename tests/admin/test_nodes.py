"""Bulk import, atomic provisioning and decommissioning."""

import json

from tests.helpers.api import create, problem_of


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
