"""/discovery/v1/scans/{id}/hosts: the counts of every host and a page of them, filtered by state."""

from tests.helpers.api import create, problem_of


async def test_a_page_of_hosts_with_the_counts_of_all(api):
    await create(api, "/discovery/v1/targets", {"metadata": {"id": "rack"}, "spec": {
        "driver": "redfish", "address": "10.9.0.1-10.9.0.5"}})
    started = await create(api, "/discovery/v1/scans", {"targets": ["rack"]})  # no scanner: every host waits
    path = f"/discovery/v1/scans/{started['metadata']['id']}/hosts"

    page = (await api.get(path, params={"limit": 2, "offset": 3})).json()
    assert page["metadata"] == {"total": 5, "limit": 2, "offset": 3}
    assert [h["host"] for h in page["items"]] == ["https://10.9.0.4", "https://10.9.0.5"]
    assert {h["state"] for h in page["items"]} == {"pending"}
    assert page["scan"]["status"]["counts"] == {"pending": 5} and "results" not in page["scan"]["status"]

    none = (await api.get(path, params={"state": "ok,failed"})).json()
    assert none["metadata"]["total"] == 0 and none["items"] == []
    assert none["scan"]["status"]["counts"] == {"pending": 5}
    problem_of(await api.get(path, params={"state": "done"}), 400)
    problem_of(await api.get("/discovery/v1/scans/no-such-scan/hosts"), 404)
