"""Tokens, scopes, revocation, keys, service accounts, credentials, audit."""

import asyncio
import base64
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from admin_api.app import create_app
from core.config import load_config
from tests.helpers.api import create, problem_of
from tests.helpers.identity_provider import IdentityProvider
from tests.helpers.keys import SECRETS
from tests.helpers.servers import ServiceServer
from tests.helpers.tokens import token_for


async def test_tokens_verify_against_the_served_jwks(api, anonymous, dsn):
    token = await token_for(anonymous, dsn, "robot", ["viewer"])
    jwks = (await anonymous.get("/.well-known/jwks.json")).json()
    discovery = (await anonymous.get("/.well-known/openid-configuration")).json()
    assert discovery["jwks_uri"].endswith("/.well-known/jwks.json") and "client_credentials" in \
        discovery["grant_types_supported"]
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.algorithms.RSAAlgorithm.from_jwk(next(k for k in jwks["keys"] if k["kid"] == kid))
    claims = jwt.decode(token, key, algorithms=["RS256"], audience="chamicore", issuer=discovery["issuer"])
    assert claims["sub"] == "robot" and claims["roles"] == ["viewer"]
    assert set(claims["scope"].split()) == {"read:smd", "read:bss", "read:cloudinit", "read:discovery", "read:power"}
    assert claims["exp"] - claims["iat"] == 3600 and claims["jti"]


async def test_token_endpoint_errors(anonymous, dsn):
    await token_for(anonymous, dsn, "robot", ["viewer"])
    wrong = await anonymous.post("/auth/v1/token", data={"grant_type": "client_credentials", "client_id": "robot",
                                                         "client_secret": "nope"})
    assert wrong.status_code == 401 and wrong.json()["title"] == "invalid_client"
    unknown = await anonymous.post("/auth/v1/token", json={"grant_type": "client_credentials", "client_id": "ghost",
                                                           "client_secret": "x"})
    assert unknown.status_code == 401
    grant = await anonymous.post("/auth/v1/token", data={"grant_type": "password"})
    assert grant.status_code == 400 and grant.json()["title"] == "unsupported_grant_type"
    bad = await anonymous.post("/auth/v1/token", content=b"\xff", headers={"Content-Type": "text/plain"})
    assert bad.status_code == 415


async def test_requested_scope_is_narrowed_or_refused(anonymous, dsn):
    from admin_api.auth.accounts import create_account
    from core import db

    conn = await db.connect(dsn)
    secret = await create_account(conn, "narrow", ["operator"])
    await conn.close()
    form = {"grant_type": "client_credentials", "client_id": "narrow", "client_secret": secret}
    narrowed = await anonymous.post("/auth/v1/token", data={**form, "scope": "read:smd"})
    assert narrowed.json()["scope"] == "read:smd"
    refused = await anonymous.post("/auth/v1/token", data={**form, "scope": "read:smd read:credentials"})
    assert refused.status_code == 400 and refused.json()["title"] == "invalid_scope"


def _forge(claims: dict, key=None, alg="RS256", kid="x") -> str:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


