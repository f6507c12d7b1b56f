"""What recording boot stages costs the boot path: requests per second and p99 with CHAMICORE_BOOT_STAGES on and
off, in one run, and the memory each node's activity record takes.

    python -m bench.stages [--nodes 10000] [--duration 8] [--connections 1000] [--rounds 2] [--control]
                           [--storm] [--memory-nodes 100000] [--micro-only]

Two boot paths (`chamicore serve boot`, one worker each, both pinned to CPU 0) serve the same N seeded nodes,
one recording each node's stage (script, kernel-booted, cloud-init: every request of wrk's mix records one)
and one not.  wrk (on CPU 1) drives the usual mix of bootscript and cloud-init requests at each in turn,
off-on-on-off for every round, so the machine's drift falls on both alike; both flush to the same database.
`--control` runs the same alternation with stages off on both (an A/A run): the drift alone.

Memory: a node's request and stages since the last flush live in one compiled record per node
(hotpath/_activity.pyx), kept for the worker's life (it is also when the node's row was last written).
Measured with tracemalloc: the bytes BootTelemetry holds for --memory-nodes nodes that each sent a request and
showed every stage, divided by the nodes, and what a flush gives back.

Per request: BootApp.record itself, timed in this process with stages on and off (alternating, pinned):
the added nanoseconds, set against the time a request takes at the measured rate.

Writes bench/results/stages.json.  No figure is asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import tracemalloc

from bench.alternate import alternate, arguments, boot_env, cpu_figures, private_cluster, seed
from bench.bootstorm import BASE_URL, RESULTS, ROOT
from core.config import load_config
from hotpath._dispatch import EP_BOOTSCRIPT, EP_CLOUD_INIT, OUT_OK
from hotpath.app import BootApp
from hotpath.telemetry import CLOUD_INIT, IPXE, KERNEL_BOOTED, READY, SCRIPT, BootTelemetry

TARGET = 0.95  # issue #21: within 5% of today's throughput and p99


def activity_bytes_per_node(nodes: int) -> tuple[float, float]:
    """Bytes of BootTelemetry's records for `nodes` nodes that each sent a request and showed every stage (the node
    ids are the index's own strings, not counted), before and after a flush took their rows and marks."""
    ids = [f"node-{i}" for i in range(nodes)]
    recorder = BootTelemetry("postgresql://unused")
    now = time.time()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for node_id in ids:
        recorder.record(node_id, 0, now, f"10.0.{len(node_id)}.1:68")
        for stage in (IPXE, SCRIPT, KERNEL_BOOTED, CLOUD_INIT, READY):
            recorder.record_stage(node_id, stage, now + stage)
    pending = tracemalloc.get_traced_memory()[0]
    taken = (recorder.activity.take_due(time.monotonic(), 0.0, True), recorder.activity.take_stages())
    del taken
    kept = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (pending - before) / nodes, (kept - before) / nodes


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


def main() -> None:
    parser = arguments(__doc__, "stages")
    parser.add_argument("--memory-nodes", type=int, default=100_000)
    parser.add_argument("--micro-only", action="store_true", help="only the in-process cost of record()")
    args = parser.parse_args()
    micro = record_cost(300_000, 3)
    print(f"record() per request: stages on {micro['record_ns_on']} ns, off {micro['record_ns_off']} ns, "
          f"added {micro['added_ns_per_request']} ns; runs {micro['runs_ns']}", flush=True)
    if args.micro_only:
        print(json.dumps(micro))
        return
    results: dict = {"nodes": args.nodes, "duration_s": args.duration, "connections": args.connections,
                     "control": args.control, "storm": args.storm, "runs": {"on": [], "off": []},
                     "memory_nodes": args.memory_nodes, **micro}
    pending, kept = activity_bytes_per_node(args.memory_nodes)
    results.update(pending_bytes_per_node=round(pending, 1), kept_bytes_per_node=round(kept, 1))
    print(f"activity records: {results['pending_bytes_per_node']} bytes/node at {args.memory_nodes:,} nodes with a "
          f"request and every stage pending, {results['kept_bytes_per_node']} bytes/node kept after a flush",
          flush=True)
    with private_cluster("stagesbench") as (cluster, work):
        asyncio.run(seed(cluster.dsn, args.nodes))
        envs = {setting: boot_env(cluster.dsn, CHAMICORE_BOOT_STAGES="true" if setting == "on" and not args.control
                                  else "false") for setting in ("on", "off")}
        results.update(alternate("stages", envs, nodes=args.nodes, connections=args.connections,
                                 duration=args.duration, rounds=args.rounds, work=work, storm=args.storm))
    on, off = results["on_req_per_s"], results["off_req_per_s"]
    p99_on, p99_off, spread = results["p99_on_ms"], results["p99_off_ms"], results["spread_within_setting"]
    results["target"] = TARGET
    label = "control (stages off on both): " if args.control else ""
    print(f"{label}stages on: {on:,.0f} req/s   off: {off:,.0f} req/s   ratio {on / off:.3f} (target >= {TARGET}); "
          f"p99 on {p99_on:.2f} ms off {p99_off:.2f} ms; spread of runs within a setting {spread}; "
          f"{cpu_figures(results)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "stages" + ("-storm" if args.storm else "") + ("-control" if args.control else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
