"""Import in a real browser: a CSV file, its dry-run diff, the commit, and what REST then holds; a second
file showing what exists unchanged, what would change and what is wrong; a forged commit refused."""

from __future__ import annotations

import html
import re
import urllib.parse

import pytest

from tests.console.conftest import create_users
from tests.console.test_sessions import logged_in

CSV = ("id,type,role,nid,rack,unit,mac,ip\n"
       "x1000c0s0b0n0,Node,Compute,1,r1,4,02:00:00:00:00:01,10.0.0.1\n"
       "x1000c0s0b0n1,Node,Compute,2,r1,5,02-00-00-00-00-02,10.0.0.2\n"
       "x1000c0s0b0n2,Node,Service,3,r1,6,02:00:00:00:00:03,\n")


async def upload(page, name: str, text: str) -> None:
    await page.goto("/ui/import")
    await page.set_input_files("input[type=file]", files=[{"name": name, "mimeType": "text/csv",
                                                           "buffer": text.encode()}])
    await page.click("text=Check (dry run)")
    await page.wait_for_selector("table.import-diff")


async def test_import_a_csv_file_dry_run_first_then_commit(login, rest, shot):
    page = await login("alice", next_path="/ui/import")
    await shot(page, "upload")
    await upload(page, "rack1.csv", CSV)
    assert [await page.locator(".import-summary .stat").nth(i).inner_text() for i in range(4)] == ["3", "0", "0", "0"]
    assert await page.locator("tr.node-created").count() == 3
    await shot(page, "dry-run")
    # The dry run wrote nothing.
    assert (await rest.get("/hsm/v2/State/Components/x1000c0s0b0n0")).status_code == 404

    await page.click("text=Commit import")
    await page.wait_for_url(re.compile(r".*/ui/import$"))
    assert "Imported 3 nodes from rack1.csv" in await page.locator(".flash").inner_text()
    node = (await rest.get("/hsm/v2/State/Components/x1000c0s0b0n1")).json()["spec"]
    assert node["nid"] == 2 and node["role"] == "Compute" and node["location"]["rack"] == "r1"
    nic = (await rest.get("/hsm/v2/Inventory/EthernetInterfaces", params={"componentId": "x1000c0s0b0n1"})).json()
    assert [i["spec"]["macAddr"] for i in nic["items"]] == ["02:00:00:00:00:02"]
    audit = (await rest.get("/auth/v1/audit", params={"actor": "alice", "action": "POST /hsm/v2/import"})).json()
    assert [e["status"] for e in audit] == [201, 200]  # the commit, then the dry run, both under her name

    # The same file again with two nodes changed (a role, an interface added), one new with a bad MAC, one new
    # and fine.
    second = (CSV.replace("x1000c0s0b0n2,Node,Service", "x1000c0s0b0n2,Node,Compute")
              .replace("02:00:00:00:00:01,", "02:00:00:00:00:01;02:00:00:00:00:09,")
              + "x1000c0s0b0n3,Node,Compute,4,r1,7,not-a-mac,\n"
              + "x1000c0s0b0n4,Node,Compute,5,r1,8,02:00:00:00:00:05,\n")
    await upload(page, "rack1-v2.csv", second)
    assert [await page.locator(".import-summary .stat").nth(i).inner_text() for i in range(4)] == ["1", "1", "2", "1"]
    changed = await page.locator("tr.node-changed").all_inner_texts()
    assert "x1000c0s0b0n0" in changed[0] and "networkInterfaces[1]: — → 02:00:00:00:00:09" in changed[0]
    assert "x1000c0s0b0n2" in changed[1] and "role: Service → Compute" in changed[1]
    assert "macAddr" in await page.locator("tr.node-error").inner_text()
    assert await page.locator("text=Commit import").count() == 0
    await shot(page, "diff-refused")

    # Only what exists unchanged and what is new: the unchanged ones are left out of the commit.
    await upload(page, "rack1-v3.csv", CSV + "x1000c0s0b0n4,Node,Compute,5,r1,8,02:00:00:00:00:05,\n")
    assert [await page.locator(".import-summary .stat").nth(i).inner_text() for i in range(4)] == ["1", "3", "0", "0"]
    await shot(page, "diff-unchanged")
    # A commit whose content is not what the dry run checked is refused, and imports nothing.
    await page.evaluate("document.querySelector('input[name=nodes]').value = "
                        "'[{\"id\":\"x9\",\"type\":\"Node\"}]'")
    await page.click("text=Commit import")
    assert "not the one the dry run checked" in await page.locator("p.error").inner_text()
    assert (await rest.get("/hsm/v2/State/Components/x9")).status_code == 404
    await upload(page, "rack1-v3.csv", CSV + "x1000c0s0b0n4,Node,Compute,5,r1,8,02:00:00:00:00:05,\n")
    await page.click("text=Commit import")
    assert "Imported 1 nodes" in await page.locator(".flash").inner_text()
    assert (await rest.get("/hsm/v2/State/Components/x1000c0s0b0n4")).status_code == 200

    # A node without an id is committed with the id its dry run showed.
    await upload(page, "one.json", '[{"type": "Node", "role": "Compute"}]')
    shown = (await page.locator("tr.node-created td.mono, tr.node-created span.mono").first.inner_text()).strip()
    assert shown.startswith("node-")
    await page.click("text=Commit import")
    await page.wait_for_selector(".flash")
    assert (await rest.get(f"/hsm/v2/State/Components/{shown}")).status_code == 200

    # A file that is no list of nodes is said so, in the upload page.
    await page.goto("/ui/import")
    await page.set_input_files("input[type=file]", files=[{"name": "bad.csv", "mimeType": "text/csv",
                                                           "buffer": b"id,nid\nn1,one\n"}])
    await page.click("text=Check (dry run)")
    assert "nid must be a whole number" in await page.locator("p.error").inner_text()
    await shot(page, "unreadable")


