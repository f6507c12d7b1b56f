"""Components: the envelope, CRUD, conditional requests, filters, events."""

from tests.helpers.api import NODE, create, problem_of

BASE = "/hsm/v2/State/Components"


async def events_of(conn, subject):
    return [r["type"] for r in await conn.fetch("SELECT type FROM events.outbox WHERE subject = $1 ORDER BY seq",
                                                subject)]


async def test_create_get_and_envelope(api, conn):
    response = await api.post(BASE, json={**NODE, "spec": {**NODE["spec"], "networkInterfaces": [
        {"macAddr": "AA-BB-CC-00-00-01", "ipAddrs": [{"ipAddress": "10.0.0.1", "network": "mgmt"}]}]}})
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{BASE}/node-1"
    body = response.json()
    assert body["kind"] == "Component" and body["apiVersion"] == "hsm/v2"
    meta = body["metadata"]
    assert meta["id"] == "node-1" and meta["etag"] == response.headers["etag"]
    assert meta["createdAt"].endswith("Z") and meta["updatedAt"]
    assert body["spec"] == {"type": "Node", "state": "Ready", "role": "Compute", "subRole": "", "nid": 1,
                            "arch": "x86_64", "enabled": True, "parentId": None,
                            "location": {"rack": "R1", "unit": 4, "slot": 0, "subSlot": 0}, "labels": {}}
    assert await conn.fetchval("SELECT mac FROM smd.ethernet_interfaces WHERE component_id = 'node-1'") == \
        "aa:bb:cc:00:00:01"
    assert await events_of(conn, "node-1") == ["chamicore.smd.components.created"]

    got = await api.get(f"{BASE}/node-1")
    assert got.status_code == 200 and got.json() == body and got.headers["etag"] == meta["etag"]
    assert (await api.get(f"{BASE}/node-1", headers={"If-None-Match": meta["etag"]})).status_code == 304


async def test_generated_id(api):
    body = await create(api, BASE, {"spec": {"type": "Switch"}})
    assert body["metadata"]["id"].startswith("switch-") and len(body["metadata"]["id"]) == 15


async def test_put_needs_if_match_and_what_you_get_can_be_put_back(api, conn):
    created = await create(api, BASE, NODE)
    etag = created["metadata"]["etag"]
    changed = {**created, "spec": {**created["spec"], "state": "Off"}}
    problem_of(await api.put(f"{BASE}/node-1", json=changed), 428)
    problem_of(await api.put(f"{BASE}/node-1", json=changed, headers={"If-Match": '"stale"'}), 412)
    response = await api.put(f"{BASE}/node-1", json=changed, headers={"If-Match": etag})
    assert response.status_code == 200, response.text
    assert response.json()["spec"]["state"] == "Off" and response.headers["etag"] != etag
    # The old ETag no longer matches: a second writer with it is refused.
    problem_of(await api.put(f"{BASE}/node-1", json=changed, headers={"If-Match": etag}), 412)
    assert (await events_of(conn, "node-1"))[-1] == "chamicore.smd.components.updated"


async def test_merge_patch(api):
    await create(api, BASE, NODE)
    response = await api.patch(f"{BASE}/node-1", json={"spec": {"role": None, "location": {"unit": 9}}},
                               headers={"Content-Type": "application/merge-patch+json"})
    assert response.status_code == 200, response.text
    spec = response.json()["spec"]
    assert spec["role"] is None and spec["location"] == {"rack": "R1", "unit": 9, "slot": 0, "subSlot": 0}
    assert spec["nid"] == 1
    problem_of(await api.patch(f"{BASE}/node-1", json={"spec": {"state": "Melting"}}), 422)
    problem_of(await api.patch(f"{BASE}/node-1", json={"spec": {"bogus": 1}}), 422)
    problem_of(await api.patch(f"{BASE}/node-1", json={"nonsense": {}}), 422)
    assert (await api.get(f"{BASE}/node-1")).json()["spec"]["state"] == "Ready"


