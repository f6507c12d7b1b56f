"""Cloud-init payloads in a real browser, against a running boot path: inline validation, the node's user-data
as the boot path serves it following an edit live (MIME multipart for a node in two groups), a stale edit's
conflict view, and a viewer who can read but not write."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.helpers.api import NODE, create

MAC = "aa:bb:cc:00:00:01"


@pytest.fixture
def console_server(admin_server, boot_server):
    """The admin API asking this boot path for its previews."""
    return admin_server(CHAMICORE_BOOT_URL=boot_server().url)


async def test_edit_previews_live_conflicts_and_a_viewers_limits(login, rest, shot):
    await create(rest, "/hsm/v2/State/Components", {**NODE, "spec": {
        **NODE["spec"], "networkInterfaces": [{"macAddr": MAC}]}})
    for group in ("gpu", "ib"):
        await create(rest, "/hsm/v2/groups", {"spec": {"name": group, "members": ["node-1"]}})
    entry = await create(rest, "/cloud-init/payloads", {"spec": {
        "componentId": "node-1", "userData": "#cloud-config\nhostname: one\n", "metaData": {"rack": "R1"}}})
    entry_id = entry["metadata"]["id"]

    watcher = await login("alice", f"/ui/cloud-init?node={MAC}")  # a MAC: found through its interface
    await expect(watcher.locator("table.scoped-entries tbody tr")).to_have_count(1)
    await expect(watcher.locator("pre.cloud-init-user-data")).to_contain_text("hostname: one")
    await expect(watcher.locator("pre.cloud-init-meta-data")).to_contain_text("R1")
    await shot(watcher, "list")

    page = await watcher.context.new_page()
    await page.goto(f"/ui/cloud-init/entries/{entry_id}")
    await page.fill("textarea[name=userData]", "hostname: two")
    await page.click("button:text('Save')")
    await expect(page.locator("textarea[name=userData] + .field-error")).to_contain_text("cloud-init would ignore")
    assert await page.input_value("textarea[name=userData]") == "hostname: two"
    await page.fill("textarea[name=metaData]", "[1, 2]")
    await page.click("button:text('Save')")
    await expect(page.locator("textarea[name=metaData] + .field-error")).to_contain_text("JSON object")
    await shot(page, "edit-inline-error")
    await page.fill("textarea[name=userData]", "#cloud-config\nhostname: two\n")
    await page.fill("textarea[name=metaData]", '{"rack": "R2"}')
    await page.click("button:text('Save')")
    await expect(page.locator(".flash")).to_contain_text(f"Saved cloud-init payload {entry_id}")
    saved = (await rest.get(f"/cloud-init/payloads/{entry_id}")).json()["spec"]
    assert saved["userData"] == "#cloud-config\nhostname: two\n" and saved["metaData"] == {"rack": "R2"}
    await expect(watcher.locator("pre.cloud-init-user-data")).to_contain_text("hostname: two", timeout=10_000)

    # Two groups' user-data and no component-level one: the node gets them as MIME multipart.
    for group in ("gpu", "ib"):
        await create(rest, "/cloud-init/payloads", {"spec": {"group": group,
                                                              "userData": f"#cloud-config\npackages: [{group}-tools]\n"}})
    await page.fill("textarea[name=userData]", "")
    await page.click("button:text('Save')")
    await expect(page.locator(".flash")).to_contain_text("Saved")
    assert (await rest.get(f"/cloud-init/payloads/{entry_id}")).json()["spec"]["userData"] is None
    user_data = watcher.locator("pre.cloud-init-user-data")
    await expect(user_data).to_contain_text("multipart", timeout=10_000)
    await expect(user_data).to_contain_text("gpu-tools")
    await expect(user_data).to_contain_text("ib-tools")
    await expect(watcher.locator("table.effective tr.scope-won")).to_have_count(3)  # each group's, and our meta-data
    await shot(watcher, "preview-multipart")

    # A stale edit: both versions shown, then mine written over theirs.
    await page.reload()
    await page.fill("textarea[name=vendorData]", "#cloud-config\nmine: true\n")
    changed = await rest.patch(f"/cloud-init/payloads/{entry_id}", json={"spec": {"vendorData": "#!/bin/sh\ntrue\n"}},
                               headers={"Content-Type": "application/merge-patch+json"})
    assert changed.status_code == 200, changed.text
    await page.click("button:text('Save')")
    await expect(page.locator(".theirs dd.changed pre")).to_contain_text("#!/bin/sh")
    await shot(page, "conflict")
    await page.click("button:text('Overwrite with mine')")
    await expect(page.locator(".flash")).to_contain_text("Saved")
    assert (await rest.get(f"/cloud-init/payloads/{entry_id}")).json()["spec"]["vendorData"] == "#cloud-config\nmine: true\n"

    viewer = await login("victor", f"/ui/cloud-init/entries/{entry_id}")
    await expect(viewer.locator("dl.props")).to_contain_text("mine: true")
    for hidden in ("form.entry-form", "button:text('Delete')", "text=New entry"):
        assert await viewer.locator(hidden).count() == 0, hidden
    await shot(viewer, "viewer-entry")
    status = await viewer.evaluate("(path) => window.chamicore.post(path, {}).then(r => r.status)",
                                   f"/ui/cloud-init/entries/{entry_id}/delete")
    assert status == 403
    assert (await rest.get(f"/cloud-init/payloads/{entry_id}")).status_code == 200