async def test_bad_tokens_are_401(api, anonymous, dsn):
    good = api.headers["Authorization"].split()[1]
    claims = jwt.decode(good, options={"verify_signature": False})
    kid = jwt.get_unverified_header(good)["kid"]
    header, payload, signature = good.split(".")
    tampered_payload = base64.urlsafe_b64encode(json.dumps({**claims, "scope": claims["scope"] + " root"}).encode())
    none_header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    cases = {
        "tampered": f"{header}.{tampered_payload.decode().rstrip('=')}.{signature}",
        "foreign key": _forge({**claims}, kid=kid),
        "alg none": f"{none_header}.{payload}.",
        "HS256": jwt.encode(claims, "a-shared-secret-long-enough-for-hs256", algorithm="HS256", headers={"kid": kid}),
        "garbage": "not.a.token",
        "empty": "",
    }
    for name, token in cases.items():
        response = await anonymous.get("/hsm/v2/State/Components", headers={"Authorization": f"Bearer {token}"})
        problem = problem_of(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer"), name
        assert problem["detail"], name
    problem_of(await anonymous.get("/hsm/v2/State/Components", headers={"Authorization": f"Basic {good}"}), 401)


async def test_expired_and_wrong_audience_tokens_signed_by_our_own_key(admin_app, anonymous):
    from admin_api.auth import keys

    async with admin_app.state.pool.acquire() as conn:
        kid, private = await keys.signing_key(conn, admin_app.state.auth.box)
    now = int(time.time())
    base = {"iss": admin_app.state.config.token_issuer, "sub": "x", "aud": "chamicore", "iat": now, "exp": now + 60,
            "jti": "j1", "scope": "read:smd"}
    assert (await anonymous.get("/hsm/v2/State/Components",
                                headers={"Authorization": f"Bearer {_forge(base, private, kid=kid)}"})).status_code \
        == 200
    for name, claims in {"expired": {**base, "exp": now - 10, "iat": now - 100},
                         "wrong audience": {**base, "aud": "someone-else"},
                         "wrong issuer": {**base, "iss": "http://evil"},
                         "no jti": {k: v for k, v in base.items() if k != "jti"}}.items():
        response = await anonymous.get("/hsm/v2/State/Components",
                                       headers={"Authorization": f"Bearer {_forge(claims, private, kid=kid)}"})
        assert response.status_code == 401, name


async def test_missing_scope_is_403_naming_it(anonymous, dsn):
    viewer = await token_for(anonymous, dsn, "looker", ["viewer"])
    response = await anonymous.post("/hsm/v2/State/Components", json={"spec": {"type": "Node"}},
                                    headers={"Authorization": f"Bearer {viewer}"})
    problem = problem_of(response, 403)
    assert "write:smd" in problem["detail"]
    assert (await anonymous.get("/hsm/v2/State/Components", headers={"Authorization": f"Bearer {viewer}"})
            ).status_code == 200


async def test_every_protected_route_refuses_anonymous_calls(anonymous):
    document = (await anonymous.get("/api/openapi.json")).json()
    checked = 0
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if "x-required-scope" not in operation:
                continue
            url = path.replace("{id}", "x1").replace("{name}", "x1")
            response = await anonymous.request(method.upper(), url, json={})
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            checked += 1
    assert checked >= 40


async def test_secrets_are_not_stored_in_plaintext(api, conn):
    account = await create(api, "/auth/v1/service-accounts", {"clientId": "bot-1", "roles": ["viewer"]})
    secret = account["clientSecret"]
    await create(api, "/auth/v1/credentials", {"id": "bmc-cred", "username": "root", "secret": "Sup3r-S3cret-BMC",
                                               "tags": ["rack1"]})
    dump = ""
    for table in ("auth.service_accounts", "auth.credentials", "auth.signing_keys"):
        rows = await conn.fetch(f"SELECT * FROM {table}")
        dump += repr([dict(r) for r in rows])
    assert secret not in dump and "Sup3r-S3cret-BMC" not in dump and "PRIVATE KEY" not in dump
    assert "scrypt$" in dump
    # The account's secret works, once shown.
    response = await api.post("/auth/v1/token", data={"grant_type": "client_credentials", "client_id": "bot-1",
                                                      "client_secret": secret})
    assert response.status_code == 200


async def test_credentials_redact_and_need_their_own_scope(api, anonymous, dsn):
    await create(api, "/auth/v1/credentials", {"id": "bmc-a", "username": "root", "secret": "pw-a", "tags": ["r1"]})
    await create(api, "/auth/v1/credentials", {"id": "bmc-b", "username": "admin", "secret": "pw-b", "tags": ["r2"]})
    listed = (await api.get("/auth/v1/credentials?tag=r1")).json()
    assert [c["id"] for c in listed] == ["bmc-a"] and listed[0]["secret"] == "****"
    assert (await api.get("/auth/v1/credentials/bmc-a")).json()["secret"] == "****"
    assert (await api.get("/auth/v1/credentials/bmc-a/secret")).json()["secret"] == "pw-a"
    operator = await token_for(anonymous, dsn, "ops", ["operator"])
    problem = problem_of(await anonymous.get("/auth/v1/credentials/bmc-a/secret",
                                             headers={"Authorization": f"Bearer {operator}"}), 403)
    assert "read:credentials" in problem["detail"]
    await api.patch("/auth/v1/credentials/bmc-a", json={"secret": "pw-a2"})
    assert (await api.get("/auth/v1/credentials/bmc-a/secret")).json()["secret"] == "pw-a2"


async def test_rotation_keeps_old_tokens_valid(api, admin_app, anonymous, dsn):
    from admin_api.auth import keys

    old_token = api.headers["Authorization"]
    async with admin_app.state.pool.acquire() as conn:
        new_kid, old_kid = await keys.rotate(conn, admin_app.state.auth.box, 3600)
    await admin_app.state.auth.reload()
    published = {k["kid"] for k in (await anonymous.get("/.well-known/jwks.json")).json()["keys"]}
    assert published == {new_kid, old_kid}
    assert (await anonymous.get("/hsm/v2/State/Components", headers={"Authorization": old_token})).status_code == 200
    fresh = await token_for(anonymous, dsn, "after-rotation", ["viewer"])
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid


async def test_audit_records_mutations_and_tokens(api, anonymous, dsn):
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "n1"}, "spec": {"type": "Node"}})
    await api.post("/hsm/v2/State/Components", json={"spec": {"type": "Bad"}})
    await anonymous.post("/hsm/v2/State/Components", json={"spec": {"type": "Node"}})
    await anonymous.post("/auth/v1/token", data={"grant_type": "client_credentials", "client_id": "x",
                                                 "client_secret": "y"})
    entries = (await api.get("/auth/v1/audit?limit=20")).json()
    summary = [(e["actor"], e["action"], e["status"], e["outcome"]) for e in entries]
    assert ("test-admin", "POST /hsm/v2/State/Components", 201, "success") in summary
    assert ("test-admin", "POST /hsm/v2/State/Components", 422, "failure") in summary
    assert ("anonymous", "POST /hsm/v2/State/Components", 401, "denied") in summary
    assert ("x", "token.refused", 401, "denied") in summary
    assert ("test-admin", "token.issued", 200, "success") in summary
    only = (await api.get("/auth/v1/audit?outcome=denied")).json()
    assert {e["outcome"] for e in only} == {"denied"}
    viewer = await token_for(anonymous, dsn, "peeker", ["viewer", "operator"])
    problem_of(await anonymous.get("/auth/v1/audit", headers={"Authorization": f"Bearer {viewer}"}), 403)


