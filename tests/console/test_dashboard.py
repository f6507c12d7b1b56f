"""The dashboard (/ui/): the numbers it shows are the REST API's, its sections follow the user's scopes, a source
that fails is said and the rest renders, it stays fast at 100k nodes, and a boot storm shows live in a browser."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import expect

from admin_api.console.dashboard import RequestRate, counters, sparkline
from core.config import load_config
from core.problems import ProblemError
from tests.console.conftest import create_users
from tests.console.test_sessions import _log_in
from tests.helpers.keys import SECRETS
from tests.helpers.ports import free_port
from tests.helpers.tokens import token_for

COMPONENTS = "/hsm/v2/State/Components"


READINESS = b'{"status": "ready", "nodes": 12, "requests": {"total": 100, "waits": 7}, "feed": {"state": "live"}}'


def test_requests_per_second_from_the_boot_paths_counters():
    assert counters(READINESS) == (100, 7)
    with pytest.raises(ProblemError):  # a boot path that does not say: the section says so, not a zero rate
        counters(b'{"status": "ready", "nodes": 12}')
    rate = RequestRate()
    assert rate.look(10.0, 100, 7).per_s is None  # one look: no rate yet
    assert rate.look(10.1, 150, 7).per_s is None  # too close to say
    second = rate.look(12.0, 300, 27)
    assert second.per_s == 100.0 and second.waits_per_s == 10.0 and second.history == [100.0]
    assert rate.look(200.0, 300, 27).per_s == 0.0  # a quiet minute: the rate falls back to 0
    assert rate.look(201.0, 10, 0).per_s is None  # the boot path restarted: start again
    bars = sparkline([1.0, 4.0])
    assert [b["h"] for b in bars] == [10.0, 40.0] and bars[-1]["x"] + bars[-1]["w"] < 240


@pytest.fixture
async def app_without_boot_path(dsn):
    """The admin API in-process, told the boot path is at an address where nothing answers."""
    from admin_api.app import create_app

    app = create_app(load_config({"CHAMICORE_DATABASE_URL": dsn, "CHAMICORE_BOOT_URL": f"http://127.0.0.1:{free_port()}",
                                  **SECRETS}))
    async with app.router.lifespan_context(app):
        await create_users(dsn)
        yield app


def browser_of(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin", follow_redirects=False)


def stat(html: str, name: str) -> int:
    found = re.search(rf'id="stat-{name}">([0-9]+)<', html)
    assert found, f"no stat {name!r} in the page"
    return int(found.group(1))


async def seed(conn, nodes: int, seen: int, earlier: int) -> None:
    """`nodes` nodes (every 10th Off, every 7th without a role, every 50th disabled), 3 switches, and boot telemetry:
    `seen` nodes a minute ago, `earlier` ones a day ago."""
    await conn.execute(
        "INSERT INTO smd.components (id, type, state, role, nid, enabled) "
        "SELECT 'n' || i, 'Node', CASE WHEN i % 10 = 0 THEN 'Off' ELSE 'Ready' END, "
        "CASE WHEN i % 7 = 0 THEN '' ELSE 'Compute' END, i, i % 50 <> 0 FROM generate_series(1, $1) AS i", nodes)
    await conn.execute("INSERT INTO smd.components (id, type, state) VALUES ('sw1', 'Switch', 'Ready'), "
                       "('sw2', 'Switch', 'Ready'), ('sw3', 'Switch', 'Off')")
    await conn.execute(
        "INSERT INTO bss.boot_telemetry (component_id, endpoint, source_ip, seen_at, requests) "
        "SELECT 'n' || i, 'bootscript', '10.0.0.1', CASE WHEN i <= $1 THEN now() - interval '1 minute' "
        "ELSE now() - interval '1 day' END, 1 FROM generate_series(1, $2) AS i", seen, seen + earlier)


@pytest.fixture
async def rest_of(dsn):
    """An admin's REST client of an in-process app, to ask what the dashboard should show."""
    async def client(app) -> httpx.AsyncClient:
        async with browser_of(app) as anonymous:
            token = await token_for(anonymous, dsn, "checker", ["admin"])
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin",
                                 headers={"Authorization": f"Bearer {token}"})
    return client


