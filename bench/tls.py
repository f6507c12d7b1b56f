"""The boot path over HTTPS against HTTP: one `chamicore serve boot` serving both listeners, in one run.

    python -m bench.tls [--nodes 10000] [--duration 10] [--rounds 2] [--connections 1000]

Starts a private PostgreSQL with N registered nodes and the boot path with
its HTTPS listener (a certificate from a throwaway CA), one worker per
listener pinned to CPU 0, wrk on CPU 1.  wrk asks the bootstorm mix (a
bootscript or a cloud-init document) over http and https in turn, `--rounds`
times, on kept-alive connections (each pays one TLS handshake, then only
encryption).  Prints a Markdown table and writes bench/results/tls-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import shutil
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

from bench.bootstorm import BASE_URL, RESULTS, Server, cpus, free_port, prepare_database, run_wrk
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir
from tests.helpers.tls import TestCA


def wait_tls(port: int, cafile: Path, timeout: float = 60) -> None:
    context = ssl.create_default_context(cafile=str(cafile))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
                    context.wrap_socket(raw, server_hostname="127.0.0.1"):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"no TLS listener on {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per run")
    parser.add_argument("--rounds", type=int, default=2, help="http/https pairs, alternated")
    parser.add_argument("--connections", type=int, default=1000)
    args = parser.parse_args()
    server_cpu, client_cpu = cpus()
    work = Path(tempfile.mkdtemp(prefix="chamicore-bench-tls-", dir="/tmp"))
    work.chmod(0o711)  # the PostgreSQL service user must reach its cluster below
    cluster = EmbeddedPostgres(work / "pg", port=free_port(), bin_dir=pgserver_bin_dir() or system_bin_dir(),
                               durable=False)
    cluster.start()
    runs: list[dict] = []
    try:
        asyncio.run(prepare_database(cluster, args.nodes))
        ca = TestCA(work)
        cert, key = ca.issue("boot")
        http_port, https_port = free_port(), free_port()
        env = {"CHAMICORE_DATABASE_URL": cluster.dsn, "CHAMICORE_LOG_LEVEL": "warning", "CHAMICORE_BOOT_WORKERS": "1",
               "CHAMICORE_BOOT_LISTEN": f"127.0.0.1:{http_port}", "CHAMICORE_BOOT_URL": BASE_URL,
               "CHAMICORE_BOOT_TLS_LISTEN": f"127.0.0.1:{https_port}", "CHAMICORE_BOOT_TLS_URL": "https://boot",
               "CHAMICORE_BOOT_TLS_CERT": str(cert), "CHAMICORE_BOOT_TLS_KEY": str(key)}
        # taskset on `serve boot` pins both listeners' processes (children inherit the CPU set).
        with Server("boot path, http and https", [*server_cpu, sys.executable, "-m", "cli.main", "serve", "boot"],
                    http_port, "/readiness", env):
            wait_tls(https_port, ca.path)
            for round_ in range(args.rounds):
                for scheme, port in (("http", http_port), ("https", https_port)):
                    figures = run_wrk(f"{scheme}://127.0.0.1:{port}", args.nodes, args.connections,
                                      args.duration, client_cpu, work)
                    runs.append({"round": round_ + 1, "scheme": scheme, **figures})
                    print(f"   round {round_ + 1} {scheme}: {figures}", flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"tls-{stamp}.json").write_text(json.dumps({"nodes": args.nodes, "connections": args.connections,
                                                           "duration": args.duration, "runs": runs}, indent=2))
    print("\n| round | scheme | req/s | p50 | p99 | errors |\n|---|---|---|---|---|---|")
    for run in runs:
        print(f"| {run['round']} | {run['scheme']} | {run['req_per_s']:,} | {run['p50']} | {run['p99']} | "
              f"{run['socket_errors'] + run['non_2xx']} |")
    for round_ in range(1, args.rounds + 1):
        pair = {r["scheme"]: r["req_per_s"] for r in runs if r["round"] == round_}
        print(f"round {round_}: https/http = {pair['https'] / pair['http']:.2f}")


if __name__ == "__main__":
    main()
