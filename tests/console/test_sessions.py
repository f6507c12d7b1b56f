"""Console sessions without a browser: login, cookie flags, CSRF, timeouts, logout, and users' changes ending
sessions.  (The browser tests cover the same from the outside.)"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.console.conftest import PASSWORD, create_users


@pytest.fixture
async def people(admin_app, dsn):
    await create_users(dsn)


def client(admin_app, **kwargs) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=admin_app), base_url="http://admin",
                             follow_redirects=False, **kwargs)


@contextlib.asynccontextmanager
async def logged_in(admin_app, username: str = "alice") -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client holding a session cookie, and the session's CSRF token (read from a page, as a browser does)."""
    async with client(admin_app) as browser:
        yield browser, await _log_in(browser, username)


async def _log_in(browser: httpx.AsyncClient, username: str) -> str:
    answer = await browser.post("/ui/login", data={"username": username, "password": PASSWORD, "next": "/ui/account"})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui/account"
    page = await browser.get("/ui/account")
    assert page.status_code == 200, page.text
    token = re.search(r'data-csrf="([^"]+)"', page.text)
    assert token, page.text
    return token.group(1)


async def test_pages_send_a_strict_content_security_policy_and_ask_for_a_login(admin_app, people):
    async with client(admin_app) as browser:
        answer = await browser.get("/ui/account?x=1")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/login?next=%2Fui%2Faccount%3Fx%3D1"
        login = await browser.get("/ui/login")
        assert login.status_code == 200 and 'name="password"' in login.text
        csp = login.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "http" not in csp  # nothing from another origin
        assert login.headers["x-frame-options"] == "DENY" and login.headers["x-content-type-options"] == "nosniff"
        assert (await browser.get("/")).headers["location"] == "/ui/"


async def test_a_login_sets_an_httponly_samesite_strict_cookie_and_is_audited(admin_app, people, conn):
    async with client(admin_app) as browser:
        refused = await browser.post("/ui/login", data={"username": "alice", "password": "wrong password!"})
        assert refused.status_code == 401 and "Wrong username or password" in refused.text
        assert "set-cookie" not in refused.headers
        unknown = await browser.post("/ui/login", data={"username": "nobody", "password": PASSWORD})
        assert unknown.status_code == 401
        answer = await browser.post("/ui/login", data={"username": "alice", "password": PASSWORD,
                                                       "next": "https://evil.example/"})
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/"  # no open redirect
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("chamicore_session=")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie  # plain http here
    rows = await conn.fetch("SELECT actor, action, status FROM auth.audit ORDER BY seq")
    assert [(r["actor"], r["action"], r["status"]) for r in rows] == [
        ("alice", "console.login-refused", 401), ("nobody", "console.login-refused", 401),
        ("alice", "console.login", 200)]
    stored = await conn.fetchval("SELECT id_hash FROM auth.sessions")
    assert stored is not None and cookie.split(";")[0].split("=", 1)[1].encode() != stored  # only its hash


async def test_the_cookie_is_secure_behind_tls(admin_app, people):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=admin_app), base_url="https://admin") as browser:
        answer = await browser.post("/ui/login", data={"username": "alice", "password": PASSWORD})
        assert "Secure" in answer.headers["set-cookie"]


async def test_a_change_without_the_csrf_token_or_from_another_origin_is_refused(admin_app, people, conn):
    async with logged_in(admin_app) as (browser, token):
        no_token = await browser.post("/ui/logout")
        assert no_token.status_code == 403 and "security token" in no_token.text
        wrong = await browser.post("/ui/logout", data={"csrf_token": "x" * 43})
        assert wrong.status_code == 403
        other_site = await browser.post("/ui/logout", data={"csrf_token": token},
                                        headers={"Origin": "https://evil.example"})
        assert other_site.status_code == 403 and "another site" in other_site.text
        assert await conn.fetchval("SELECT count(*) FROM auth.sessions") == 1  # none of them logged out
        header = await browser.post("/ui/logout", headers={"X-CSRF-Token": token, "Origin": "http://admin"})
        assert header.status_code == 303
        assert await conn.fetchval("SELECT count(*) FROM auth.sessions") == 0


async def test_logout_ends_the_session_on_the_server(admin_app, people, conn):
    async with logged_in(admin_app) as (browser, token):
        stolen = browser.cookies.get("chamicore_session")
        answer = await browser.post("/ui/logout", data={"csrf_token": token})
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
        assert 'chamicore_session=""' in answer.headers["set-cookie"] or "Max-Age=0" in answer.headers["set-cookie"]
    async with client(admin_app, cookies={"chamicore_session": stolen}) as replay:
        assert (await replay.get("/ui/account")).status_code == 303  # the old cookie opens nothing
    assert await conn.fetchval("SELECT action FROM auth.audit ORDER BY seq DESC LIMIT 1") == "console.logout"


