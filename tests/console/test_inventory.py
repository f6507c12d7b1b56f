"""Inventory and the node page in a real browser: filters, sorting, paging and bulk actions over the REST
operations; a node's effective boot parameters and the boot path's own script (previews, not boots); a viewer
who sees no action and whose hand-made posts are refused by the server."""

from __future__ import annotations

import asyncio
import re
import time

import asyncpg
import pytest

NODES = "/hsm/v2/State/Components"
KERNEL = "http://images.example/{}/vmlinuz"


@pytest.fixture
def boot(boot_server):
    return boot_server(CHAMICORE_TELEMETRY_NODE_INTERVAL_S="0")


@pytest.fixture
def console_server(admin_server, boot):
    """The admin API asking a running boot path for its previews."""
    return admin_server(CHAMICORE_BOOT_URL=boot.url)


async def ok(answer, status=(200, 201, 204)):
    assert answer.status_code in status, answer.text
    return answer.json() if answer.content else None


async def seed(rest) -> None:
    """55 compute nodes in two racks, a storage node with two interfaces, a switch; a group."""
    async def node(index: int) -> None:
        await ok(await rest.post(NODES, json={"metadata": {"id": f"x1000c0s{index}b0n0"}, "spec": {
            "type": "Node", "state": "Ready" if index % 5 else "Off", "role": "Compute", "nid": index + 1,
            "location": {"rack": "R1" if index < 30 else "R2", "unit": index},
            "networkInterfaces": [{"macAddr": f"02:00:00:00:00:{index:02x}",
                                   "ipAddrs": [{"ipAddress": f"10.1.0.{index + 1}"}]}]}}))
    for start in range(0, 55, 11):
        await asyncio.gather(*(node(i) for i in range(start, min(start + 11, 55))))
    await ok(await rest.post(NODES, json={"metadata": {"id": "storage-1"}, "spec": {
        "type": "Node", "state": "Ready", "role": "Storage", "nid": 900, "location": {"rack": "R9", "unit": 1},
        "networkInterfaces": [{"macAddr": "aa:bb:cc:00:00:01", "ipAddrs": [{"ipAddress": "10.9.0.1"}]},
                              {"macAddr": "aa:bb:cc:00:00:02", "ipAddrs": [{"ipAddress": "10.9.0.2"}]}]}}))
    await ok(await rest.post(NODES, json={"metadata": {"id": "sw-1"}, "spec": {"type": "Switch", "state": "On"}}))
    await ok(await rest.post("/hsm/v2/groups", json={"spec": {"name": "storage", "members": ["storage-1"]}}))


def ids_on(page):
    return page.locator("table.inventory tbody td:nth-child(2) a").all_inner_texts()


