"""GET /auth/v1/audit?resource=: a node's history, the entries whose path names it."""

from tests.helpers.api import NODE, create

NODES = "/hsm/v2/State/Components"


async def test_entries_naming_a_resource(api):
    await create(api, NODES, NODE)
    await create(api, NODES, {"metadata": {"id": "node-10"}, "spec": {"type": "Node"}})
    patched = await api.patch(f"{NODES}/node-1", json={"spec": {"state": "Off"}},
                              headers={"Content-Type": "application/merge-patch+json"})
    assert patched.status_code == 200
    assert (await api.post("/hsm/v2/nodes/node-1/decommission", params={"dryRun": "true"})).status_code == 200
    answer = await api.get("/auth/v1/audit", params={"resource": "node-1"})
    assert answer.status_code == 200, answer.text
    # Not node-10's, nor the creations (POSTed to the collection, which does not name the node).
    assert [(e["action"], e["resource"]) for e in answer.json()] == [
        ("POST /hsm/v2/nodes/{id}/decommission", "/hsm/v2/nodes/node-1/decommission"),
        ("PATCH /hsm/v2/State/Components/{id}", f"{NODES}/node-1")]
