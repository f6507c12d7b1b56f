"""Logging in and out in a real browser: the session cookie the page cannot read, and logout ending it."""

from __future__ import annotations

import re

from tests.console.conftest import log_in


async def test_log_in_see_your_account_and_log_out(new_context, console_users, shot):
    context = await new_context()
    page = await log_in(context, "victor", next_path="/ui/account")
    assert await page.locator("a.who").inner_text() == "Victor (viewer)"
    assert "read:smd" in await page.locator("dl.props").inner_text()
    assert "write:smd" not in await page.locator("dl.props").inner_text()
    assert await page.evaluate("document.cookie") == ""  # HttpOnly: no script on the page can read it
    cookies = await context.cookies()
    session = next(c for c in cookies if c["name"] == "chamicore_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    await shot(page, "account")
    await page.click("text=Log out")
    await page.wait_for_url(re.compile(r".*/ui/login$"))
    assert "You are logged out." in await page.locator(".flash").inner_text()
    await shot(page, "logged-out")
    # The cookie the browser had is worthless now, even replayed.
    replay = await new_context()
    await replay.add_cookies([{**session, "expires": -1}])
    again = await replay.new_page()
    await again.goto("/ui/account")
    assert "/ui/login" in again.url


async def test_a_wrong_password_is_refused_in_the_page(new_context, console_users, shot):
    page = await (await new_context()).new_page()
    await page.goto("/ui/login")
    await page.fill("input[name=username]", "alice")
    await page.fill("input[name=password]", "not the password")
    await page.click("button[type=submit]")
    await page.wait_for_selector("p.error")
    assert "Wrong username or password" in await page.locator("p.error").inner_text()
    await shot(page, "refused")
