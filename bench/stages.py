"""What recording boot stages costs the boot path: requests per second and p99 with CHAMICORE_BOOT_STAGES on and
off, in one run, and the memory the pending stages take per node.

    python -m bench.stages [--nodes 10000] [--duration 8] [--connections 1000] [--rounds 2] [--control]
                           [--storm] [--memory-nodes 100000] [--micro-only]

Two boot paths (`chamicore serve boot`, one worker each, both pinned to CPU 0) serve the same N seeded nodes,
one recording each node's stage (script, kernel-booted, cloud-init: every request of wrk's mix records one)
and one not.  wrk (on CPU 1) drives the usual mix of bootscript and cloud-init requests at each in turn,
off-on-on-off for every round, so the machine's drift falls on both alike; both flush to the same database.
`--control` runs the same alternation with stages off on both (an A/A run): the drift alone.

Memory: stages live in memory only between two flushes (2 s by default), for the nodes that asked meanwhile;
nothing stays after a flush.  Measured with tracemalloc: the bytes BootTelemetry holds for --memory-nodes
nodes that each showed every stage before one flush, divided by the nodes.

Per request: BootApp.record itself, timed in this process with stages on and off (alternating, pinned):
the added nanoseconds, set against the time a request takes at the measured rate.

Writes bench/results/stages.json.  No figure is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench.bootstorm import BASE_URL, RESULTS, ROOT, Server, cpus, free_port, run_storm, run_wrk
from bench.metrics import seed
from core.config import load_config
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir
from hotpath._dispatch import EP_BOOTSCRIPT, EP_CLOUD_INIT, OUT_OK
from hotpath.app import BootApp
from hotpath.telemetry import CLOUD_INIT, IPXE, KERNEL_BOOTED, READY, SCRIPT, BootTelemetry

TARGET = 0.95  # issue #21: within 5% of today's throughput and p99


def pending_bytes_per_node(nodes: int) -> float:
    """Bytes of BootTelemetry's pending stages for `nodes` nodes that each showed every stage since the last flush
    (the node ids are the index's own strings, not counted)."""
    ids = [f"node-{i}" for i in range(nodes)]
    recorder = BootTelemetry("postgresql://unused")
    now = time.time()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for node_id in ids:
        for stage in (IPXE, SCRIPT, KERNEL_BOOTED, CLOUD_INIT, READY):
            recorder.record_stage(node_id, stage, now + stage)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / nodes


def record_cost(calls: int, rounds: int) -> dict:
    """Nanoseconds BootApp.record takes per boot request with stages on and off, in this process (pinned to one
    CPU), alternating off-on-on-off: the per-request addition on its own, free of wrk's and the machine's noise.
    The mix is wrk's: a script, meta-data and user-data each a third, over 10,000 nodes; metrics off."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    app = BootApp(load_config({"CHAMICORE_DATABASE_URL": "postgresql://unused@127.0.0.1:1/none",
                               "CHAMICORE_BOOT_URL": BASE_URL}))
    app.count_requests = False
    ids = [f"node-{i}" for i in range(10_000)]
    mix = ((EP_BOOTSCRIPT, "/boot/v1/bootscript"), (EP_CLOUD_INIT, "/cloud-init/node/token/meta-data"),
           (EP_CLOUD_INIT, "/cloud-init/node/token/user-data"))
    requests = [(ids[i % len(ids)], *mix[i % 3]) for i in range(calls)]
    record = app.record
    runs: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(rounds):
        for setting in ("off", "on", "on", "off"):
            app.stages = setting == "on"
            started = time.perf_counter_ns()
            for node_id, endpoint, path in requests:
                record(0.0, node_id, endpoint, OUT_OK, "10.0.0.1:5000", False, path, None)
            runs[setting].append((time.perf_counter_ns() - started) / calls)
    on, off = statistics.median(runs["on"]), statistics.median(runs["off"])
    return {"record_ns_on": round(on), "record_ns_off": round(off), "added_ns_per_request": round(on - off),
            "runs_ns": {k: [round(v) for v in vs] for k, vs in runs.items()}}


def ms(text: str) -> float:
    return float(text.removesuffix("ms"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per run")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="off-on-on-off rounds")
    parser.add_argument("--control", action="store_true", help="both paths with stages off: the drift alone")
    parser.add_argument("--memory-nodes", type=int, default=100_000)
    parser.add_argument("--micro-only", action="store_true", help="only the in-process cost of record()")
    parser.add_argument("--storm", action="store_true",
                        help="bench.storm instead of wrk: every node boots once a run (its script, then its three "
                             "cloud-init documents), as in a real storm; wrk's random mix makes most nodes begin a "
                             "new boot in every flush")
    args = parser.parse_args()
    micro = record_cost(300_000, 3)
    print(f"record() per request: stages on {micro['record_ns_on']} ns, off {micro['record_ns_off']} ns, "
          f"added {micro['added_ns_per_request']} ns; runs {micro['runs_ns']}", flush=True)
    if args.micro_only:
        print(json.dumps(micro))
        return
    results: dict = {"nodes": args.nodes, "duration_s": args.duration, "connections": args.connections,
                     "control": args.control, "storm": args.storm, "runs": {"on": [], "off": []},
                     "pending_bytes_per_node": round(pending_bytes_per_node(args.memory_nodes), 1),
                     "memory_nodes": args.memory_nodes, **micro}
    print(f"pending stages: {results['pending_bytes_per_node']} bytes/node at {args.memory_nodes:,} nodes "
          f"(held until the next flush only)", flush=True)
    server_cpu, client_cpu = cpus()
    work = Path(tempfile.mkdtemp(prefix="chamicore-stagesbench-", dir="/tmp"))
    work.chmod(0o711)  # the PostgreSQL service user must reach its cluster below
    cluster = EmbeddedPostgres(work / "pg", port=free_port(), bin_dir=pgserver_bin_dir() or system_bin_dir(),
                               durable=False)
    cluster.start()
    try:
        asyncio.run(seed(cluster.dsn, args.nodes))
        common = {"CHAMICORE_DATABASE_URL": cluster.dsn, "CHAMICORE_BOOT_URL": BASE_URL,
                  "CHAMICORE_LOG_LEVEL": "warning", "CHAMICORE_BOOT_WORKERS": "1"}
        ports = {"on": free_port(), "off": free_port()}
        servers = {setting: Server(f"boot path, stages {setting}",
                                   [*server_cpu, sys.executable, "-m", "cli.main", "serve", "boot"], port, "/readiness",
                                   {**common, "CHAMICORE_BOOT_LISTEN": f"127.0.0.1:{port}",
                                    "CHAMICORE_BOOT_STAGES": "true" if setting == "on" and not args.control else "false"})
                   for setting, port in ports.items()}
        with servers["on"], servers["off"]:
            for _ in range(args.rounds):
                for setting in ("off", "on", "on", "off"):
                    if args.storm:
                        storm = run_storm(ports[setting], args.nodes, args.nodes, client_cpu)
                        run = {"req_per_s": storm.get("req_per_s", 0), "p99": f"{storm.get('p99_ms', 0)}ms",
                               "errors": storm.get("errors"), "answered": storm.get("answered_connections")}
                    else:
                        run = run_wrk(ports[setting], args.nodes, args.connections, args.duration, client_cpu, work)
                    results["runs"][setting].append(run)
                    print(f"stages {setting:3}: {run}", flush=True)
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    runs = results["runs"]
    on = statistics.mean(run["req_per_s"] for run in runs["on"])
    off = statistics.mean(run["req_per_s"] for run in runs["off"])
    p99_on = statistics.mean(ms(run["p99"]) for run in runs["on"])
    p99_off = statistics.mean(ms(run["p99"]) for run in runs["off"])
    spread = {s: round((max(r["req_per_s"] for r in runs[s]) - min(r["req_per_s"] for r in runs[s]))
                       / statistics.mean(r["req_per_s"] for r in runs[s]), 3) for s in runs}
    results.update(on_req_per_s=round(on), off_req_per_s=round(off), ratio=round(on / off, 3),
                   p99_on_ms=round(p99_on, 2), p99_off_ms=round(p99_off, 2), p99_ratio=round(p99_on / p99_off, 3),
                   spread_within_setting=spread, target=TARGET)
    label = "control (stages off on both): " if args.control else ""
    print(f"{label}stages on: {on:,.0f} req/s   off: {off:,.0f} req/s   ratio {on / off:.3f} (target >= {TARGET}); "
          f"p99 on {p99_on:.2f} ms off {p99_off:.2f} ms; spread of runs within a setting {spread}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "stages" + ("-storm" if args.storm else "") + ("-control" if args.control else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
