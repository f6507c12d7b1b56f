"""/power/v1/transitions/{id}/tasks: the counts of every task and a page of them, filtered by state."""

from tests.helpers.api import create, problem_of


async def test_a_page_of_tasks_with_the_counts_of_all(api):
    for i in (1, 2, 3):  # no BMC: each task fails at once, no engine needed
        await create(api, "/hsm/v2/State/Components", {"metadata": {"id": f"node-{i}"}, "spec": {"type": "Node"}})
    started = await create(api, "/power/v1/transitions", {"operation": "On", "nodes": ["node-3", "node-1", "node-2"]})
    path = f"/power/v1/transitions/{started['id']}/tasks"

    page = (await api.get(path, params={"limit": 2, "offset": 1})).json()
    assert page["metadata"] == {"total": 3, "limit": 2, "offset": 1}
    assert [t["nodeId"] for t in page["items"]] == ["node-2", "node-3"]
    assert page["items"][0]["state"] == "failed" and "has no BMC" in page["items"][0]["detail"]
    assert page["transition"]["counts"] == {"total": 3, "failed": 3}
    assert page["transition"]["operation"] == "On" and "tasks" not in page["transition"]

    none = (await api.get(path, params={"state": "pending,succeeded"})).json()
    assert none["metadata"]["total"] == 0 and none["items"] == []
    assert none["transition"]["counts"] == {"total": 3, "failed": 3}  # the counts are the transition's, unfiltered
    problem_of(await api.get(path, params={"state": "done"}), 400)
    problem_of(await api.get("/power/v1/transitions/00000000-0000-0000-0000-000000000000/tasks"), 404)
    problem_of(await api.get("/power/v1/transitions/not-a-uuid/tasks"), 404)
