"""deploy/prometheus checked by Prometheus's own tools, and a real Prometheus scraping the real services."""

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from core import db
from tests.helpers.paths import ROOT, tmp_root
from tests.helpers.polling import wait_until
from tests.helpers.ports import free_port
from tests.helpers.seed import add_node

DEPLOY = ROOT / "deploy" / "prometheus"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
SERIES = re.compile(r"\bchamicore_[a-z_]+")
RULES = DEPLOY / "rules" / "chamicore.rules.yml"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"  # Debian package `prometheus` (Makefile)
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def write_config(directory: Path, targets: dict[str, int], for_: str | None = None) -> Path:
    """The shipped prometheus.yml with the test's ports and a 1 s rhythm, beside a copy of the shipped
    rules (whose `for:` durations become `for_` when given, so an alert fires within the test)."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert sorted(job["job_name"] for job in config["scrape_configs"]) == sorted(targets)
    for job in config["scrape_configs"]:
        [static] = job["static_configs"]
        static["targets"] = [f"127.0.0.1:{targets[job['job_name']]}"]
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    rules = yaml.safe_load(RULES.read_text())
    if for_ is not None:
        for group in rules["groups"]:
            for rule in group["rules"]:
                rule["for"] = for_
    [rule_file] = config["rule_files"]
    (directory / rule_file).parent.mkdir(parents=True, exist_ok=True)
    (directory / rule_file).write_text(yaml.safe_dump(rules, sort_keys=False))
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_promtool_accepts_the_rules_and_the_config():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = write_config(tmp_root(), {"chamicore-boot": 27778, "chamicore-admin": 27779})
    checked = promtool("check", "config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_rules_unit_tests_pass_and_cover_boot_path_down_and_feed_lag():
    tests = DEPLOY / "rules" / "chamicore.rules.test.yml"
    covered = {case["alertname"] for test in yaml.safe_load(tests.read_text())["tests"]
               for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert {"ChamicoreBootPathDown", "ChamicoreBootFeedLag", "ChamicoreSyncJobWithoutLeader"} <= covered
    tested = promtool("test", "rules", tests.name, cwd=tests.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def dashboard_queries(dashboard: dict) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboards_are_grafana_dashboards_on_a_datasource_variable():
    assert [d.name for d in DASHBOARDS] == ["admin-api.json", "boot-storm.json"]
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"].startswith("Chamicore") and dashboard["schemaVersion"] >= 36
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        panels = dashboard["panels"]
        assert len({p["id"] for p in panels}) == len(panels) >= 8
        cells = [(p["gridPos"]["x"] + dx, p["gridPos"]["y"] + dy) for p in panels
                 for dx in range(p["gridPos"]["w"]) for dy in range(p["gridPos"]["h"])]
        assert len(cells) == len(set(cells)) and all(x < 24 for x, _ in cells)  # no panel hides another
        for panel in panels:
            assert panel["targets"], panel["title"]
            assert {t["datasource"]["uid"] for t in panel["targets"]} == {"${datasource}"} == {panel["datasource"]["uid"]}


class Prometheus:
    """A real Prometheus on a free port, with its data in a scratch directory."""

    def __init__(self, config: Path) -> None:
        self.port = free_port()
        self.log = config.parent / "prometheus.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={config.parent / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"], stdout=log, stderr=subprocess.STDOUT)

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:  # a query Prometheus refuses (400, 422): say why
            with error:
                if error.code == 503:  # still starting (its storage not open yet): no answer yet, like a refused port
                    return {}
                raise AssertionError(f"{params}: {error.read().decode()}") from None
        except OSError:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            return {}
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expression: str) -> dict[str, float]:
        """An instant query's samples, by the `job` label."""
        data = self.api("query", query=expression)
        return {r["metric"].get("job", ""): float(r["value"][1]) for r in data.get("result", [])}

    def alerts(self, state: str) -> list[dict]:
        return [a for a in self.api("alerts").get("alerts", []) if a["state"] == state]

    def rules_health(self) -> set[str]:
        return {rule["health"] for group in self.api("rules").get("groups", []) for rule in group["rules"]}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


