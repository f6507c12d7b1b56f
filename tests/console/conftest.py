"""The web console in a real browser: Debian's chromium driven by Playwright, against a real admin server.

Screenshots of every page a test visits land in tests/console/artifacts/ (not committed): look at them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from core import db
from tests.helpers.tokens import token_for

CHROMIUM = os.environ.get("CHAMICORE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "correct horse battery staple"
# The users every console test has: one per built-in role.
USERS = {"alice": ["admin"], "oscar": ["operator"], "victor": ["viewer"]}


async def create_users(dsn: str, users: dict[str, list[str]] = USERS) -> None:
    from admin_api.auth.users import create_user

    conn = await db.connect(dsn)
    try:
        for username, roles in users.items():
            await create_user(conn, username, PASSWORD, roles, username.title())
    finally:
        await conn.close()


@pytest.fixture
def console_server(admin_server):
    """A running admin API (granian, its own process): the console is served by it."""
    return admin_server()


@pytest.fixture
async def console_users(console_server, dsn):
    await create_users(dsn)
    return USERS


@pytest.fixture
async def rest(console_server, dsn):
    """An admin's REST client of the same server, to seed data and check what the console did."""
    token = await token_for(console_server.url, dsn, "seeder", ["admin"])
    async with httpx.AsyncClient(base_url=console_server.url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=30) as client:
        yield client


@pytest.fixture
async def browser():
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def new_context(browser: Browser, console_server):
    contexts: list[BrowserContext] = []

    async def make() -> BrowserContext:
        context = await browser.new_context(base_url=console_server.url, viewport={"width": 1400, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        await context.close()


async def log_in(context: BrowserContext, username: str, password: str = PASSWORD, next_path: str = "/ui/") -> Page:
    page = await context.new_page()
    await page.goto(next_path)
    await page.wait_for_url(re.compile(r".*/ui/login.*"))
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r".*/ui/(?!login).*"))
    return page


@pytest.fixture
def login(new_context, console_users):
    """`await login("alice")`: a page logged in as that user, on the dashboard (or `next_path`)."""
    async def open_as(username: str, next_path: str = "/ui/") -> Page:
        return await log_in(await new_context(), username, next_path=next_path)

    return open_as


@pytest.fixture
def shot(request):
    """`await shot(page, "inventory")`: a full-page screenshot named after the test, kept as an artifact."""
    ARTIFACTS.mkdir(exist_ok=True)

    async def take(page: Page, name: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    return take
