"""Boot configuration in a real browser, against a running boot path: the list by scope, edits with inline
validation, the live script preview following an edit, a stale edit's conflict view, and a viewer's limits."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.helpers.api import NODE, create

MAC = "aa:bb:cc:00:00:01"
KERNEL = "http://images.example/vmlinuz-1"


@pytest.fixture
def console_server(admin_server, boot_server):
    """The admin API asking this boot path for its previews."""
    return admin_server(CHAMICORE_BOOT_URL=boot_server().url)


async def seed(rest) -> str:
    await create(rest, "/hsm/v2/State/Components", {**NODE, "spec": {
        **NODE["spec"], "networkInterfaces": [{"macAddr": MAC}]}})
    await create(rest, "/boot/v1/bootparams", {"spec": {"kernel": "http://images.example/site-default"}})
    entry = await create(rest, "/boot/v1/bootparams", {"spec": {
        "componentId": "node-1", "kernel": KERNEL, "initrd": "http://images.example/initrd", "cmdline": "quiet"}})
    return entry["metadata"]["id"]


async def test_boot_configuration_pages(login, rest, shot):
    """One set of servers for all (starting them is most of the time): each part on the data the last left."""
    entry_id = await seed(rest)
    await edit_with_a_live_preview_and_conflicts(login, rest, shot, entry_id)
    await create_filter_and_delete(login, rest, shot)
    await what_a_viewer_may_do(login, rest, shot, entry_id, "http://images.example/mine")


async def edit_with_a_live_preview_and_conflicts(login, rest, shot, entry_id):
    watcher = await login("alice", f"/ui/boot?node={MAC}")
    rows = watcher.locator("table.scoped-entries tbody tr")
    await expect(rows).to_have_count(2)
    await expect(watcher.locator("pre.boot-script")).to_contain_text(f"kernel {KERNEL}")
    # Which entries apply to the node, and the one the boot path serves it.
    await expect(watcher.locator("table.effective tbody tr")).to_have_count(2)
    await expect(watcher.locator("table.effective tr.scope-won")).to_contain_text(entry_id)
    await shot(watcher, "list")

    # An edit in another tab: the API's refusal next to the field, the input kept; then a good one.
    page = await watcher.context.new_page()
    await page.goto(f"/ui/boot/entries/{entry_id}")
    await page.fill("input[name=kernel]", "ftp://images.example/vmlinuz-2")
    await page.click("button:text('Save')")
    error = page.locator("input[name=kernel] + .field-error")
    await expect(error).to_contain_text("expected an http, https, tftp URL")
    assert await page.input_value("input[name=kernel]") == "ftp://images.example/vmlinuz-2"
    await shot(page, "edit-inline-error")
    await page.fill("input[name=kernel]", "http://images.example/vmlinuz-2")
    await page.click("button:text('Save')")
    await expect(page.locator(".flash")).to_contain_text(f"Saved boot parameters {entry_id}")
    # The watching tab's preview follows the change feed: the boot path's script, with the new kernel.
    await expect(watcher.locator("pre.boot-script")).to_contain_text("kernel http://images.example/vmlinuz-2",
                                                                      timeout=10_000)
    await expect(page.locator("pre.boot-script")).to_contain_text("kernel http://images.example/vmlinuz-2",
                                                                   timeout=10_000)
    await shot(watcher, "preview-followed")
    await shot(page, "edit-saved-preview")

    # A stale edit: someone changes the entry after the form was loaded.
    await page.reload()
    await page.fill("input[name=kernel]", "http://images.example/mine")
    changed = await rest.patch(f"/boot/v1/bootparams/{entry_id}", json={"spec": {"kernel": "http://images.example/theirs"}},
                               headers={"Content-Type": "application/merge-patch+json"})
    assert changed.status_code == 200, changed.text
    await page.click("button:text('Save')")
    await expect(page.locator("p.warning")).to_contain_text("Someone else changed this entry")
    await expect(page.locator(".theirs dd.changed code")).to_have_text("http://images.example/theirs")
    assert await page.input_value(".yours input[name=kernel]") == "http://images.example/mine"
    await shot(page, "conflict")
    assert (await rest.get(f"/boot/v1/bootparams/{entry_id}")).json()["spec"]["kernel"] == "http://images.example/theirs"
    await page.click("button:text('Overwrite with mine')")
    await expect(page.locator(".flash")).to_contain_text("Saved")
    assert (await rest.get(f"/boot/v1/bootparams/{entry_id}")).json()["spec"]["kernel"] == "http://images.example/mine"

    # Again stale, and this time theirs is kept: nothing of mine is written.
    await rest.patch(f"/boot/v1/bootparams/{entry_id}", json={"spec": {"cmdline": "theirs=1"}},
                     headers={"Content-Type": "application/merge-patch+json"})
    await page.fill("input[name=kernel]", "http://images.example/dropped")
    await page.click("button:text('Save')")
    await expect(page.locator("p.warning")).to_contain_text("Someone else changed this entry")
    await page.get_by_role("link", name="Keep theirs").click()
    await expect(page.locator("p.warning")).to_have_count(0)
    assert await page.input_value("input[name=kernel]") == "http://images.example/mine"
    assert await page.input_value("textarea[name=cmdline]") == "theirs=1"


async def create_filter_and_delete(login, rest, shot):
    page = await login("alice", "/ui/boot/new")
    await page.select_option("select[name=scope]", "nid")
    await page.fill("input[name=scope_value]", "seven")
    await page.fill("input[name=kernel]", "http://images.example/nid7")
    await page.click("button:text('Create')")
    await expect(page.locator("input[name=scope_value] + .field-error")).to_contain_text("whole number")
    await page.fill("input[name=scope_value]", "7")
    await page.click("button:text('Create')")
    await expect(page.locator(".flash")).to_contain_text("Created boot parameters")
    created = (await rest.get("/boot/v1/bootparams", params={"nid": "7"})).json()["items"]
    assert [item["spec"]["kernel"] for item in created] == ["http://images.example/nid7"]
    # The same scope twice: the API's conflict, said in the form.
    await page.goto("/ui/boot/new")
    await page.select_option("select[name=scope]", "")
    await page.fill("input[name=kernel]", "http://images.example/another-default")
    await page.click("button:text('Create')")
    await expect(page.locator("p.error")).to_contain_text("already holds the entry for the site default")

    await page.goto("/ui/boot?scope=nid&value=7")
    await expect(page.locator("table.scoped-entries tbody tr")).to_have_count(1)
    await shot(page, "filtered")
    await page.click("table.scoped-entries a.mono")
    page.on("dialog", lambda dialog: dialog.accept())
    await page.click("button:text('Delete')")
    await expect(page.locator(".flash")).to_contain_text("Deleted boot parameters")
    assert (await rest.get("/boot/v1/bootparams", params={"nid": "7"})).json()["items"] == []



async def what_a_viewer_may_do(login, rest, shot, entry_id, kernel):
    """The same pages without a way to change anything, and the server refusing a forged post."""
    page = await login("victor", "/ui/boot")
    await expect(page.locator("table.scoped-entries tbody tr")).to_have_count(2)
    assert await page.locator("text=New entry").count() == 0
    await page.goto(f"/ui/boot/entries/{entry_id}?node=node-1")
    await expect(page.locator("dl.props")).to_contain_text(kernel)
    await expect(page.locator("pre.boot-script")).to_contain_text(kernel)
    for hidden in ("form.entry-form", "button:text('Delete')", "button:text('Save')"):
        assert await page.locator(hidden).count() == 0, hidden
    await shot(page, "viewer-entry")
    etag = (await rest.get(f"/boot/v1/bootparams/{entry_id}")).headers["etag"]
    # The session's own token, posted as a form would: refused on the scope, not the token.
    for path, data in ((f"/ui/boot/entries/{entry_id}", {"scope": "", "kernel": "http://evil/k", "etag": etag}),
                       (f"/ui/boot/entries/{entry_id}/delete", {}), ("/ui/boot/new", {"kernel": "http://evil/k"})):
        status = await page.evaluate("([path, data]) => window.chamicore.post(path, data).then(r => r.status)",
                                     [path, data])
        assert status == 403, path
    assert (await rest.get(f"/boot/v1/bootparams/{entry_id}")).json()["spec"]["kernel"] == kernel
    assert (await rest.get("/boot/v1/bootparams")).json()["metadata"]["total"] == 2
