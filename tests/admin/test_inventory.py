"""Ethernet interfaces, groups and partitions."""

from tests.helpers.api import NODE, create, problem_of

NICS = "/hsm/v2/Inventory/EthernetInterfaces"


async def test_interface_crud_and_mac_rules(api, conn):
    await create(api, "/hsm/v2/State/Components", NODE)
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "node-2"}, "spec": {"type": "Node"}})
    nic = await create(api, NICS, {"spec": {"componentId": "node-1", "macAddr": "AABB.CC00.0001",
                                            "ipAddrs": [{"ipAddress": "10.0.0.1", "network": "mgmt"}]}})
    assert nic["metadata"]["id"] == "aabbcc000001" and nic["spec"]["macAddr"] == "aa:bb:cc:00:00:01"
    body = problem_of(await api.post(NICS, json={"spec": {"componentId": "node-2", "macAddr": "aa-bb-cc-00-00-01"}}),
                      409)
    assert "node-1" in body["detail"]
    problem_of(await api.post(NICS, json={"spec": {"componentId": "ghost", "macAddr": "aa:bb:cc:00:00:02"}}), 422)
    listed = (await api.get(f"{NICS}?mac=AA-BB-CC-00-00-01")).json()
    assert [i["metadata"]["id"] for i in listed["items"]] == ["aabbcc000001"]
    assert (await api.get(f"{NICS}?componentId=node-2")).json()["metadata"]["total"] == 0
    moved = await api.patch(f"{NICS}/aabbcc000001", json={"spec": {"componentId": "node-2"}})
    assert moved.status_code == 200 and moved.json()["spec"]["componentId"] == "node-2"
    put = await api.put(f"{NICS}/aabbcc000001", json={"spec": {"componentId": "node-2", "macAddr": "aa:bb:cc:00:00:09"}},
                        headers={"If-Match": moved.headers["etag"]})
    assert put.status_code == 200 and put.json()["spec"]["macAddr"] == "aa:bb:cc:00:00:09"
    assert (await api.delete(f"{NICS}/aabbcc000001")).status_code == 204
    assert await conn.fetchval("SELECT count(*) FROM smd.ethernet_interfaces") == 0


async def test_groups_and_members(api):
    for i in (1, 2, 3):
        await create(api, "/hsm/v2/State/Components", {"metadata": {"id": f"n{i}"}, "spec": {"type": "Node"}})
    group = await create(api, "/hsm/v2/groups", {"spec": {"name": "compute", "description": "all compute",
                                                          "tags": ["hpc"], "members": ["n1", "n2"]}})
    assert group["kind"] == "Group" and group["spec"]["members"] == ["n1", "n2"]
    assert (await api.post("/hsm/v2/groups/compute/members", json={"id": "n3"})).status_code == 201
    problem_of(await api.post("/hsm/v2/groups/compute/members", json={"id": "n3"}), 409)
    problem_of(await api.post("/hsm/v2/groups/compute/members", json={"id": "ghost"}), 422)
    assert (await api.get("/hsm/v2/groups/compute/members")).json()["members"] == ["n1", "n2", "n3"]
    assert (await api.delete("/hsm/v2/groups/compute/members/n1")).status_code == 204
    problem_of(await api.delete("/hsm/v2/groups/compute/members/n1"), 404)
    patched = await api.patch("/hsm/v2/groups/compute", json={"spec": {"members": ["n3"]}})
    assert patched.json()["spec"]["members"] == ["n3"]
    assert (await api.get("/hsm/v2/groups?tag=hpc")).json()["metadata"]["total"] == 1
    problem_of(await api.post("/hsm/v2/groups", json={"spec": {"name": "bad", "members": ["n1", "n1"]}}), 422)
    problem_of(await api.post("/hsm/v2/groups", json={"spec": {"name": "compute"}}), 409)
    assert (await api.delete("/hsm/v2/groups/compute")).status_code == 204
    problem_of(await api.get("/hsm/v2/groups/compute"), 404)


async def test_a_component_joins_one_partition(api):
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "n1"}, "spec": {"type": "Node"}})
    await create(api, "/hsm/v2/partitions", {"spec": {"name": "p1", "members": ["n1"]}})
    body = problem_of(await api.post("/hsm/v2/partitions", json={"spec": {"name": "p2", "members": ["n1"]}}), 409)
    assert "p1" in body["detail"]
    problem_of(await api.get("/hsm/v2/partitions/p2"), 404)  # the failed create left nothing
    await create(api, "/hsm/v2/partitions", {"spec": {"name": "p2"}})
    problem_of(await api.post("/hsm/v2/partitions/p2/members", json={"id": "n1"}), 409)
    # Groups are not exclusive: joining one is fine.
    await create(api, "/hsm/v2/groups", {"spec": {"name": "g1", "members": ["n1"]}})
    # A partition is not a group and the other way round.
    problem_of(await api.get("/hsm/v2/groups/p1"), 404)
    assert (await api.get("/hsm/v2/partitions")).json()["metadata"]["total"] == 2