async def test_delete_cascades_and_refuses_parents(api, conn):
    await create(api, BASE, {"metadata": {"id": "bmc-1"}, "spec": {"type": "BMC"}})
    await create(api, BASE, {**NODE, "spec": {**NODE["spec"], "parentId": "bmc-1",
                                              "networkInterfaces": [{"macAddr": "aa:bb:cc:00:00:01"}]}})
    await api.post("/hsm/v2/groups", json={"spec": {"name": "rack1", "members": ["node-1"]}})
    body = problem_of(await api.delete(f"{BASE}/bmc-1"), 409)
    assert "node-1" in body["detail"]
    assert (await api.delete(f"{BASE}/node-1")).status_code == 204
    assert await conn.fetchval("SELECT count(*) FROM smd.ethernet_interfaces") == 0
    assert await conn.fetchval("SELECT count(*) FROM smd.group_members") == 0
    problem_of(await api.get(f"{BASE}/node-1"), 404)
    assert (await api.delete(f"{BASE}/bmc-1")).status_code == 204


async def test_list_filters_paging_sorting_fields_and_etag(api):
    for i in range(1, 8):
        await create(api, BASE, {"metadata": {"id": f"n{i}"}, "spec": {
            "type": "Node" if i < 6 else "Switch", "state": "Ready" if i % 2 else "Off",
            "role": "Compute" if i < 4 else "Storage", "nid": i, "location": {"rack": f"R{i % 2}"}}})
    await api.post("/hsm/v2/groups", json={"spec": {"name": "g1", "members": ["n1", "n2"]}})

    async def ids(query):
        response = await api.get(f"{BASE}?{query}")
        assert response.status_code == 200, response.text
        return [item["metadata"]["id"] for item in response.json()["items"]]

    assert await ids("type=Switch") == ["n6", "n7"]
    assert await ids("type=Node&state=Off") == ["n2", "n4"]
    assert await ids("role=Storage,Compute&rack=R0&sort=-nid") == ["n6", "n4", "n2"]
    assert await ids("group=g1") == ["n1", "n2"]
    assert await ids("nid=3,5") == ["n3", "n5"]
    page = (await api.get(f"{BASE}?limit=2&offset=2&sort=nid")).json()
    assert page["metadata"] == {"total": 7, "limit": 2, "offset": 2}
    assert [i["metadata"]["id"] for i in page["items"]] == ["n3", "n4"]
    keyset = (await api.get(f"{BASE}?limit=2&after=n3")).json()
    assert [i["metadata"]["id"] for i in keyset["items"]] == ["n4", "n5"] and keyset["metadata"]["total"] == 7
    problem_of(await api.get(f"{BASE}?after=n3&sort=-nid"), 400)
    sparse = (await api.get(f"{BASE}?fields=type,nid&limit=1")).json()
    assert sparse["items"][0]["spec"] == {"type": "Node", "nid": 1}
    first = await api.get(f"{BASE}?type=Node")
    assert (await api.get(f"{BASE}?type=Node", headers={"If-None-Match": first.headers["etag"]})).status_code == 304
    await api.patch(f"{BASE}/n1", json={"spec": {"state": "Halt"}})
    assert (await api.get(f"{BASE}?type=Node", headers={"If-None-Match": first.headers["etag"]})).status_code == 200
    for bad in ("type=Toaster", "limit=0", "limit=abc", "offset=-1", "sort=color", "fields=secret", "nid=x"):
        problem_of(await api.get(f"{BASE}?{bad}"), 400)


async def test_conflicts(api):
    await create(api, BASE, {**NODE, "spec": {**NODE["spec"], "networkInterfaces": [{"macAddr": "aa:bb:cc:00:00:01"}]}})
    problem_of(await api.post(BASE, json=NODE), 409)
    body = problem_of(await api.post(BASE, json={"metadata": {"id": "node-2"}, "spec": {"type": "Node", "nid": 1}}),
                      409)
    assert "node-1" in body["detail"]
    body = problem_of(await api.post(BASE, json={"metadata": {"id": "node-3"}, "spec": {
        "type": "Node", "networkInterfaces": [{"macAddr": "AABBCC000001"}]}}), 409)
    assert "node-1" in body["detail"] and "aa:bb:cc:00:00:01" in body["detail"]
    problem_of(await api.get(f"{BASE}/node-3"), 404)  # nothing partly written
