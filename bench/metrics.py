"""What the boot path's metrics cost it: requests per second with CHAMICORE_METRICS on and off, in one run.

    python -m bench.metrics [--nodes 10000] [--duration 8] [--connections 1000] [--rounds 2] [--control]

Two boot paths serve the same N seeded nodes, one counting its requests for /metrics and one not
(CHAMICORE_METRICS=false), compared in one run by bench.alternate.  Printed: requests per second of each run,
the mean of each setting and their ratio (on / off; the issue's target is 0.97 or more), and, as a check that
the counting counted, the requests the metrics-on path's /metrics reports against the ones wrk sent it.

`--control` runs the same alternation with metrics off on both paths (an A/A run): its ratio is what the
machine's drift alone gives, the resolution to read the real ratio with.

Writes bench/results/metrics.json.  No figure is asserted.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from bench.alternate import alternate, arguments, boot_env, cpu_figures, private_cluster, seed
from bench.bootstorm import RESULTS, ROOT

TARGET = 0.97


def counted(port: int) -> int:
    """Boot requests the path's /metrics reports, read with prometheus_client's parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return int(sum(sample.value for family in text_string_to_metric_families(text)
                   if family.name == "chamicore_boot_requests" for sample in family.samples
                   if sample.name == "chamicore_boot_requests_total"))


def main() -> None:
    args = arguments(__doc__, "metrics").parse_args()
    with private_cluster("metricsbench") as (cluster, work):
        asyncio.run(seed(cluster.dsn, args.nodes))
        envs = {setting: boot_env(cluster.dsn, CHAMICORE_METRICS="true" if setting == "on" and not args.control
                                  else "false") for setting in ("on", "off")}
        results = alternate("metrics", envs, nodes=args.nodes, connections=args.connections, duration=args.duration,
                            rounds=args.rounds, work=work, storm=args.storm,
                            during=lambda servers: {"counted_on": 0 if args.control else counted(servers["on"].port)})
    sent_on = sum(round(run["req_per_s"] * args.duration) for run in results["runs"]["on"])
    results.update(nodes=args.nodes, duration_s=args.duration, connections=args.connections, control=args.control,
                   target=TARGET)
    label = "control (metrics off on both): " if args.control else ""
    print(f"{label}metrics on: {results['on_req_per_s']:,} req/s   off: {results['off_req_per_s']:,} req/s   "
          f"ratio {results['ratio']:.3f} (target >= {TARGET}); p99 ratio {results['p99_ratio']:.3f}; "
          f"spread of runs within a setting {results['spread_within_setting']}; {cpu_figures(results)}")
    if not args.control:
        print(f"/metrics counted {results['counted_on']:,} boot requests; wrk sent about {sent_on:,}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("metrics-control.json" if args.control else "metrics.json")).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
