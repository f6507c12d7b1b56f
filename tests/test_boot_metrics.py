"""The boot path's /metrics (hotpath/metrics.py): standard Prometheus exposition read with prometheus_client's parser,
every worker's figures in any worker's answer, and the switch that turns the counting off."""

from __future__ import annotations

import http.client
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import msgspec

from hotpath.metrics import ENDPOINTS, OUTCOMES, SUFFIX, BootCollector, BootMetrics
from tests.helpers.exposition import families, key, samples
from tests.helpers.paths import tmp_root
from tests.helpers.polling import wait_until
from tests.helpers.seed import seed_cluster


async def test_the_exposition_has_typed_families_with_bounded_labels(conn, boot_server):
    await seed_cluster(conn)
    server = boot_server()
    for path in ("/boot/v1/bootscript?mac=52:54:00:00:00:01", "/boot/v1/bootscript?mac=52:54:00:00:00:01",
                 "/boot/v1/bootscript?mac=02:00:00:00:00:99", "/cloud-init/node-1/meta-data", "/nowhere/x1000c0s0"):
        server.get(path)
    status, headers, body = server.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    found = families(body)
    requests = found["chamicore_boot_requests"]
    assert requests.type == "counter"
    # Every (endpoint, outcome) and nothing else: the raw path never becomes a label.
    assert {(s.labels["endpoint"], s.labels["outcome"]) for s in requests.samples} == {
        (e, o) for e in ENDPOINTS for o in OUTCOMES}
    counted = {(s.labels["endpoint"], s.labels["outcome"]): s.value for s in requests.samples if s.value}
    assert counted == {("bootscript", "ok"): 2, ("bootscript", "wait"): 1, ("cloud-init", "ok"): 1,
                       ("other", "not_found"): 1}
    latency = found["chamicore_boot_request_seconds"]
    assert latency.type == "histogram"
    ok = {s.labels.get("le"): s.value for s in latency.samples
          if s.labels["endpoint"] == "bootscript" and s.labels["outcome"] == "ok" and s.name.endswith("_bucket")}
    bounds = sorted(float(le) for le in ok)
    assert bounds[-1] == float("inf") and ok["+Inf"] == 2
    assert [ok[b] for b in sorted(ok, key=float)] == sorted(ok.values())  # cumulative buckets
    values = samples(body)
    assert values[key("chamicore_boot_request_seconds_count", endpoint="bootscript", outcome="ok")] == 2
    assert 0 < values[key("chamicore_boot_request_seconds_sum", endpoint="bootscript", outcome="ok")] < 1
    assert found["chamicore_boot_index_nodes"].type == "gauge" and values[key("chamicore_boot_index_nodes")] == 2
    assert values[key("chamicore_boot_feed_live")] == 1 and values[key("chamicore_boot_workers")] == 1
    assert found["chamicore_boot_feed_full_reloads"].type == "counter"
    assert values[key("chamicore_boot_feed_full_reloads_total")] >= 1
    assert values[key("chamicore_boot_index_build_seconds")] > 0
    assert all(name.startswith("chamicore_boot_") for name in found)


def _readiness_totals(url: str) -> int:
    """The request count of whichever worker answers /readiness (each counts its own there)."""
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=5)
    try:
        connection.request("GET", "/readiness")
        return msgspec.json.decode(connection.getresponse().read())["requests"]["total"]
    finally:
        connection.close()


def _ask_at_once(url: str, connections: int) -> None:
    """One boot request on each of `connections` connections opened together, so the workers share them."""
    opened = [http.client.HTTPConnection(url.removeprefix("http://"), timeout=5) for _ in range(connections)]
    try:
        for connection in opened:
            connection.connect()

        def ask(connection: http.client.HTTPConnection) -> int:
            connection.request("GET", "/boot/v1/bootscript?mac=52:54:00:00:00:01")
            response = connection.getresponse()
            response.read()
            return response.status

        with ThreadPoolExecutor(connections) as pool:
            assert set(pool.map(ask, opened)) == {200}
    finally:
        for connection in opened:
            connection.close()


