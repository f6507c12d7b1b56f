"""Finding 10: unauthenticated clients could bloat the metrics, the logs and the audit.

Every distinct HTTP method became a metrics series (an 8 KB method name, an
8 KB line in /metrics); a 1 MB client_id on /auth/v1/token made a 1 MB log
line and failed to go into the audit (index row too large), so the refusal
went unrecorded; failed token requests (~50 ms of scrypt each) had no limit.
"""

import logging
import re
import time

import httpx
import pytest

from admin_api.app import create_app
from admin_api.auth.accounts import create_account
from core import db
from core.config import load_config
from tests.helpers.api import problem_of
from tests.helpers.keys import SECRETS

KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}


async def test_unknown_methods_are_one_metrics_series(anonymous):
    for method in ("X" * 8192, "BREW", "PROPFIND", "M-SEARCH", "GET"):
        response = await anonymous.request(method, "/health")
        assert response.status_code in (200, 405)
    text = (await anonymous.get("/metrics")).text
    methods = set(re.findall(r'method="([^"]*)"', text))
    assert methods <= KNOWN_METHODS, methods - KNOWN_METHODS
    assert "OTHER" in methods
    assert max(len(line) for line in text.splitlines()) < 200


async def test_an_over_long_client_id_is_400_audited_truncated_and_logged_short(anonymous, api, caplog):
    caplog.set_level(logging.DEBUG)
    response = await anonymous.post("/auth/v1/token", data={"grant_type": "client_credentials",
                                                            "client_id": "c" * 1_000_000, "client_secret": "x"})
    problem = problem_of(response, 400)
    assert problem["title"] == "invalid_request" and "client_id" in problem["detail"]
    assert len(response.content) < 2000
    refused = (await api.get("/auth/v1/audit?action=token.refused")).json()
    assert len(refused) == 1, refused
    assert refused[0]["actor"].startswith("ccc") and len(refused[0]["actor"]) <= 300
    assert refused[0]["status"] == 400
    assert all(len(str(value)) <= 300 for value in refused[0]["detail"].values())
    assert caplog.records and max(len(record.getMessage()) for record in caplog.records) < 4096


async def test_every_logged_value_is_bounded(caplog):
    caplog.set_level(logging.INFO)
    from core.bounded import bound_log_records

    bound_log_records()
    logging.getLogger("chamicore.test").warning("value %s and %r", "v" * 100_000, "w" * 100_000)
    logging.getLogger("chamicore.test").warning("x" * 100_000)
    assert all(len(record.getMessage()) < 4096 for record in caplog.records)
    assert caplog.records[0].getMessage().startswith("value vvv")


@pytest.fixture
async def throttled_app(dsn):
    """The admin API with small limits: 3 failures per client, 5 per address, in a 2 s window."""
    config = load_config({"CHAMICORE_DATABASE_URL": dsn, **SECRETS, "CHAMICORE_TOKEN_FAILURES_PER_CLIENT": "3",
                          "CHAMICORE_TOKEN_FAILURES_PER_ADDRESS": "5", "CHAMICORE_TOKEN_FAILURE_WINDOW_S": "2"})
    app = create_app(config)
    async with app.router.lifespan_context(app):
        conn = await db.connect(dsn)
        try:
            app.state.test_secrets = {name: await create_account(conn, name, ["viewer"]) for name in ("robot", "other")}
        finally:
            await conn.close()
        yield app


def client_from(app, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url="http://a")


async def ask(client: httpx.AsyncClient, client_id: str, secret: str) -> httpx.Response:
    return await client.post("/auth/v1/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                     "client_secret": secret})


def assert_throttled(response: httpx.Response) -> int:
    problem = problem_of(response, 429)
    wait = int(response.headers["Retry-After"])
    assert 1 <= wait <= 2, wait
    assert "too many failed" in problem["detail"]
    return wait


async def test_failed_token_requests_are_limited_per_client(throttled_app):
    secrets = throttled_app.state.test_secrets
    async with client_from(throttled_app, "10.0.0.1") as first, client_from(throttled_app, "10.0.0.2") as second:
        for _ in range(3):
            assert (await ask(first, "robot", "wrong")).status_code == 401
        assert_throttled(await ask(first, "robot", "wrong"))
        assert_throttled(await ask(second, "robot", secrets["robot"]))  # the client is held, from anywhere
        assert (await ask(second, "other", secrets["other"])).status_code == 200  # others are not
        started = time.monotonic()
        for _ in range(20):  # refused before the secret is hashed: cheap
            assert (await ask(first, "robot", "wrong")).status_code == 429
        assert time.monotonic() - started < 0.5
        time.sleep(2.1)
        assert (await ask(first, "robot", secrets["robot"])).status_code == 200


async def test_failed_token_requests_are_limited_per_source_address(throttled_app):
    secrets = throttled_app.state.test_secrets
    async with client_from(throttled_app, "10.0.0.3") as noisy, client_from(throttled_app, "10.0.0.4") as quiet:
        for n in range(5):
            assert (await ask(noisy, f"guess-{n}", "wrong")).status_code == 401
        assert_throttled(await ask(noisy, "robot", secrets["robot"]))
        assert_throttled(await noisy.post("/auth/v1/token", content=b"garbage",
                                          headers={"Content-Type": "application/x-www-form-urlencoded"}))
        assert (await ask(quiet, "robot", secrets["robot"])).status_code == 200


def test_the_limits_are_documented_settings():
    config = load_config({})
    assert (config.token_failures_per_client, config.token_failures_per_address,
            config.token_failure_window_s) == (10, 30, 60.0)
