"""Discovery pages in a real browser: a target made with the form (its credential chosen by id, the secret
never on the page), "scan now", and the real scanner's per-host progress arriving live against sushy-tools'
Redfish emulator; a viewer sees no button and a forged POST is refused."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from sync.discovery.scanner import DiscoveryScanner
from tests.admin.test_discovery import SYSTEMS
from tests.helpers.api import create, credential
from tests.helpers.keys import box
from tests.helpers.redfish import PASSWORD, RedfishEmulator
from tests.helpers.tasks import running


@pytest.fixture
def emulator():
    server = RedfishEmulator(SYSTEMS).start()
    yield server
    server.close()


async def test_a_target_made_in_the_page_is_scanned_and_its_hosts_arrive_live(login, rest, dsn, emulator, shot):
    await credential(rest, credential_id="bmc-cred")
    page = await login("alice", "/ui/discovery")
    await expect(page.locator("select[name=credential] option[value='bmc-cred']")).to_have_text(
        re.compile(r"^bmc-cred — admin"))
    await page.fill("input[name=id]", "rack1")
    await page.fill("input[name=address]", "10.0.0.9-10.0.0.1")  # backwards: the REST rule says so, inline
    await page.select_option("select[name=credential]", "bmc-cred")
    async with page.expect_response(lambda r: r.request.method == "POST") as answer:
        await page.click("button:has-text('Create target')")
    assert (await answer.value).status == 422
    await expect(page.locator("input[name=address] + .field-error")).to_contain_text("not a range from low to high")
    await expect(page.locator("p.error")).to_have_count(0)  # said once, by its field
    await expect(page.locator("select[name=credential]")).to_have_value("bmc-cred")  # what was chosen stays
    await shot(page, "discovery-invalid")

    await page.fill("input[name=address]", emulator.url)
    await page.click("button:has-text('Create target')")
    await expect(page.locator(".flash")).to_have_text("Target rack1 created.")
    row = page.locator("#targets tr[data-target='rack1']")
    await expect(row).to_contain_text("bmc-cred")
    assert PASSWORD not in await page.content()  # the secret is never fetched, so never on the page
    await shot(page, "discovery")

    await row.locator("button:has-text('Scan now')").click()  # no scanner yet: the host waits
    await page.wait_for_url(re.compile(r".*/ui/discovery/scans/[^/]+$"))
    host = page.locator(f"#hosts tr[data-host='{emulator.url}']")
    await expect(host.locator(".host-state")).to_have_text("pending")
    await expect(page.locator("#scan-state")).to_have_text("pending")
    await page.evaluate("window.notReloaded = true")
    await shot(page, "scan-pending")
    async with running(DiscoveryScanner(dsn, box())):
        await expect(host.locator(".host-state")).to_have_text("ok", timeout=60_000)
        await expect(page.locator("#scan-state")).to_have_text("completed", timeout=30_000)
    assert await page.evaluate("window.notReloaded") is True
    await expect(host.locator(".discovery-found a")).to_have_count(1 + len(SYSTEMS))  # the BMC and its nodes
    assert await page.locator("#scan-progress").get_attribute("value") == "1"
    await expect(page.locator("button:has-text('Cancel scan')")).to_have_count(0)
    await shot(page, "scan-done")
    nodes = (await rest.get("/hsm/v2/State/Components", params={"type": "Node"})).json()["items"]
    assert len(nodes) == len(SYSTEMS)

    await page.click("text=Discovery")
    await expect(page.locator("#discovery-scans tbody tr").first).to_contain_text("completed")
    await shot(page, "discovery-recent")


async def test_a_viewer_sees_no_button_and_a_forged_post_is_refused(login, rest, shot):
    await create(rest, "/discovery/v1/targets", {"metadata": {"id": "rack2"}, "spec": {
        "driver": "redfish", "address": "10.9.0.1-10.9.0.3"}})
    started = await create(rest, "/discovery/v1/scans", {"targets": ["rack2"]})  # no scanner: it stays pending
    scan_path = f"/ui/discovery/scans/{started['metadata']['id']}"

    viewer = await login("victor", "/ui/discovery")
    await expect(viewer.locator("#targets tr[data-target='rack2']")).to_be_visible()
    await expect(viewer.locator("button")).to_have_text(["Log out"])  # no scan, delete or create button
    await expect(viewer.locator("#new-target")).to_have_count(0)
    await shot(viewer, "discovery-viewer")
    await viewer.goto(scan_path)
    await expect(viewer.locator("#hosts .host-state")).to_have_text(["pending"] * 3)
    await expect(viewer.locator("button:has-text('Cancel scan')")).to_have_count(0)
    await shot(viewer, "scan-viewer")
    token = await viewer.evaluate("document.body.dataset.csrf")
    for url, fields in ((scan_path + "/cancel", {}), ("/ui/discovery/scans", {"target": "rack2"}),
                        ("/ui/discovery/targets", {"driver": "redfish", "address": "10.9.9.9"}),
                        ("/ui/discovery/targets/rack2/enabled", {"enabled": "no"}),
                        ("/ui/discovery/targets/rack2/delete", {})):
        forged = await viewer.request.post(url, form={"csrf_token": token, **fields})
        assert forged.status == 403, url
        assert "write:discovery" in await forged.text()
    assert (await rest.get("/discovery/v1/scans")).json()["metadata"]["total"] == 1
    assert (await rest.get(f"/discovery/v1/scans/{started['metadata']['id']}")).json()["status"]["state"] == "pending"
    assert [t["spec"]["enabled"] for t in (await rest.get("/discovery/v1/targets")).json()["items"]] == [True]

    operator = await login("oscar", scan_path)
    operator.on("dialog", lambda dialog: dialog.accept())
    await operator.click("button:has-text('Cancel scan')")
    await expect(operator.locator(".flash")).to_have_text("Scan cancelled.")
    await expect(operator.locator("#scan-state")).to_have_text("cancelled")
    await expect(operator.locator("#hosts .host-state")).to_have_text(["cancelled"] * 3)
    await shot(operator, "scan-cancelled")

    await operator.click("text=Discovery")
    await operator.locator("#targets tr[data-target='rack2'] button:has-text('Disable')").click()
    await expect(operator.locator(".flash")).to_have_text("Target rack2 disabled.")
    await expect(operator.locator("#targets tr[data-target='rack2'] button:has-text('Enable')")).to_be_visible()
    assert (await rest.get("/discovery/v1/targets/rack2")).json()["spec"]["enabled"] is False
    await shot(operator, "discovery-operator")