async def test_any_of_two_workers_answers_for_both(conn, boot_server):
    await seed_cluster(conn)
    shared = tmp_root()
    server = boot_server(CHAMICORE_BOOT_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(shared))

    def scrape() -> dict:
        return samples(server.get("/metrics")[2])

    # Both workers run and have loaded their index (until then a worker tells every node to wait, which counts
    # under outcome="wait"): the least of their chamicore_boot_feed_live gauges is 1.
    wait_until(lambda: (found := scrape())[key("chamicore_boot_workers")] == 2
               and found[key("chamicore_boot_feed_live")] == 1, timeout=20, interval=0.2)
    sent = 0

    def both_served() -> bool:
        nonlocal sent
        _ask_at_once(server.url, 9)
        sent += 9
        totals = {_readiness_totals(server.url) for _ in range(12)}
        return any(a + b == sent for a in totals for b in totals if a and b and a != b)

    # Each worker answered part of the requests (what each says of itself on /readiness adds up to all).
    wait_until(both_served, timeout=30, interval=0)
    ok = key("chamicore_boot_requests_total", endpoint="bootscript", outcome="ok")
    # Every scrape, whichever worker it reaches, counts every request (a sibling's figures are at most 1 s old).
    wait_until(lambda: [scrape()[ok] for _ in range(8)] == [sent] * 8, timeout=10, interval=0.2)
    histogram = scrape()
    assert histogram[key("chamicore_boot_request_seconds_count", endpoint="bootscript", outcome="ok")] == sent
    assert histogram[key("chamicore_boot_index_nodes")] == 2  # a gauge: the workers' largest, not their sum
    # The operator's directory (PROMETHEUS_MULTIPROC_DIR) holds one file per worker.
    assert len(list(shared.glob(f"*{SUFFIX}"))) == 2


async def test_metrics_can_be_turned_off(conn, boot_server):
    await seed_cluster(conn)
    server = boot_server(CHAMICORE_METRICS="false")
    assert server.get("/boot/v1/bootscript?mac=52:54:00:00:00:01")[0] == 200
    status, headers, body = server.get("/metrics")
    assert status == 404 and headers["content-type"] == "application/problem+json"
    assert b"CHAMICORE_METRICS" in body
    assert "requests" not in msgspec.json.decode(server.get("/readiness")[2])  # nothing counted, none claimed


def test_a_stopped_worker_keeps_its_counts_and_drops_its_gauges():
    """Two workers' files in one directory, as `chamicore serve boot` lays them out; one of them has exited."""
    directory = tmp_root()
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                            check=True)
    gone = BootMetrics()
    gone.observe(0, 0, 0.0001)
    gone.observe(2, 1, 0.002)
    gone.update((500, 600, 1.0, 0.5, 0.0, 9.0, 3, 0.1), (1, 7, 3))  # its feed was down and slow
    (directory / f"{int(exited.stdout)}{SUFFIX}").write_bytes(gone.row(live=True).tobytes())  # killed outright

    own = BootMetrics()
    own.share(str(directory))
    own.observe(0, 0, 0.0001)
    collector = BootCollector(own, lambda: own.update((2, 2, 0.5, 0.2, 1.0, 0.01, 0, 0.0), (1, 2, 5)))
    values = {(s.name, frozenset(s.labels.items())): s.value for family in collector.collect() for s in family.samples}
    assert values[key("chamicore_boot_requests_total", endpoint="bootscript", outcome="ok")] == 2
    assert values[key("chamicore_boot_requests_total", endpoint="cloud-init", outcome="wait")] == 1
    assert values[key("chamicore_boot_feed_notifications_total")] == 9  # counts stay in the sums
    assert values[key("chamicore_boot_workers")] == 1
    # Its gauges leave: the feed is live (min over live workers), the lag and the index are the live worker's.
    assert values[key("chamicore_boot_feed_live")] == 1
    assert values[key("chamicore_boot_feed_lag_seconds")] == 0.01
    assert values[key("chamicore_boot_index_nodes")] == 2
    own.publish(live=False)
    assert own.path and memoryview(own.path.read_bytes()).cast("d")[0] == 0.0  # said it stopped