async def test_prometheus_scrapes_the_services_and_the_feed_lag_alert_fires(dsn, conn, boot_server, admin_server):
    """Both targets up, a boot-path and an admin series read back through the query API; then a lock held on
    smd.components makes the boot path's next change take over 1 s, and ChamicoreBootFeedLag fires."""
    await add_node(conn, "x1000c0s0b0n0", ["52:54:00:00:00:01"])
    # What running sync daemons would have reported, so that their series exist too.
    await conn.execute("""INSERT INTO sync.status (job, instance, state, counts) VALUES
        ('power', 'sync-1:1', 'active', '{"tasksDone": 4, "tasksFailed": 1}'),
        ('discovery', 'sync-1:1', 'active', '{"hosts": 3, "hostsFailed": 0}')""")
    boot, admin = boot_server(), admin_server()
    # `for:` is 1 s instead of minutes in this copy of the rules, so the test waits seconds.
    config = write_config(tmp_root(), {"chamicore-boot": boot.port, "chamicore-admin": admin.port}, for_="1s")
    prometheus = Prometheus(config)
    try:
        assert wait_until(lambda: prometheus.query("up") == {"chamicore-boot": 1, "chamicore-admin": 1},
                          timeout=30, interval=0.2)
        assert wait_until(lambda: prometheus.query("chamicore_boot_index_nodes"), timeout=10,
                          interval=0.2) == {"chamicore-boot": 1}
        assert prometheus.query("chamicore_events_outbox_unsent")["chamicore-admin"] >= 0
        assert boot.get("/boot/v1/bootscript?mac=52:54:00:00:00:01")[0] == 200
        served = 'sum by (job) (chamicore_boot_requests_total{endpoint="bootscript"})'
        assert wait_until(lambda: prometheus.query(served) == {"chamicore-boot": 1}, timeout=10, interval=0.2)
        # Every series the rules and the dashboards name is one the services expose, and every dashboard
        # query is one Prometheus accepts.
        exposed = set(prometheus.api("label/__name__/values"))
        named = set(SERIES.findall(RULES.read_text()))
        for dashboard in DASHBOARDS:
            for expression in dashboard_queries(json.loads(dashboard.read_text())):
                named |= set(SERIES.findall(expression))
                prometheus.api("query", query=expression.replace("$__rate_interval", "1m").replace("$instance", ".*"))
        assert named and named <= exposed, named - exposed
        assert prometheus.query('chamicore_sync_replicas{sync_job="power", state="active"}') == {"chamicore-admin": 1}
        # Every shipped rule evaluates without error against the real series, and none fires yet.
        assert wait_until(lambda: prometheus.rules_health() == {"ok"}, timeout=10, interval=0.2)
        assert prometheus.alerts("firing") == []
        assert prometheus.query("chamicore_boot_feed_lag_seconds") == {"chamicore-boot": 0}

        # The fault: a change is announced while a transaction holds smd.components, which the boot path's
        # feed must read to apply it. It waits on the lock; the lag is measured from the notification.
        locker = await db.connect(dsn)
        try:
            async with locker.transaction():
                held_since = time.monotonic()
                await locker.execute("LOCK TABLE smd.components IN ACCESS EXCLUSIVE MODE")
                await conn.execute("SELECT pg_notify('chamicore_boot', $1)",
                                   json.dumps({"keys": {"componentIds": ["x1000c0s0b0n0"]}}))
                assert await _feed_waiting_on_a_lock(conn), "the boot path's feed never waited on the lock"
                # Holding the lock is the fault itself (its length is the injected lag), not a synchronisation.
                time.sleep(max(0.0, 1.5 - (time.monotonic() - held_since)))
        finally:
            await locker.close()

        lag = wait_until(lambda: prometheus.query("chamicore_boot_feed_lag_seconds").get("chamicore-boot", 0) > 1
                         and prometheus.query("chamicore_boot_feed_lag_seconds"), timeout=15, interval=0.2)
        assert 1 < lag["chamicore-boot"] < 15
        [alert] = wait_until(lambda: prometheus.alerts("firing"), timeout=20, interval=0.2)
        assert alert["labels"]["alertname"] == "ChamicoreBootFeedLag"
        assert alert["labels"]["severity"] == "warning" and alert["labels"]["job"] == "chamicore-boot"
        assert "took" in alert["annotations"]["summary"] and "pg_stat_activity" in alert["annotations"]["description"]
    finally:
        prometheus.stop()


async def _feed_waiting_on_a_lock(conn, timeout: float = 10.0) -> bool:
    """Whether the boot path's feed session waits on a lock (what pg_stat_activity says), within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await conn.execute("SELECT pg_stat_clear_snapshot()")  # else a transaction sees one snapshot throughout
        if await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                               "'chamicore-boot-feed' AND wait_event_type = 'Lock' AND datname = current_database()"):
            return True
        time.sleep(0.05)
    return False
