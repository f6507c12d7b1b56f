"""The admin API in-process (ASGI, with its lifespan) against a fresh database."""

import httpx
import pytest

from admin_api.app import create_app
from admin_api.auth.accounts import create_account
from core import db
from core.config import load_config

SECRETS = {"CHAMICORE_SECRET_KEY": "test-signing-key-0123456789abcdef",
           "CHAMICORE_CREDENTIALS_KEY": "test-credentials-key-0123456789abcdef"}


async def token_for(client: httpx.AsyncClient, dsn: str, client_id: str, roles: list[str]) -> str:
    conn = await db.connect(dsn)
    try:
        secret = await create_account(conn, client_id, roles)
    finally:
        await conn.close()
    response = await client.post("/auth/v1/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                         "client_secret": secret})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture
async def admin_app(dsn):
    app = create_app(load_config({"CHAMICORE_DATABASE_URL": dsn, **SECRETS}))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def anonymous(admin_app):
    """A client without a token."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=admin_app), base_url="http://admin") as client:
        yield client


@pytest.fixture
async def api(admin_app, anonymous, dsn):
    """A client holding an admin token."""
    token = await token_for(anonymous, dsn, "test-admin", ["admin"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=admin_app), base_url="http://admin",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


NODE = {"metadata": {"id": "node-1"}, "spec": {"type": "Node", "state": "Ready", "role": "Compute", "nid": 1,
                                               "location": {"rack": "R1", "unit": 4}}}


async def create(api, path, body, status=201):
    response = await api.post(path, json=body)
    assert response.status_code == status, response.text
    return response.json()


def problem_of(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["detail"]
    return body