async def test_filter_sort_page_and_bulk_actions(login, rest, shot):
    await seed(rest)
    page = await login("alice", next_path="/ui/inventory")
    assert "57 components" in await page.locator("h1").inner_text()
    assert "1–50 of 57" in await page.locator(".pager").inner_text()
    await shot(page, "inventory")
    await page.click("text=Next →")
    assert "51–57 of 57" in await page.locator(".pager").inner_text()

    # Filters are a GET form: state and rack together, then the text search over MACs and IPs.
    await page.goto("/ui/inventory")
    await page.select_option("select[name=state]", "Off")
    await page.fill("input[name=rack]", "R2")
    await page.click("button:text('Filter')")
    await page.wait_for_url(re.compile(r".*state=Off.*"))
    assert await ids_on(page) == ["x1000c0s30b0n0", "x1000c0s35b0n0", "x1000c0s40b0n0", "x1000c0s45b0n0",
                                  "x1000c0s50b0n0"]
    assert "5 components match" in await page.locator("h1").inner_text()
    # Sorting by a header keeps the filters; a second click reverses.
    await page.click("th a:text('NID')")
    await page.wait_for_url(re.compile(r".*sort=nid.*"))
    await page.click("th a:text('NID')")
    await page.wait_for_url(re.compile(r".*sort=-nid.*"))
    assert (await ids_on(page))[0] == "x1000c0s50b0n0" and "rack=R2" in page.url
    await page.goto("/ui/inventory?q=AA-BB-CC-00-00-02")
    assert await ids_on(page) == ["storage-1"]
    await page.goto("/ui/inventory?q=10.1.0.7")
    assert await ids_on(page) == ["x1000c0s6b0n0"]
    await page.goto("/ui/inventory?group=storage")
    assert await ids_on(page) == ["storage-1"]
    await page.goto("/ui/inventory?role=Compute&rack=R1&q=x1000c0s1")
    await shot(page, "inventory-filtered")
    assert len(await ids_on(page)) == 11  # s1 and s10-s19

    # Bulk: add two selected nodes to a group (one POST per node, as the user), flash with the count.
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.check("input[name=ids][value=x1000c0s1b0n0]")
    await page.check("input[name=ids][value=x1000c0s12b0n0]")
    await page.select_option("select[name=action]", "group")
    await page.fill(".bulk-actions input[name=group]", "storage")
    await page.click("button:text('Apply')")
    await page.wait_for_selector(".flash")
    assert "2 of 2 added to the group" in await page.locator(".flash").inner_text()
    assert "q=x1000c0s1" in page.url  # back on the same filtered page
    members = (await ok(await rest.get("/hsm/v2/groups/storage/members")))["members"]
    assert members == ["storage-1", "x1000c0s12b0n0", "x1000c0s1b0n0"]

    # Decommission a node, then return it to service; both are in its history under alice's name.
    await page.goto("/ui/inventory?q=x1000c0s2b")
    await page.check("input[data-select-all]")
    await page.select_option("select[name=action]", "decommission")
    await page.click("button:text('Apply')")
    await page.wait_for_selector(".flash")
    assert "1 of 1 decommissioned" in await page.locator(".flash").inner_text()
    spec = (await ok(await rest.get(f"{NODES}/x1000c0s2b0n0")))["spec"]
    assert spec["state"] == "Empty" and not spec["enabled"]
    await page.check("input[name=ids][value=x1000c0s2b0n0]")
    await page.select_option("select[name=action]", "provision")
    await page.click("button:text('Apply')")
    await page.wait_for_selector(".flash")
    spec = (await ok(await rest.get(f"{NODES}/x1000c0s2b0n0")))["spec"]
    assert spec["state"] == "Ready" and spec["enabled"]
    await page.goto("/ui/inventory/x1000c0s2b0n0")
    history = await page.locator("section", has_text="History").inner_text()
    assert "alice" in history and "/provision" in history and "/decommission" in history

    # Adding to a group that does not exist: every item fails, each shown, nothing changed.
    await page.goto("/ui/inventory?q=x1000c0s3b")
    await page.check("input[data-select-all]")
    await page.select_option("select[name=action]", "group")
    await page.fill(".bulk-actions input[name=group]", "no-such-group")
    await page.click("button:text('Apply')")
    outcome = page.locator(".bulk-outcome")
    await outcome.wait_for()
    assert "0 done, 1 failed" in await outcome.inner_text() and "x1000c0s3b0n0" in await outcome.inner_text()
    assert await page.locator("input[name=ids][value=x1000c0s3b0n0]").is_checked()  # the selection kept
    await shot(page, "bulk-failure")


