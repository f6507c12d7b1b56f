"""The admin API's /metrics (admin_api/service.py): prometheus_client's exposition, read with its own parser; token
refusals counted by reason; several workers answer as one."""

from __future__ import annotations

import asyncio

import httpx

from tests.helpers.exposition import families, key, samples
from tests.helpers.paths import tmp_root
from tests.helpers.servers import ServiceServer
from tests.helpers.tokens import token_for


async def test_token_refusals_count_by_reason(anonymous, api):
    for secret in ("wrong", "also wrong"):
        refused = await anonymous.post("/auth/v1/token", data={"grant_type": "client_credentials",
                                                               "client_id": "test-admin", "client_secret": secret})
        assert refused.status_code == 401
    unsupported = await anonymous.post("/auth/v1/token", data={"grant_type": "password", "client_id": "x",
                                                               "client_secret": "y"})
    assert unsupported.status_code == 400
    found = families((await api.get("/metrics")).text)
    refusals = found["chamicore_auth_token_refusals"]
    assert refusals.type == "counter"
    by_reason = {s.labels["reason"]: s.value for s in refusals.samples}
    assert by_reason == {"invalid_client": 2, "unsupported_grant_type": 1}
    # The token that `api` holds was issued, not refused; the route counts all three refusals too.
    requests = {(s.labels["route"], s.labels["status"]): s.value for s in found["chamicore_admin_requests"].samples}
    assert requests[("/auth/v1/token", "401")] == 2 and requests[("/auth/v1/token", "400")] == 1


async def test_throttled_token_requests_count_as_refusals(anonymous, api, admin_app):
    throttle = admin_app.state.token_throttle
    for _ in range(50):
        answer = await anonymous.post("/auth/v1/token", data={"grant_type": "client_credentials",
                                                              "client_id": "guessed", "client_secret": "nope"})
        if answer.status_code == 429:
            break
    else:
        raise AssertionError(f"never throttled ({throttle})")
    values = samples((await api.get("/metrics")).text)
    assert values[key("chamicore_auth_token_refusals_total", reason="throttled")] == 1
    assert values[key("chamicore_auth_token_refusals_total", reason="invalid_client")] >= 1


async def test_every_family_is_chamicore_and_the_database_is_read(api):
    text = (await api.get("/metrics")).text
    found = families(text)
    assert all(name.startswith("chamicore_") for name in found), sorted(found)
    assert samples(text)[key("chamicore_admin_database_up")] == 1
    assert found["chamicore_sync_replicas"].type == "gauge"


def test_two_admin_workers_answer_as_one(dsn):
    """`chamicore serve admin` with two workers: whichever answers /metrics counts the requests both served."""
    # An operator's directory (a Kubernetes emptyDir, say), holding a previous run's file: emptied at start.
    directory = tmp_root()
    (directory / "counter_1.db").write_bytes(b"left by a previous run")
    server = ServiceServer(dsn, service="admin", CHAMICORE_ADMIN_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(directory))
    try:
        server.start(timeout=90)  # two workers import the whole admin API at once, on a busy machine
        token = asyncio.run(token_for(server.url, dsn))
        sent = 40

        async def ask() -> None:
            async def one() -> None:  # a new connection per request, several at once: the workers share them
                async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as c:
                    assert (await c.get("/hsm/v2/State/Components/x1000c0s0b0n0")).status_code == 404

            await asyncio.gather(*(one() for _ in range(sent)))

        asyncio.run(ask())
        route = ("/hsm/v2/State/Components/{id}", "GET", "404")

        def counted() -> float:
            found = families(httpx.get(server.url + "/metrics", headers={"Connection": "close"}).text)
            return sum(s.value for s in found["chamicore_admin_requests"].samples
                       if (s.labels["route"], s.labels["method"], s.labels["status"]) == route)

        # prometheus_client's multiprocess files are written on every request: every scrape sees all of them.
        assert [counted() for _ in range(6)] == [sent] * 6
        # Both workers served some: each keeps its counters in a file of its own (named after its pid).
        assert len(list(directory.glob("counter_*.db"))) == 2 and not (directory / "counter_1.db").exists()
    finally:
        server.stop()
