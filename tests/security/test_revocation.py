"""Finding 6: a token must not outlive its account, its secret or its role.

Deleting or disabling a service account, replacing its secret or narrowing
its roles (or the scopes of a role it holds) left the tokens already issued
valid for up to an hour.  Each now revokes the subject in the same
transaction; every admin process hears of it within a second (two apps
here, each with its own LISTEN connection, stand for two processes).
"""

import asyncio
import json

import httpx
import pytest

from admin_api.app import create_app
from core.config import load_config
from tests.helpers.identity_provider import IdentityProvider
from tests.helpers.keys import SECRETS
from tests.helpers.tokens import token_for

DEADLINE_S = 2.0
COMPONENTS = "/hsm/v2/State/Components"


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def second_app(dsn):
    """Another admin process on the same database."""
    app = create_app(load_config({"CHAMICORE_DATABASE_URL": dsn, **SECRETS}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin-2") as client:
            yield client


async def refused_everywhere(clients, token: str) -> None:
    """401 on every process within DEADLINE_S."""
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    for client in clients:
        while (status := (await client.get(COMPONENTS, headers=_bearer(token))).status_code) != 401:
            assert status == 200
            assert asyncio.get_running_loop().time() < deadline, f"{client.base_url} still accepts the old token"
            await asyncio.sleep(0.02)


async def accepted(clients, token: str) -> None:
    for client in clients:
        response = await client.get(COMPONENTS, headers=_bearer(token))
        assert response.status_code == 200, response.text


async def new_token(client, client_id: str, secret: str) -> str:
    response = await client.post("/auth/v1/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                         "client_secret": secret})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


async def test_a_deleted_accounts_token_stops_working(api, anonymous, second_app, dsn):
    token = await token_for(anonymous, dsn, "doomed", ["operator"])
    bystander = await token_for(anonymous, dsn, "bystander", ["operator"])
    made = await second_app.post(COMPONENTS, json={"metadata": {"id": "node-1"}, "spec": {"type": "Node"}},
                                 headers=_bearer(token))
    assert made.status_code == 201, made.text

    assert (await api.delete("/auth/v1/service-accounts/doomed")).status_code == 204
    await refused_everywhere([anonymous, second_app], token)
    late = await second_app.post(COMPONENTS, json={"metadata": {"id": "node-2"}, "spec": {"type": "Node"}},
                                 headers=_bearer(token))
    assert late.status_code == 401, late.text
    await accepted([anonymous, second_app], bystander)
    # A new account of the same name starts afresh.
    created = await api.post("/auth/v1/service-accounts", json={"clientId": "doomed", "roles": ["viewer"]})
    assert created.status_code == 201, created.text
    await accepted([anonymous, second_app], await new_token(anonymous, "doomed", created.json()["clientSecret"]))


async def test_a_disabled_accounts_token_stops_working(api, anonymous, second_app, dsn):
    token = await token_for(anonymous, dsn, "sleepy", ["operator"])
    await accepted([anonymous, second_app], token)
    # A change that takes nothing away keeps the token.
    assert (await api.patch("/auth/v1/service-accounts/sleepy", json={"description": "ci"})).status_code == 200
    assert (await api.patch("/auth/v1/service-accounts/sleepy", json={"roles": ["operator", "viewer"]})).status_code \
        == 200
    await asyncio.sleep(0.2)
    await accepted([anonymous, second_app], token)

    assert (await api.patch("/auth/v1/service-accounts/sleepy", json={"enabled": False})).status_code == 200
    await refused_everywhere([anonymous, second_app], token)


async def test_a_new_secret_ends_the_tokens_of_the_old_one(api, anonymous, second_app, dsn):
    token = await token_for(anonymous, dsn, "rotated", ["operator"])
    await accepted([anonymous, second_app], token)
    answer = await api.post("/auth/v1/service-accounts/rotated/secret")
    assert answer.status_code == 200, answer.text
    fresh = await new_token(second_app, "rotated", answer.json()["clientSecret"])  # at once, in the same second
    await refused_everywhere([anonymous, second_app], token)
    await accepted([anonymous, second_app], fresh)


async def account(api, client_id: str, roles: list[str]) -> str:
    """A service account made through the API; its secret."""
    created = await api.post("/auth/v1/service-accounts", json={"clientId": client_id, "roles": roles})
    assert created.status_code == 201, created.text
    return created.json()["clientSecret"]


async def test_narrowing_an_accounts_roles_ends_its_wider_tokens(api, anonymous, second_app):
    secret = await account(api, "narrowed", ["operator"])
    token = await new_token(anonymous, "narrowed", secret)
    answer = await api.patch("/auth/v1/service-accounts/narrowed", json={"roles": ["viewer"]})
    assert answer.status_code == 200, answer.text
    fresh = await new_token(anonymous, "narrowed", secret)  # at once, in the same second
    await refused_everywhere([anonymous, second_app], token)
    await accepted([anonymous, second_app], fresh)
    denied = await second_app.post(COMPONENTS, json={"metadata": {"id": "node-3"}, "spec": {"type": "Node"}},
                                   headers=_bearer(fresh))
    assert denied.status_code == 403


async def test_narrowing_a_role_ends_the_wider_tokens_of_its_holders(api, anonymous, second_app, dsn):
    assert (await api.put("/auth/v1/roles/inventory", json={"scopes": ["read:smd", "write:smd"]})).status_code == 200
    secret = await account(api, "holder", ["inventory"])
    holder = await new_token(anonymous, "holder", secret)
    other = await token_for(anonymous, dsn, "other", ["viewer"])
    # Widening takes nothing away.
    widened = await api.put("/auth/v1/roles/inventory", json={"scopes": ["read:smd", "write:smd", "read:bss"]})
    assert widened.status_code == 200
    await asyncio.sleep(0.2)
    await accepted([anonymous, second_app], holder)

    narrowed = await api.put("/auth/v1/roles/inventory", json={"scopes": ["read:smd"]})
    assert narrowed.status_code == 200, narrowed.text
    fresh = await new_token(second_app, "holder", secret)
    await refused_everywhere([anonymous, second_app], holder)
    await accepted([anonymous, second_app], other)
    await accepted([anonymous, second_app], fresh)


async def test_deleting_a_policy_ends_the_tokens_exchanged_under_it(dsn):
    idp = IdentityProvider()
    trusted = json.dumps([{"issuer": idp.issuer, "jwksUri": f"http://127.0.0.1:{idp.port}/certs"}])
    app = create_app(load_config({"CHAMICORE_DATABASE_URL": dsn, "CHAMICORE_TRUSTED_ISSUERS": trusted, **SECRETS}))
    try:
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client:
            admin = _bearer(await token_for(client, dsn, "root", ["admin"]))
            policy = await client.post("/auth/v1/policies", json={"issuer": idp.issuer, "subject": "alice",
                                                                  "roles": ["operator"]}, headers=admin)
            assert policy.status_code == 201, policy.text
            exchanged = await client.post("/auth/v1/token", data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "subject_token": idp.token("alice")})
            token = exchanged.json()["access_token"]
            await accepted([client], token)
            deleted = await client.delete(f"/auth/v1/policies/{policy.json()['id']}", headers=admin)
            assert deleted.status_code == 204
            await refused_everywhere([client], token)
    finally:
        idp.close()
