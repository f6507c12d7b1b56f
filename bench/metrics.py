"""What the boot path's metrics cost it: requests per second with CHAMICORE_METRICS on and off, in one run.

    python -m bench.metrics [--nodes 10000] [--duration 8] [--connections 1000] [--rounds 2] [--control]

Two boot paths (`chamicore serve boot`, one worker each, both pinned to CPU 0) serve the same N seeded nodes,
one counting its requests for /metrics and one not (CHAMICORE_METRICS=false).  wrk (on CPU 1) drives the
usual mix of bootscript and cloud-init requests at each in turn, off-on-on-off for every round, so the
machine's drift falls on both alike.  Printed: requests per second of each run, the mean of each setting and
their ratio (on / off; the issue's target is 0.97 or more), and, as a check that the counting counted, the
requests the metrics-on path's /metrics reports against the ones wrk sent it.

`--control` runs the same alternation with metrics off on both paths (an A/A run): its ratio is what the
machine's drift alone gives, the resolution to read the real ratio with.  On a quiet 2-core machine a run of
wrk varies by about 10% from the next, so use several rounds.

Writes bench/results/metrics.json.  No figure is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench import fleet
from bench.bootstorm import BASE_URL, RESULTS, ROOT, Server, cpus, free_port, run_wrk
from core import db, migrate
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir

TARGET = 0.97


async def seed(dsn: str, nodes: int) -> None:
    conn = await db.connect(dsn)
    await migrate.migrate(conn)
    await conn.execute("SET session_replication_role = replica")  # no one listens to the seed's NOTIFYs
    await fleet.seed(conn, nodes)
    await conn.execute("RESET session_replication_role")
    await conn.execute("VACUUM ANALYZE")
    await conn.close()


def counted(port: int) -> int:
    """Boot requests the path's /metrics reports, read with prometheus_client's parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return int(sum(sample.value for family in text_string_to_metric_families(text)
                   if family.name == "chamicore_boot_requests" for sample in family.samples
                   if sample.name == "chamicore_boot_requests_total"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per run")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="off-on-on-off rounds")
    parser.add_argument("--control", action="store_true", help="both paths with metrics off: the drift alone")
    args = parser.parse_args()
    server_cpu, client_cpu = cpus()
    work = Path(tempfile.mkdtemp(prefix="chamicore-metricsbench-", dir="/tmp"))
    work.chmod(0o711)  # the PostgreSQL service user must reach its cluster below
    cluster = EmbeddedPostgres(work / "pg", port=free_port(), bin_dir=pgserver_bin_dir() or system_bin_dir(),
                               durable=False)
    cluster.start()
    results: dict = {"nodes": args.nodes, "duration_s": args.duration, "connections": args.connections,
                     "control": args.control, "runs": {"on": [], "off": []}}
    try:
        asyncio.run(seed(cluster.dsn, args.nodes))
        common = {"CHAMICORE_DATABASE_URL": cluster.dsn, "CHAMICORE_BOOT_URL": BASE_URL,
                  "CHAMICORE_LOG_LEVEL": "warning", "CHAMICORE_BOOT_WORKERS": "1"}
        ports = {"on": free_port(), "off": free_port()}
        servers = {setting: Server(f"boot path, metrics {setting}",
                                   [*server_cpu, sys.executable, "-m", "cli.main", "serve", "boot"], port, "/readiness",
                                   {**common, "CHAMICORE_BOOT_LISTEN": f"127.0.0.1:{port}",
                                    "CHAMICORE_METRICS": "true" if setting == "on" and not args.control else "false"})
                   for setting, port in ports.items()}
        sent_on = 0
        with servers["on"], servers["off"]:
            for _ in range(args.rounds):
                for setting in ("off", "on", "on", "off"):
                    run = run_wrk(ports[setting], args.nodes, args.connections, args.duration, client_cpu, work)
                    results["runs"][setting].append(run)
                    if setting == "on":
                        sent_on += round(run["req_per_s"] * args.duration)
                    print(f"metrics {setting:3}: {run}", flush=True)
            results["counted_on"] = 0 if args.control else counted(ports["on"])
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    on = statistics.mean(run["req_per_s"] for run in results["runs"]["on"])
    off = statistics.mean(run["req_per_s"] for run in results["runs"]["off"])
    results.update(on_req_per_s=round(on), off_req_per_s=round(off), ratio=round(on / off, 3), target=TARGET)
    label = "control (metrics off on both): " if args.control else ""
    print(f"{label}metrics on: {on:,.0f} req/s   off: {off:,.0f} req/s   ratio {on / off:.3f} (target >= {TARGET})")
    if not args.control:
        print(f"/metrics counted {results['counted_on']:,} boot requests; wrk sent about {sent_on:,}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("metrics-control.json" if args.control else "metrics.json")).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
