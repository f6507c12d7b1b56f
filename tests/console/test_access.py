"""Access pages in a real browser: users, service accounts (secret shown once), roles, policies, device
credentials (secret never shown), revocation; and a viewer who sees none of it and is refused anyway."""

from __future__ import annotations

import re

import httpx

from tests.console.conftest import log_in


async def test_an_admin_manages_access_in_the_browser(login, new_context, rest, shot, console_server):
    page = await login("alice", next_path="/ui/access")
    asked: list[str] = []

    async def confirm(dialog) -> None:  # what is destroyed is asked about first (data-confirm)
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", confirm)
    assert await page.locator("nav.tabs a.current").inner_text() == "Overview"
    await shot(page, "overview")

    # A user, made in the page: it is there, with its role, and no session open yet.
    await page.click("nav.tabs >> text=Users")
    await page.fill("input[name=username]", "carol")
    await page.fill("input[name=displayName]", "Carol Danvers")
    await page.fill("input[name=password]", "a long enough password")
    await page.check("input[name=roles][value=viewer]")
    await page.click("text=Create user")
    await page.wait_for_url(re.compile(r".*/ui/access/users/carol$"))
    assert "User carol created." in await page.locator(".flash").inner_text()
    carol = (await rest.get("/auth/v1/users/carol")).json()
    assert carol["roles"] == ["viewer"] and carol["displayName"] == "Carol Danvers" and carol["enabled"]
    assert await page.locator("nav.tabs a.current").inner_text() == "Users"
    await shot(page, "user")
    # A refused form comes back with the problem and what was typed (the password excepted), nothing made.
    await page.goto("/ui/access/users")
    await page.fill("input[name=username]", "dave")
    await page.fill("input[name=password]", "too short")
    await page.evaluate("document.querySelector('input[name=password]').removeAttribute('minlength')")
    await page.click("text=Create user")
    assert "password" in (await page.locator("p.error").inner_text()).lower()
    assert await page.input_value("input[name=username]") == "dave"
    assert await page.input_value("input[name=password]") == ""
    assert (await rest.get("/auth/v1/users/dave")).status_code == 404
    await shot(page, "users-refused")

    # Carol logs in: her open session is counted; disabling her in her page ends it.
    carols = await log_in(await new_context(), "carol", password="a long enough password", next_path="/ui/account")
    await page.goto("/ui/access/users")
    assert re.search(r"carol\s+Carol Danvers\s+viewer\s+enabled\s+1\s",
                     await page.locator("tr", has_text="carol").inner_text())
    await page.goto("/ui/access/users/carol")
    await page.uncheck("input[name=enabled]")
    await page.click("button:text('Save')")
    await page.wait_for_selector(".flash")
    assert (await rest.get("/auth/v1/users/carol")).json()["enabled"] is False
    assert "Open sessions\n0" in await page.locator("dl.props").inner_text()
    await carols.goto("/ui/account")
    assert "/ui/login" in carols.url

    # A service account: its secret is in the answer to the POST, once, never cached, and works.
    await page.goto("/ui/access/service-accounts")
    await page.fill("input[name=clientId]", "ci-runner")
    await page.fill("input[name=description]", "CI pipelines")
    await page.check("input[name=roles][value=operator]")
    async with page.expect_response(re.compile(r".*/ui/access/service-accounts$")) as created:
        await page.click("text=Create service account")
    answer = await created.value
    assert answer.status == 201 and answer.headers["cache-control"] == "no-store"
    secret = await page.locator("#client-secret").inner_text()
    assert len(secret) >= 40
    await shot(page, "secret-once")
    async with httpx.AsyncClient(base_url=console_server.url) as outside:
        token = await outside.post("/auth/v1/token", data={"grant_type": "client_credentials",
                                                           "client_id": "ci-runner", "client_secret": secret})
    assert token.status_code == 200, token.text
    # Coming back to the accounts shows it, never the secret again.
    await page.click("text=Done")
    await page.wait_for_url(re.compile(r".*/ui/access/service-accounts$"))
    assert "ci-runner" in await page.locator("table").inner_text()
    assert secret not in await page.content()
    await shot(page, "service-accounts")
    # A new secret: shown once too, and the old one no longer gets a token.
    await page.locator("tr", has_text="ci-runner").locator("text=New secret").click()
    rotated = await page.locator("#client-secret").inner_text()
    assert asked[-1].startswith("Replace the secret of ci-runner?")
    assert rotated != secret
    async with httpx.AsyncClient(base_url=console_server.url) as outside:
        old = await outside.post("/auth/v1/token", data={"grant_type": "client_credentials", "client_id": "ci-runner",
                                                         "client_secret": secret})
    assert old.status_code in (400, 401)

    # Its roles, changed in its own page.
    await page.goto("/ui/access/service-accounts")
    await page.click("a:text('ci-runner')")
    await page.uncheck("input[name=roles][value=operator]")
    await page.check("input[name=roles][value=viewer]")
    await page.click("button:text('Save')")
    await page.wait_for_selector(".flash")
    assert (await rest.get("/auth/v1/service-accounts/ci-runner")).json()["roles"] == ["viewer"]
    await shot(page, "service-account")

    # A custom role from the known scopes, edited in place.
    await page.goto("/ui/access/roles")
    await page.fill("input[name=name]", "auditor")
    await page.fill("input[name=description]", "reads the audit log")
    await page.check("input[name=scopes][value='read:audit']")
    await page.check("input[name=scopes][value='read:smd']")
    await page.click("text=Save role")
    await page.wait_for_selector(".flash")
    roles = {r["name"]: r for r in (await rest.get("/auth/v1/roles")).json()}
    assert sorted(roles["auditor"]["scopes"]) == ["read:audit", "read:smd"]
    await page.click("a[href='/ui/access/roles?edit=auditor']")
    assert await page.is_checked("input[name=scopes][value='read:audit']")
    await shot(page, "roles")

    # A policy for an outside identity, then deleted.
    await page.goto("/ui/access/policies")
    await page.fill("input[name=issuer]", "https://idp.example.org")
    await page.fill("input[name=subject]", "jane@example.org")
    await page.check("input[name=roles][value=auditor]")
    await page.click("text=Create policy")
    await page.wait_for_selector(".flash")
    [policy] = (await rest.get("/auth/v1/policies")).json()
    assert policy["subject"] == "jane@example.org" and policy["roles"] == ["auditor"]
    await shot(page, "policies")
    await page.locator("tr", has_text="jane@example.org").locator("text=Delete").click()
    await page.wait_for_selector(".flash")
    assert (await rest.get("/auth/v1/policies")).json() == []

    # A device credential: the secret goes in through a password field and is never on a page.
    await page.goto("/ui/access/credentials")
    await page.fill("input[name=id]", "bmc-rack1")
    await page.fill("input[name=username]", "root")
    await page.fill("input[name=secret]", "s3cret-bmc-password")
    await page.fill("input[name=tags]", "bmc, rack1")
    await page.click("text=Store credential")
    await page.wait_for_selector(".flash")
    assert "bmc-rack1" in await page.locator("table").inner_text()
    assert "s3cret-bmc-password" not in await page.content()
    stored = (await rest.get("/auth/v1/credentials/bmc-rack1/secret")).json()
    assert stored["secret"] == "s3cret-bmc-password"
    await shot(page, "credentials")

    # Revoking every token of a subject: the token ci-runner holds is refused from now on.
    async with httpx.AsyncClient(base_url=console_server.url) as outside:
        fresh = (await outside.post("/auth/v1/token", data={"grant_type": "client_credentials",
                                                            "client_id": "ci-runner",
                                                            "client_secret": rotated})).json()["access_token"]
        await page.goto("/ui/access")
        await page.fill("input[name=target]", "ci-runner")
        await page.click("button:text('Revoke')")
        await page.wait_for_selector(".flash")
        assert "ci-runner" in await page.locator(".flash").inner_text()
        refused = await outside.get("/hsm/v2/State/Components", headers={"Authorization": f"Bearer {fresh}"})
        assert refused.status_code == 401
    await shot(page, "revoked")

    # Every one of these changes is in the audit under alice's name.
    audit = (await rest.get("/auth/v1/audit", params={"actor": "alice", "limit": 100})).json()
    actions = {entry["action"] for entry in audit}
    assert {"POST /auth/v1/users", "PATCH /auth/v1/users/{id}", "POST /auth/v1/service-accounts",
            "POST /auth/v1/service-accounts/{id}/secret", "PUT /auth/v1/roles/{name}", "POST /auth/v1/policies",
            "DELETE /auth/v1/policies/{id}", "POST /auth/v1/credentials", "POST /auth/v1/token/revoke"} <= actions
    # The refused user creation is there too, as a failure.
    assert any(e["action"] == "POST /auth/v1/users" and e["status"] == 422 for e in audit)
    # And the audit page shows what ci-runner's secrets were used for, with the entries' details.
    await page.goto("/ui/audit?actor=ci-runner")
    issued = page.locator("tr", has_text="token.issued")
    assert await issued.count() == 2 and "scope" in await issued.first.locator("small").inner_text()
    await shot(page, "audit-of-ci-runner")


