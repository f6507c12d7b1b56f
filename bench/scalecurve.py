"""Boot-path throughput as the cluster grows: it should stay flat (one dict lookup).

    python -m bench.scalecurve [--sizes 1000,10000,100000] [--duration 5]

For each size: a fresh database with that many nodes, the boot path
(granian RSGI, one worker, CPU 0), wrk with 1,000 connections on CPU 1
asking random nodes' scripts and cloud-init documents.  Prints req/s per
size and the ratio to the smallest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from bench.bootstorm import BASE_URL, RESULTS, Server, cpus, free_port, run_wrk
from bench.fleet import seed
from core import db, migrate
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir
from tests.helpers.postgres import create_database


async def prepare(cluster: EmbeddedPostgres, nodes: int) -> str:
    dsn = await create_database(cluster, "postgres")
    conn = await db.connect(dsn)
    await migrate.migrate(conn)
    await seed(conn, nodes)
    await conn.close()
    return dsn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    server_cpu, client_cpu = cpus()
    work = Path(tempfile.mkdtemp(prefix="chamicore-scale-", dir="/tmp"))
    work.chmod(0o711)  # the PostgreSQL service user must reach its cluster below
    cluster = EmbeddedPostgres(work / "pg", port=free_port(), bin_dir=pgserver_bin_dir() or system_bin_dir(),
                               durable=False)
    cluster.start()
    curve = []
    try:
        for nodes in (int(s) for s in args.sizes.split(",")):
            dsn = asyncio.run(prepare(cluster, nodes))
            port = free_port()
            server = Server("boot path", [*server_cpu, sys.executable, "-m", "cli.main", "serve", "boot"], port,
                            "/readiness", {"CHAMICORE_DATABASE_URL": dsn, "CHAMICORE_BOOT_URL": BASE_URL,
                                           "CHAMICORE_LOG_LEVEL": "warning",
                                           "CHAMICORE_BOOT_LISTEN": f"127.0.0.1:{port}"})
            with server:
                result = run_wrk(port, nodes, 1000, args.duration, client_cpu, work)
            curve.append({"nodes": nodes, **result})
            print(f"{nodes:>8,} nodes: {result['req_per_s']:>7,} req/s  p50 {result['p50']}  p99 {result['p99']}  "
                  f"errors {result['socket_errors'] + result['non_2xx']}", flush=True)
    finally:
        cluster.destroy()
    base = curve[0]["req_per_s"]
    for point in curve:
        print(f"{point['nodes']:>8,} nodes: {point['req_per_s'] / base:.2f} of the {curve[0]['nodes']:,}-node rate")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scalecurve.json").write_text(json.dumps(curve, indent=2))


if __name__ == "__main__":
    main()