async def test_service_accounts_and_roles(api):
    created = await create(api, "/auth/v1/service-accounts", {"clientId": "ci-bot", "roles": ["operator"]})
    assert created["clientSecret"] and created["roles"] == ["operator"]
    assert "clientSecret" not in (await api.get("/auth/v1/service-accounts/ci-bot")).json()
    problem_of(await api.post("/auth/v1/service-accounts", json={"clientId": "ci-bot"}), 409)
    problem_of(await api.post("/auth/v1/service-accounts", json={"clientId": "x2", "roles": ["wizard"]}), 422)
    disabled = await api.patch("/auth/v1/service-accounts/ci-bot", json={"enabled": False})
    assert disabled.json()["enabled"] is False
    refused = await api.post("/auth/v1/token", data={"grant_type": "client_credentials", "client_id": "ci-bot",
                                                     "client_secret": created["clientSecret"]})
    assert refused.status_code == 401
    role = await api.put("/auth/v1/roles/netops", json={"scopes": ["read:smd", "read:power"]})
    assert role.status_code == 200 and role.json()["scopes"] == ["read:smd", "read:power"]
    problem_of(await api.put("/auth/v1/roles/admin", json={"scopes": ["read:smd"]}), 409)
    problem_of(await api.put("/auth/v1/roles/x1", json={"scopes": ["make:coffee"]}), 422)
    names = [r["name"] for r in (await api.get("/auth/v1/roles")).json()]
    assert names == ["admin", "netops", "operator", "viewer"]
    assert (await api.delete("/auth/v1/service-accounts/ci-bot")).status_code == 204


async def test_token_exchange_with_an_outside_identity_provider(dsn):
    idp = IdentityProvider()
    trusted = json.dumps([{"issuer": idp.issuer, "jwksUri": f"http://127.0.0.1:{idp.port}/certs"}])
    app = create_app(load_config({"CHAMICORE_DATABASE_URL": dsn, "CHAMICORE_TRUSTED_ISSUERS": trusted, **SECRETS}))
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client:
                exchange = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"}
                response = await client.post("/auth/v1/token", data={**exchange, "subject_token": idp.token("alice")})
                assert response.status_code == 400 and "no policy" in response.json()["detail"]
                admin = await token_for(client, dsn, "root", ["admin"])
                policy = await client.post("/auth/v1/policies", json={"issuer": idp.issuer, "subject": "alice",
                                                                      "roles": ["viewer"]},
                                           headers={"Authorization": f"Bearer {admin}"})
                assert policy.status_code == 201, policy.text
                response = await client.post("/auth/v1/token", data={**exchange, "subject_token": idp.token("alice")})
                assert response.status_code == 200, response.text
                token = response.json()["access_token"]
                claims = jwt.decode(token, options={"verify_signature": False})
                assert claims["sub"] == "alice" and claims["idp"] == idp.issuer and "read:smd" in claims["scope"]
                assert (await client.get("/hsm/v2/State/Components",
                                         headers={"Authorization": f"Bearer {token}"})).status_code == 200
                for bad in (idp.token("alice", aud="other"), idp.token("alice", exp=-10),
                            _forge({"iss": idp.issuer, "sub": "alice", "aud": "chamicore",
                                    "exp": int(time.time()) + 60}, kid="idp-1")):
                    refused = await client.post("/auth/v1/token", data={**exchange, "subject_token": bad})
                    assert refused.status_code == 400, refused.text
                stranger = _forge({"iss": "http://evil", "sub": "alice", "aud": "chamicore",
                                   "exp": int(time.time()) + 60})
                refused = await client.post("/auth/v1/token", data={**exchange, "subject_token": stranger})
                assert refused.status_code == 400 and "not trusted" in refused.json()["detail"]
    finally:
        idp.close()