async def test_a_viewer_cannot_import(login, rest):
    page = await login("victor")
    assert "Import" not in await page.locator("nav.sidebar").inner_text()
    answer = await page.goto("/ui/import")
    assert answer is not None and answer.status == 403
    status = await page.evaluate("""async () => {
        const body = new FormData();
        body.append("file", new Blob(["id,type\\nx1,Node\\n"]), "n.csv");
        return (await fetch("/ui/import", {method: "POST", body,
                                           headers: {"X-CSRF-Token": document.body.dataset.csrf}})).status;
    }""")
    assert status == 403
    assert (await rest.get("/auth/v1/audit", params={"action": "POST /hsm/v2/import"})).json() == []


@pytest.fixture
async def people(admin_app, dsn):
    await create_users(dsn)


async def test_a_large_file_is_committed_whole(admin_app, people):
    """5,000 nodes: more checked content than one form field may hold (Starlette: 1 MiB)."""
    rows = [f"n{i},Node,Compute,{i + 1},r{i // 40},{i % 40},02:00:00:00:{i >> 8:02x}:{i & 255:02x}" for i in range(5000)]
    text = "id,type,role,nid,rack,unit,mac\n" + "\n".join(rows) + "\n"
    async with logged_in(admin_app) as (browser, csrf):
        checked = await browser.post("/ui/import", files={"file": ("big.csv", text.encode(), "text/csv")},
                                     data={"csrf_token": csrf})
        assert checked.status_code == 200, checked.text[:500]
        parts = [html.unescape(p) for p in re.findall(r'name="nodes" value="([^"]*)"', checked.text)]
        assert len(parts) > 1 and len(urllib.parse.quote_plus("".join(parts))) > 1 << 20  # as a form sends it
        signature = re.search(r'name="signature" value="([^"]*)"', checked.text)
        assert signature
        done = await browser.post("/ui/import/commit", data={"csrf_token": csrf, "nodes": parts, "name": "big.csv",
                                                             "signature": signature.group(1)})
        assert done.status_code == 303, done.text[:500]
        listed = await browser.get("/ui/import")
        assert "Imported 5000 nodes from big.csv" in listed.text


async def test_the_dry_run_lists_the_bmcs_and_groups_the_import_makes(admin_app, people):
    async with admin_app.state.pool.acquire() as conn:
        await conn.execute("INSERT INTO smd.groups (name) VALUES ('compute')")
    text = "id,nid,bmc,groups\nx1000c2s0b0n0,21,10.2.0.1,compute\nx1000c2s0b0n1,22,10.2.0.1,compute\n"
    async with logged_in(admin_app) as (browser, csrf):
        checked = await browser.post("/ui/import", files={"file": ("rack2.csv", text.encode(), "text/csv")},
                                     data={"csrf_token": csrf})
        assert checked.status_code == 200, checked.text[:500]
        page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", checked.text))
        assert "create BMC x1000c2s0b0 at https://10.2.0.1 for 2 nodes" in page
        assert "join group compute 2 nodes" in page and "BMC 10.2.0.1 · groups compute" in page
        parts = [html.unescape(p) for p in re.findall(r'name="nodes" value="([^"]*)"', checked.text)]
        signature = re.search(r'name="signature" value="([^"]*)"', checked.text)
        assert signature
        done = await browser.post("/ui/import/commit", data={"csrf_token": csrf, "nodes": parts, "name": "rack2.csv",
                                                             "signature": signature.group(1)})
        assert done.status_code == 303, done.text[:500]
        async with admin_app.state.pool.acquire() as conn:
            assert await conn.fetchval("SELECT parent_id FROM smd.components WHERE id = 'x1000c2s0b0n1'") == \
                "x1000c2s0b0"
            assert await conn.fetchval("SELECT count(*) FROM smd.group_members WHERE group_name = 'compute'") == 2
        # The same file again: a BMC or groups for a node that exists are changes an import cannot make.
        again = await browser.post("/ui/import", files={"file": ("rack2.csv", text.encode(), "text/csv")},
                                   data={"csrf_token": csrf})
        page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", again.text))
        assert again.text.count('class="node-changed"') == 2 and "groups : — → compute" in page
        assert "Commit import" not in page
