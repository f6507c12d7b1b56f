"""The audit page in a real browser: what alice does in the console is there under her name, the filters
narrow it, paging walks it, and a viewer has no audit page."""

from __future__ import annotations

import re


async def test_the_audit_shows_console_actions_under_the_users_name(login, rest, shot):
    page = await login("alice", next_path="/ui/access/policies")
    await page.fill("input[name=issuer]", "https://idp.example.org")
    await page.fill("input[name=subject]", "jane@example.org")
    await page.check("input[name=roles][value=viewer]")
    await page.click("text=Create policy")
    await page.wait_for_selector(".flash")
    for i in range(55):  # more than a page of someone else's changes
        assert (await rest.post("/auth/v1/credentials", json={"id": f"bmc-{i}", "username": "root",
                                                              "secret": "x"})).status_code == 201

    await page.goto("/ui/audit")
    rows = page.locator("table.audit tbody tr")
    assert await rows.count() == 50
    assert "seeder" in await rows.first.inner_text()
    await shot(page, "all")
    await page.click("text=Older")
    await page.wait_for_url(re.compile(r".*offset=50.*"))
    assert "alice" in await page.locator("table.audit").inner_text()
    assert await page.locator("text=Newer").count() == 1

    await page.goto("/ui/audit")
    await page.fill("input[name=actor]", "alice")
    await page.select_option("select[name=outcome]", "success")
    await page.click("button:text('Filter')")
    await page.wait_for_url(re.compile(r".*actor=alice.*"))
    texts = await page.locator("table.audit tbody tr").all_inner_texts()
    assert texts and all("\talice\t" in text for text in texts)
    assert any("POST /auth/v1/policies" in text and "201" in text for text in texts)
    assert await page.input_value("input[name=actor]") == "alice"  # the filter stays in its field
    await shot(page, "by-actor")
    # The actor's name in a row is itself a filter.
    await page.goto("/ui/audit?action=POST%20/auth/v1/credentials&outcome=success")
    assert await page.locator("table.audit tbody tr").count() == 50
    await page.locator("table.audit tbody tr").first.locator("a").click()
    await page.wait_for_url(re.compile(r".*actor=seeder$"))

    # One resource's history, by its id.
    assert (await rest.delete("/auth/v1/credentials/bmc-7")).status_code == 204
    await page.goto("/ui/audit")
    await page.fill("input[name=resource]", "bmc-7")
    await page.click("button:text('Filter')")
    await page.wait_for_url(re.compile(r".*resource=bmc-7.*"))
    assert await page.locator("table.audit tbody tr").count() == 1
    assert "DELETE /auth/v1/credentials/{id}" in await page.locator("table.audit tbody tr").inner_text()

    # A time that is no time: said in the page, not a server error.
    answer = await page.goto("/ui/audit?since=yesterday")
    assert answer is not None and answer.status == 400
    assert "RFC 3339" in await page.locator("p.error").inner_text()
    await shot(page, "bad-since")


async def test_a_viewer_has_no_audit_page(login):
    page = await login("victor")
    assert "Audit" not in await page.locator("nav.sidebar").inner_text()
    answer = await page.goto("/ui/audit?actor=alice")
    assert answer is not None and answer.status == 403
