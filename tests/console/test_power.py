"""Power pages in a real browser: a transition started on /ui/power, run by the real power engine against
sushy-tools' Redfish emulator, followed live on its page (no reload); the confirmation a destructive
operation needs; a viewer sees no button and a forged POST is refused."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from tests.admin.test_power import SYSTEMS, engine, inventory
from tests.helpers.api import create
from tests.helpers.redfish import RedfishEmulator
from tests.helpers.tasks import running

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture
def emulator():
    server = RedfishEmulator(SYSTEMS).start()
    yield server
    server.close()


async def test_an_operator_starts_on_and_watches_it_finish_live(login, rest, dsn, emulator, shot):
    await inventory(rest, emulator)
    page = await login("oscar", "/ui/power")
    await shot(page, "power")
    await page.click("button:has-text('Start')")  # no node, no group: the REST rule, shown by its field
    await expect(page.locator("input[name=nodes] + .field-error")).to_have_text("name at least one node or group")

    # ForceOff takes power away: unconfirmed, the page shows the plan and starts nothing.
    await page.select_option("select[name=operation]", "ForceOff")
    await page.fill("input[name=nodes]", "node-3")
    async with page.expect_response(lambda r: r.request.method == "POST") as answer:
        await page.click("button:has-text('Start')")
    assert (await answer.value).status == 428
    warning = page.locator(".warning")
    await expect(warning).to_contain_text("Nothing was started")
    await expect(warning.locator("td.mono").first).to_have_text("node-3")
    await expect(page.locator("input[name=nodes]")).to_have_value("node-3")  # what was typed stays
    await shot(page, "power-confirm")
    assert (await rest.get("/power/v1/transitions")).json()["metadata"]["total"] == 0

    await page.select_option("select[name=operation]", "On")
    await page.fill("input[name=nodes]", "node-1")
    await page.click("button:has-text('Start')")  # no engine yet: the task waits
    await page.wait_for_url(re.compile(rf".*/ui/power/{UUID}$"))
    await expect(page.locator(".flash")).to_have_text("On started on 1 node.")
    await page.evaluate("window.notReloaded = true")
    task = page.locator("#tasks tr[data-node='node-1'] .task-state")
    await expect(task).to_have_text("pending")
    await expect(page.locator("#transition-state")).to_have_text("new")
    await shot(page, "transition-new")
    async with running(engine(dsn)):
        # The engine does it; the SSE live layer brings each change to the page.
        await expect(task).to_have_text("succeeded", timeout=60_000)
        await expect(page.locator("#transition-state")).to_have_text("completed", timeout=30_000)
    assert await page.evaluate("window.notReloaded") is True
    assert await page.locator("#transition-progress").get_attribute("value") == "1"
    await expect(page.locator("#tasks tr[data-node='node-1']")).to_contain_text("reached On")
    await expect(page.locator("button:has-text('Abort')")).to_have_count(0)  # nothing left to abort
    await shot(page, "transition-done")
    assert emulator.power_state(SYSTEMS[0]["uuid"]) == "On"
    assert emulator.power_state(SYSTEMS[2]["uuid"]) == "On"  # the unconfirmed ForceOff did nothing

    await page.click("text=Power")
    row = page.locator("#power-recent tbody tr").first
    await expect(row).to_contain_text("completed")
    await expect(row).to_contain_text("oscar")
    await shot(page, "power-recent")


async def test_a_viewer_sees_no_button_and_a_forged_post_is_refused_an_operator_aborts(login, rest, shot):
    await create(rest, "/hsm/v2/State/Components", {"metadata": {"id": "node-7"}, "spec": {"type": "Node"}})
    started = await create(rest, "/power/v1/transitions", {"operation": "On", "nodes": ["node-7"]})
    path = f"/ui/power/{started['id']}"  # no engine runs: it stays new

    viewer = await login("victor", "/ui/power")
    await expect(viewer.locator("#power-recent tbody tr")).to_have_count(1)
    await expect(viewer.locator("form[action='/ui/power']")).to_have_count(0)
    await shot(viewer, "power-viewer")
    await viewer.goto(path)
    await expect(viewer.locator("#transition-state")).to_have_text("new")
    await expect(viewer.locator("button:has-text('Abort')")).to_have_count(0)
    await shot(viewer, "transition-viewer")
    token = await viewer.evaluate("document.body.dataset.csrf")
    for url, fields in ((path + "/abort", {}), ("/ui/power", {"operation": "On", "nodes": "node-7"})):
        forged = await viewer.request.post(url, form={"csrf_token": token, **fields})
        assert forged.status == 403, url
        assert "write:power" in await forged.text()
    assert (await rest.get(f"/power/v1/transitions/{started['id']}")).json()["state"] == "new"
    assert (await rest.get("/power/v1/transitions")).json()["metadata"]["total"] == 1

    operator = await login("oscar", path)
    operator.on("dialog", lambda dialog: dialog.accept())
    await operator.click("button:has-text('Abort')")
    await expect(operator.locator(".flash")).to_contain_text("Abort signalled")
    await expect(operator.locator("#transition-state")).to_have_text("abort-signaled")
    await shot(operator, "transition-aborted")
    assert (await rest.get(f"/power/v1/transitions/{started['id']}")).json()["state"] == "abort-signaled"