async def test_a_viewer_has_no_access_pages_and_a_forged_post_is_refused(login, rest, shot):
    page = await login("victor")
    nav = await page.locator("nav.sidebar").inner_text()
    assert "Access" not in nav and "Audit" not in nav and "Import" not in nav
    answer = await page.goto("/ui/access/users")
    assert answer is not None and answer.status == 403
    await shot(page, "refused")
    # Device credentials are listed to a reader of the inventory, without a single button.
    await rest.post("/auth/v1/credentials", json={"id": "bmc-1", "username": "root", "secret": "hidden-one"})
    answer = await page.goto("/ui/access/credentials")
    assert answer is not None and answer.status == 200
    assert "bmc-1" in await page.locator("table").inner_text()
    assert await page.locator("form[method=post] button:not(.link)").count() == 0
    assert "hidden-one" not in await page.content()
    await shot(page, "credentials-read-only")
    # The viewer's own session and CSRF token, posting what the page never offered: refused, nothing made.
    statuses = await page.evaluate("""async () => {
        const token = document.body.dataset.csrf;
        const post = (url, body) => fetch(url, {method: "POST", headers: {"X-CSRF-Token": token},
                                                body: new URLSearchParams(body)}).then(r => r.status);
        return [await post("/ui/access/users", {username: "mallory", password: "a long enough password",
                                                roles: "admin"}),
                await post("/ui/access/credentials/bmc-1/delete", {}),
                await post("/ui/access/revoke", {what: "subject", target: "seeder"})];
    }""")
    assert statuses == [403, 403, 403]
    assert (await rest.get("/auth/v1/users/mallory")).status_code == 404
    assert (await rest.get("/auth/v1/credentials/bmc-1")).status_code == 200