@pytest.mark.parametrize("expire", [
    "UPDATE auth.sessions SET last_seen = now() - interval '31 minutes'",     # idle (CONSOLE_IDLE_S=1800)
    "UPDATE auth.sessions SET expires_at = now() - interval '1 second'",      # absolute
    "UPDATE auth.users SET enabled = false",                                  # its user disabled by hand
])
async def test_an_idle_expired_or_disabled_session_opens_nothing(admin_app, people, conn, expire):
    async with logged_in(admin_app) as (browser, _token):
        await conn.execute(expire)
        answer = await browser.get("/ui/account")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")
        fragment = await browser.get("/ui/account", headers={"X-Console-Fragment": "1"})
        assert fragment.status_code == 401


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/auth/v1/users/alice/password", {"password": "a brand new passphrase"}),
    ("PATCH", "/auth/v1/users/alice", {"enabled": False}),
    ("PATCH", "/auth/v1/users/alice", {"roles": ["viewer"]}),
    ("DELETE", "/auth/v1/users/alice", None),
])
async def test_what_takes_from_a_user_ends_its_sessions(admin_app, api, people, conn, dsn, method, path, body):
    await create_users(dsn, {"root": ["admin"]})  # alice is not the last who may manage access (that is refused)
    async with logged_in(admin_app) as (browser, _token):
        answer = await api.request(method, path, json=body)
        assert answer.status_code in (200, 204), answer.text
        assert await conn.fetchval("SELECT count(*) FROM auth.sessions") == 0
        assert (await browser.get("/ui/account")).status_code == 303


async def test_a_change_that_takes_nothing_keeps_the_sessions(admin_app, api, people, conn):
    async with logged_in(admin_app) as (browser, _token):
        answer = await api.patch("/auth/v1/users/alice", json={"displayName": "Alice A.", "roles": ["admin", "viewer"]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["sessions"] == 1
        assert await conn.fetchval("SELECT count(*) FROM auth.sessions") == 1


async def test_users_rest_validates_and_never_shows_a_password(api, people):
    short = await api.post("/auth/v1/users", json={"username": "bob", "password": "short", "roles": ["viewer"]})
    assert short.status_code == 422
    bad_role = await api.post("/auth/v1/users", json={"username": "bob", "password": PASSWORD, "roles": ["root"]})
    assert bad_role.status_code == 422 and "no role 'root'" in bad_role.text
    bad_name = await api.post("/auth/v1/users", json={"username": "Bob<script>", "password": PASSWORD})
    assert bad_name.status_code == 422
    made = await api.post("/auth/v1/users", json={"username": "bob", "password": PASSWORD, "roles": ["viewer"]})
    assert made.status_code == 201, made.text
    again = await api.post("/auth/v1/users", json={"username": "bob", "password": PASSWORD})
    assert again.status_code == 409
    listed = (await api.get("/auth/v1/users")).json()
    assert [u["username"] for u in listed] == ["alice", "bob", "oscar", "victor"]
    assert all("password" not in str(u).lower() for u in listed)


async def test_a_viewer_cannot_manage_users(admin_app, anonymous, dsn, people):
    from tests.helpers.tokens import token_for

    token = await token_for(anonymous, dsn, "looker", ["viewer"])
    answer = await anonymous.post("/auth/v1/users", json={"username": "eve", "password": PASSWORD},
                                  headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 403


async def test_logins_are_held_after_too_many_failures(admin_app, people):
    async with client(admin_app) as browser:
        for _ in range(admin_app.state.config.token_failures_per_client):
            assert (await browser.post("/ui/login", data={"username": "alice", "password": "x" * 12})).status_code \
                == 401
        held = await browser.post("/ui/login", data={"username": "alice", "password": PASSWORD})
        assert held.status_code == 429 and "retry in" in held.text


async def test_using_a_session_keeps_it_alive_without_a_write_per_page(admin_app, people, conn):
    async with logged_in(admin_app) as (browser, _token):
        await conn.execute("UPDATE auth.sessions SET last_seen = now() - interval '20 minutes'")
        assert (await browser.get("/ui/account")).status_code == 200  # within the 30 idle minutes: touched
        touched = await conn.fetchval("SELECT now() - last_seen FROM auth.sessions")
        assert touched.total_seconds() < 5
        await conn.execute("UPDATE auth.sessions SET last_seen = now() - interval '5 seconds'")
        before = await conn.fetchval("SELECT xmin::text FROM auth.sessions")
        assert (await browser.get("/ui/account")).status_code == 200
        assert await conn.fetchval("SELECT xmin::text FROM auth.sessions") == before  # a fresh one is not rewritten