async def test_the_numbers_are_the_apis_and_a_missing_boot_path_is_said(app_without_boot_path, rest_of, conn):
    app = app_without_boot_path
    await seed(conn, 60, seen=12, earlier=5)
    async with browser_of(app) as browser:
        await _log_in(browser, "alice")
        page = await browser.get("/ui/")
    assert page.status_code == 200, page.text
    html = page.text
    async with await rest_of(app) as api:
        async def count(**query) -> int:
            return (await api.get(COMPONENTS, params={**query, "limit": 1})).json()["metadata"]["total"]

        assert stat(html, "components") == await count() == 63
        assert stat(html, "nodes") == await count(type="Node") == 60
        assert stat(html, "nodes-ready") == await count(type="Node", state="Ready") == 54
        summary = (await api.get("/hsm/v2/summary")).json()
        assert stat(html, "nodes-disabled") == summary["byType"]["Node"]["disabled"] == 1
        for state, n in summary["byType"]["Switch"]["byState"].items():
            assert f'data-state="{state}" href="/ui/inventory?type=Switch&amp;state={state}">{state} {n}<' in html
            assert n == await count(type="Switch", state=state)
        seen = (await api.get("/boot/v1/telemetry/summary", params={"minutes": 5})).json()
        assert stat(html, "nodes-seen") == seen["seenInWindow"] == 12
        assert stat(html, "nodes-earlier") == seen["seenEarlier"] == 5
        assert stat(html, "nodes-never") == seen["neverSeen"] == 43
    # The boot path does not answer: its parts say so, everything else is there.
    assert "could not be read: the boot path at http://127.0.0.1:" in html
    assert 'id="boot-unreachable"' in html
    assert 'id="dash-audit"' in html and 'id="dash-power"' in html and 'id="dash-discovery"' in html


async def test_a_viewer_sees_no_audit_and_cannot_fetch_it(app_without_boot_path):
    async with browser_of(app_without_boot_path) as browser:
        await _log_in(browser, "victor")
        page = await browser.get("/ui/")
        assert page.status_code == 200
        assert 'id="dash-audit"' not in page.text and "Recent audit events" not in page.text
        assert 'id="dash-inventory"' in page.text and 'id="dash-boot"' in page.text
        refused = await browser.get("/ui/dashboard/audit", headers={"X-Console-Fragment": "1"})
        assert refused.status_code == 403 and "read:audit" in refused.text
        fragment = await browser.get("/ui/dashboard/inventory", headers={"X-Console-Fragment": "1"})
        assert fragment.status_code == 200 and 'id="stat-nodes"' in fragment.text and "<html" not in fragment.text
        alone = await browser.get("/ui/dashboard/power")  # without JavaScript: a page of that section alone
        assert "<html" in alone.text and 'id="dash-power"' in alone.text and 'id="dash-inventory"' not in alone.text
        one_minute = await browser.get("/ui/", params={"minutes": "1"})
        assert "nodes seen in the last 1 min" in one_minute.text
        assert 'data-live-src="/ui/dashboard/boot?minutes=1"' in one_minute.text
        odd = await browser.get("/ui/", params={"minutes": "7; drop"})
        assert odd.status_code == 200 and "nodes seen in the last 5 min" in odd.text


async def test_the_counts_hold_at_100k_nodes(app_without_boot_path, conn):
    """Every section renders at scale and counts right; how fast is bench.console's figure, not a test's."""
    await seed(conn, 100_000, seen=30_000, earlier=20_000)
    await conn.execute("ANALYZE smd.components; ANALYZE bss.boot_telemetry")
    async with browser_of(app_without_boot_path) as browser:
        await _log_in(browser, "alice")
        page = await browser.get("/ui/")
        assert stat(page.text, "nodes") == 100_000 and stat(page.text, "components") == 100_003
        assert stat(page.text, "nodes-seen") == 30_000 and stat(page.text, "nodes-never") == 50_000
        for name in ("boot", "inventory", "services", "power", "discovery", "audit"):
            answer = await browser.get(f"/ui/dashboard/{name}", headers={"X-Console-Fragment": "1"})
            assert answer.status_code == 200, answer.text


@pytest.fixture
def boot(boot_server):
    return boot_server()  # test servers write boot telemetry every 0.2 s


@pytest.fixture
def console_server(admin_server, boot):
    """The console's admin API, told where the boot path serves (for its counters and readiness)."""
    return admin_server(CHAMICORE_BOOT_URL=boot.url)


async def text_of(page, selector: str) -> str:
    return (await page.locator(selector).inner_text()).strip()


