"""Every console page, whoever wrote it: no session opens nothing, no change without the CSRF token, every
answer carries the strict Content-Security-Policy.  Enumerated from admin_api.console.PAGES, so a new page
is covered the day it is added."""

from __future__ import annotations

import re

import httpx
import pytest

from admin_api.console import PAGES
from admin_api.console.web import CSP
from tests.console.conftest import PASSWORD, create_users

ALL = [(page.method, page.path) for pages in PAGES for page in pages.pages]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


@pytest.fixture
async def browser(admin_app, dsn):
    await create_users(dsn)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=admin_app), base_url="http://admin",
                                 follow_redirects=False) as client:
        yield client


async def test_the_console_has_pages_to_check():
    assert len(ALL) >= 10 and ("POST", "/ui/logout") in ALL


async def test_no_session_opens_nothing(browser):
    opened = []
    for method, path in ALL:  # one app for all: a fresh one per page would cost seconds each
        answer = await browser.request(method, concrete(path))
        refused = (answer.status_code == 303 and answer.headers["location"].startswith("/ui/login?next=")
                   if method == "GET" else answer.status_code == 401)
        if not refused or answer.headers.get("content-security-policy") != CSP:
            opened.append((method, path, answer.status_code))
    assert opened == []


async def test_every_change_needs_the_csrf_token(browser, conn):
    logged_in = await browser.post("/ui/login", data={"username": "alice", "password": PASSWORD})
    assert logged_in.status_code == 303
    before = await conn.fetchval("SELECT count(*) FROM auth.audit")
    for method, path in ALL:
        if method != "POST":
            continue
        answer = await browser.post(concrete(path), data={"ids": "node-1", "name": "x"})
        assert answer.status_code == 403, (path, answer.status_code)
        assert "security token" in answer.text and answer.headers["content-security-policy"] == CSP
    # Nothing was done: no REST operation ran, so nothing was audited.
    assert await conn.fetchval("SELECT count(*) FROM auth.audit") == before
    assert await conn.fetchval("SELECT count(*) FROM auth.sessions") == 1  # not even the logout


async def test_a_post_must_say_its_size_and_stay_under_the_cap(browser, conn):
    from admin_api.console.web import MAX_POST

    assert (await browser.post("/ui/login", data={"username": "alice", "password": PASSWORD})).status_code == 303
    huge = await browser.post("/ui/import", headers={"Content-Length": str(MAX_POST + 1),
                                                     "Content-Type": "multipart/form-data; boundary=x"},
                              content=b"--x--\r\n")
    assert huge.status_code == 413
    login_flood = await browser.post("/ui/login", content=b"username=alice&password=" + b"x" * 20_000,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert login_flood.status_code == 413