def test_revocation_reaches_every_admin_process_within_a_second(dsn):
    # Replicas behind one address share one issuer (tokens name it; every replica checks it).
    first = ServiceServer(dsn, service="admin", CHAMICORE_ISSUER="http://admin.cluster").start()
    second = ServiceServer(dsn, service="admin", CHAMICORE_ISSUER="http://admin.cluster").start()
    try:
        token = asyncio.run(token_for(first.url, dsn, "revokee", ["admin"]))
        other = asyncio.run(token_for(first.url, dsn, "bystander", ["admin"]))
        auth = {"Authorization": f"Bearer {token}"}
        assert second.get("/hsm/v2/State/Components", auth)[0] == 200
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        request = {"Authorization": f"Bearer {other}", "Content-Type": "application/json"}
        import urllib.request

        revoke = urllib.request.Request(first.url + "/auth/v1/token/revoke", data=json.dumps({"jti": jti}).encode(),
                                        method="POST", headers=request)
        with urllib.request.urlopen(revoke, timeout=5) as response:
            assert response.status == 200
        revoked_at = time.monotonic()
        assert first.get("/hsm/v2/State/Components", auth)[0] == 401
        while second.get("/hsm/v2/State/Components", auth)[0] != 401:
            assert time.monotonic() - revoked_at < 1.0, "the second process still accepts the revoked token"
            time.sleep(0.01)
        assert second.get("/hsm/v2/State/Components", {"Authorization": f"Bearer {other}"})[0] == 200
        # By subject: every token of "bystander" issued so far.
        revoke = urllib.request.Request(first.url + "/auth/v1/token/revoke",
                                        data=json.dumps({"subject": "bystander"}).encode(), method="POST",
                                        headers=request)
        with urllib.request.urlopen(revoke, timeout=5) as response:
            assert response.status == 200
        deadline = time.monotonic() + 1.0
        while second.get("/hsm/v2/State/Components", {"Authorization": f"Bearer {other}"})[0] != 401:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize("body", [{"jti": "a", "subject": "b"}, {}, {"jti": 5}])
async def test_revoke_needs_one_target(api, body):
    problem_of(await api.post("/auth/v1/token/revoke", json=body), 422)


async def test_dev_mode_turns_checks_off_loudly(dsn):
    app = create_app(load_config({"CHAMICORE_DATABASE_URL": dsn, "CHAMICORE_DEV_MODE": "true"}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client:
            assert (await client.get("/hsm/v2/State/Components")).status_code == 200
            assert "authentication is OFF" in (await client.get("/health")).json()["warning"]


async def test_refuses_to_start_without_a_signing_secret(dsn):
    from core.crypto import SecretKeyMissing

    with pytest.raises(SecretKeyMissing, match="CHAMICORE_SECRET_KEY"):
        create_app(load_config({"CHAMICORE_DATABASE_URL": dsn}))


async def test_expired_revocations_are_pruned(admin_app, conn):
    await conn.execute("INSERT INTO auth.revocations (jti, expires_at) VALUES ('old', now() - interval '1 hour'), "
                       "('new', now() + interval '1 hour')")
    await admin_app.state.auth.reload()
    assert admin_app.state.auth.verifier.revoked_jtis == {"new"}
    await admin_app.state.auth.prune_once()
    assert [r["jti"] for r in await conn.fetch("SELECT jti FROM auth.revocations")] == ["new"]
    await asyncio.sleep(0)
