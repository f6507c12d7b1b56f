"""GET /hsm/v2/summary: component counts by type, and per type by state and role, as the lists count them."""

from tests.helpers.api import create, problem_of

BASE = "/hsm/v2/State/Components"


async def test_counts_match_the_filtered_lists(api, anonymous):
    for n, (kind, state, role, enabled) in enumerate([("Node", "Ready", "Compute", True),
                                                      ("Node", "Ready", "Compute", False),
                                                      ("Node", "Off", "Service", True),
                                                      ("Node", "Populated", None, True),
                                                      ("Switch", "Ready", None, True)]):
        spec = {"type": kind, "state": state, "enabled": enabled, **({"role": role} if role else {})}
        await create(api, BASE, {"metadata": {"id": f"c-{n}"}, "spec": spec})
    answer = await api.get("/hsm/v2/summary")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["kind"] == "ComponentSummary" and body["total"] == 5
    assert body["byType"]["Node"] == {"total": 4, "disabled": 1, "byState": {"Off": 1, "Populated": 1, "Ready": 2},
                                      "byRole": {"Compute": 2, "Service": 1}, "withoutRole": 1}
    assert body["byType"]["Switch"]["total"] == 1 and body["byType"]["Switch"]["withoutRole"] == 1
    for state, count in body["byType"]["Node"]["byState"].items():
        listed = await api.get(BASE, params={"type": "Node", "state": state, "limit": 1})
        assert listed.json()["metadata"]["total"] == count
    problem_of(await anonymous.get("/hsm/v2/summary"), 401)


async def test_an_empty_inventory(api):
    body = (await api.get("/hsm/v2/summary")).json()
    assert body["total"] == 0 and body["byType"] == {}