async def test_node_page_effective_boot_params_and_previews(login, rest, shot, boot, dsn):
    await seed(rest)
    for spec in ({"kernel": KERNEL.format("site")}, {"role": "Storage", "kernel": KERNEL.format("role")},
                 {"group": "storage", "kernel": KERNEL.format("group"), "cmdline": "console=ttyS0"},
                 {"mac": "aa:bb:cc:00:00:02", "kernel": KERNEL.format("mac")}):
        await ok(await rest.post("/boot/v1/bootparams", json={"spec": spec}))
    await ok(await rest.post("/cloud-init/payloads", json={"spec": {
        "group": "storage", "userData": "#cloud-config\nhostname: storage-by-group\n", "metaData": {"zone": "z9"}}}))

    page = await login("alice", next_path="/ui/inventory?role=Storage")
    await page.click("text=storage-1")
    await page.wait_for_url(re.compile(r".*/ui/inventory/storage-1$"))
    boot_section = page.locator("#boot")
    won = boot_section.locator("tr.won")
    assert await won.count() == 2  # the group's entry (by name and the first MAC), the MAC entry (the second)
    assert "group:storage" in await won.nth(1).inner_text() and "aa:bb:cc:00:00:01" in await won.nth(1).inner_text()
    assert "overridden" in await boot_section.locator("tr", has_text="role:Storage").inner_text()

    # The boot path's own script for the first MAC: the group's kernel (the boot path may take a moment to hear).
    async def script_has(kernel: str) -> None:
        deadline = time.monotonic() + 10
        while kernel not in await page.locator("pre.script").inner_text():
            assert time.monotonic() < deadline, await page.locator("pre.script").inner_text()
            await page.reload()
    await script_has(KERNEL.format("group"))
    assert (await page.locator("pre.script").inner_text()).startswith("#!ipxe")
    await page.select_option("select[name=mac]", "aa:bb:cc:00:00:02")  # autosubmits
    await page.wait_for_url(re.compile(r".*mac=aa.*"))
    await script_has(KERNEL.format("mac"))
    await shot(page, "node")

    cloud = page.locator("#cloud-init")
    assert "userData" in await cloud.locator("tr.won").inner_text()
    assert "storage-by-group" in await cloud.locator("details.document").first.inner_text()
    assert "storage-by-group" not in await page.locator("pre.script").inner_text()

    # Previews are not the node booting; a node's own request is counted.
    status, _, _ = boot.get("/boot/v1/bootscript?mac=02:00:00:00:00:01")
    assert status == 200
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + 10
        while not await conn.fetchval("SELECT true FROM bss.boot_telemetry WHERE component_id = 'x1000c0s1b0n0'"):
            assert time.monotonic() < deadline, "the boot path never recorded the node's own request"
            await asyncio.sleep(0.05)
        assert await conn.fetchval("SELECT count(*) FROM bss.boot_telemetry WHERE component_id = 'storage-1'") == 0
    finally:
        await conn.close()
    live = page.locator("section[data-live-topics]")
    assert "has not seen this node ask" in await live.inner_text()

    # When the node itself asks, the open page's live part shows it (SSE topic boot, then a fragment re-fetch).
    status, _, _ = boot.get("/boot/v1/bootscript?mac=aa:bb:cc:00:00:01")
    assert status == 200
    await live.locator("dt", has_text="Asked for").wait_for()
    assert "has not seen" not in await live.inner_text() and "Storage" in await page.locator("h1").inner_text()
    await shot(page, "node-booted")


async def test_a_viewer_can_change_nothing(login, rest, shot):
    await seed(rest)
    page = await login("victor", next_path="/ui/inventory")
    assert await page.locator("table.inventory tbody tr").count() == 50
    assert await page.locator("input[name=ids]").count() == 0
    assert await page.locator("select[name=action]").count() == 0
    await shot(page, "viewer-inventory")
    await page.goto("/ui/inventory/storage-1")
    assert await page.locator("#boot").count() == 1  # a viewer reads boot parameters
    assert await page.locator("button[name=action]").count() == 0  # but has no power buttons
    await shot(page, "viewer-node")

    # Posts made by hand with the viewer's own session and token: the REST operations refuse them.
    csrf = await page.locator("body").get_attribute("data-csrf")
    answer = await page.request.post("/ui/inventory", form={
        "csrf_token": csrf, "ids": "x1000c0s1b0n0", "action": "group", "group": "storage"})
    assert answer.status == 403 and "write:smd" in await answer.text()
    answer = await page.request.post("/ui/inventory", form={"csrf_token": csrf, "ids": "storage-1",
                                                            "action": "decommission"})
    assert answer.status == 403
    answer = await page.request.post("/ui/inventory/storage-1/power", form={"csrf_token": csrf, "action": "off"})
    assert answer.status == 403
    assert (await ok(await rest.get("/hsm/v2/groups/storage/members")))["members"] == ["storage-1"]
    assert (await ok(await rest.get(f"{NODES}/storage-1")))["spec"]["state"] == "Ready"
    assert (await ok(await rest.get("/power/v1/transitions")))["metadata"]["total"] == 0