async def test_a_boot_storm_shows_live_and_the_numbers_are_the_apis(login, rest, boot, shot):
    await rest.post("/boot/v1/bootparams", json={"metadata": {"id": "site"}, "spec": {
        "kernel": "http://images.test/vmlinuz", "initrd": "http://images.test/initrd", "cmdline": "console=ttyS0"}})
    macs = [f"02:00:00:00:01:{n:02x}" for n in range(24)]
    for n, mac in enumerate(macs):
        created = await rest.post(COMPONENTS, json={"metadata": {"id": f"node-{n}"}, "spec": {
            "type": "Node", "state": "Ready", "role": "Compute" if n % 4 else "Service", "nid": n + 1,
            "networkInterfaces": [{"macAddr": mac}]}})
        assert created.status_code == 201, created.text
    page = await login("alice")
    await page.wait_for_selector("#live-state.on")  # the SSE stream is open before the storm starts
    summary = (await rest.get("/hsm/v2/summary")).json()
    assert int(await text_of(page, "#stat-nodes")) == summary["byType"]["Node"]["total"] == 24
    roles = summary["byType"]["Node"]["byRole"]
    assert await text_of(page, "#dash-inventory [data-role=Service]") == f"Service {roles['Service']}"
    assert await text_of(page, "#stat-nodes-seen") == "0" and await text_of(page, "#stat-nodes-never") == "24"
    assert await text_of(page, "#feed-state") == "live"
    await shot(page, "before")
    await page.evaluate("() => { window.sameDocument = true; }")

    async with httpx.AsyncClient(base_url=boot.url, timeout=10) as nodes:
        for n in range(3):  # nodes nobody registered ask first: told to wait
            assert (await nodes.get("/boot/v1/bootscript", params={"mac": f"02:ff:00:00:00:{n:02x}"})).status_code \
                == 200
        for mac in macs[:16]:
            answer = await nodes.get("/boot/v1/bootscript", params={"mac": mac})
            assert answer.status_code == 200 and "vmlinuz" in answer.text
        # No reload: the page follows the telemetry flush through LISTEN/NOTIFY and SSE.
        await expect(page.locator("#stat-nodes-seen")).to_have_text("16")
        assert await text_of(page, "#stat-nodes-never") == "8"
        assert int(await text_of(page, "#stat-waits")) == 3
        await shot(page, "storm")
        for mac in macs[16:]:
            await nodes.get("/boot/v1/bootscript", params={"mac": mac})
        await expect(page.locator("#stat-nodes-seen")).to_have_text("24")
    seen = (await rest.get("/boot/v1/telemetry/summary", params={"minutes": 5})).json()
    assert int(await text_of(page, "#stat-nodes-seen")) == seen["seenInWindow"] == 24
    assert int(await text_of(page, "#stat-nodes-never")) == seen["neverSeen"] == 0
    assert await text_of(page, "#stat-rps") != "—"  # two looks at the boot path's counters by now
    assert "node-" in await text_of(page, "#dash-boot table")
    assert await page.evaluate("() => window.sameDocument === true")  # never reloaded
    assert await page.locator("#dash-boot [data-live-updated]").count() == 1
    await shot(page, "after")


async def failures(conn) -> None:
    """What the engines write when things go wrong: a failed scan, a transition with a failed node, a daemon's error."""
    await conn.execute("INSERT INTO discovery.scans (id, state, requested_by, error, started_at, finished_at) "
                       "VALUES ('scan-bad', 'failed', 'oscar', 'no BMC answered at 10.1.0.9', now(), now())")
    await conn.execute("INSERT INTO discovery.scan_hosts (scan_id, target_id, host, state, detail) "
                       "VALUES ('scan-bad', 'rack1', '10.1.0.9', 'failed', 'timed out')")
    transition = await conn.fetchval("INSERT INTO power.transitions (operation, state, requested_by, finished_at) "
                                     "VALUES ('On', 'completed', 'oscar', now()) RETURNING id")
    await conn.execute("INSERT INTO power.tasks (transition_id, node_id, state, detail) VALUES "
                       "($1, 'x1', 'failed', 'BMC refused'), ($1, 'x2', 'succeeded', '')", transition)
    await conn.execute("INSERT INTO sync.status (job, instance, state, last_error, last_error_at) "
                       "VALUES ('kea', 'sync-a:41', 'active', 'Kea control agent refused the connection', now()), "
                       "('kea', 'sync-b:42', 'standby', NULL, NULL)")


async def test_failures_show_and_each_role_sees_what_it_may(login, conn, shot):
    await failures(conn)
    operator = await login("oscar")
    assert await operator.locator("#dash-audit").count() == 0  # no read:audit
    assert await text_of(operator, "#stat-scans-failed") == "1"
    assert "no BMC answered at 10.1.0.9" in await text_of(operator, "#dash-discovery table")
    assert await text_of(operator, "#stat-transitions-failed") == "1"
    assert "On" in await text_of(operator, "#dash-power table")
    daemons = await text_of(operator, "#dash-services table")
    assert "Kea control agent refused the connection" in daemons and "standby" in daemons
    await shot(operator, "operator")
    viewer = await login("victor")
    assert await viewer.locator("#dash-audit").count() == 0
    assert await viewer.locator("#dash-boot").count() == 1 and await viewer.locator("#dash-power").count() == 1
    await shot(viewer, "viewer")
    admin = await login("alice")
    assert "console.login" in await text_of(admin, "#dash-audit table")
