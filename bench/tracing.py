"""Admin request overhead of tracing: the same GETs and PATCHes through two admin servers, one with
CHAMICORE_OTEL_ENDPOINT unset and one exporting every span to a local OTLP/HTTP sink, in one run.

    python -m bench.tracing [--requests 400] [--rounds 4]

Both servers run `chamicore serve admin` (one worker each, pinned to CPU 0
when there are two) against one PostgreSQL; the client sends one request at
a time, alternating which server goes first in each round, so drift between
moments falls on both.  A PATCH writes a boot parameter (its SQL, the outbox
row, the change-feed trigger), a GET reads one.  Figures are per request
latency, median and p95, and the ratio traced / untraced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.adminload import admin_token, pct
from bench.bootstorm import RESULTS, ROOT, Server, cpus, free_port
from core import db, migrate
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir
from tests.helpers.otlp import OtlpReceiver

ENTRIES = 50  # boot parameters read and written in turn


async def timed(session: aiohttp.ClientSession, method: str, paths: list[str], body=None) -> list[float]:
    latencies = []
    for i, path in enumerate(paths):
        started = time.perf_counter()
        async with session.request(method, path, json=body(i) if body else None) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: HTTP {response.status}")
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def seed(session: aiohttp.ClientSession) -> None:
    for i in range(ENTRIES):
        spec = {"componentId": f"node-{i}", "kernel": "http://images.example/vmlinuz", "cmdline": "quiet"}
        async with session.post("/boot/v1/bootparams", json={"metadata": {"id": f"bp-{i}"}, "spec": spec}) as answer:
            if answer.status != 201:
                raise RuntimeError(f"seeding: HTTP {answer.status} {await answer.text()}")


async def run(dsn: str, bases: dict[str, str], requests: int, rounds: int) -> dict:
    samples: dict[tuple[str, str], list[float]] = {(mode, verb): [] for mode in bases for verb in ("GET", "PATCH")}
    # One issuer and one key for both servers: a token from one is good at the other.
    headers = {"Authorization": f"Bearer {await admin_token(dsn, bases['off'])}"}
    sessions = {mode: aiohttp.ClientSession(base_url=base, headers=headers) for mode, base in bases.items()}
    try:
        await seed(sessions["off"])
        per_round = max(1, requests // rounds)
        paths = [f"/boot/v1/bootparams/bp-{i % ENTRIES}" for i in range(per_round)]
        for round_number in range(rounds):
            order = list(bases) if round_number % 2 == 0 else list(reversed(bases))
            for mode in order:
                samples[mode, "GET"] += await timed(sessions[mode], "GET", paths)
                samples[mode, "PATCH"] += await timed(
                    sessions[mode], "PATCH", paths,
                    lambda i, r=round_number, m=mode: {"spec": {"cmdline": f"quiet r{r} {m} {i}"}})
    finally:
        for session in sessions.values():
            await session.close()
    results: dict = {}
    for verb in ("GET", "PATCH"):
        off, on = samples["off", verb], samples["on", verb]
        results[verb] = {
            "requests_each": len(off),
            "off_median_ms": pct(off, 0.5), "off_p95_ms": pct(off, 0.95),
            "on_median_ms": pct(on, 0.5), "on_p95_ms": pct(on, 0.95),
            "on_over_off_median": round(statistics.median(on) / statistics.median(off), 3),
            "on_over_off_p95": round(pct(on, 0.95) / max(pct(off, 0.95), 1e-6), 3),
        }
        print(f"{verb}: {results[verb]}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests of each kind per server")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    server_cpu, _ = cpus()
    work = Path(tempfile.mkdtemp(prefix="chamicore-tracingbench-", dir="/tmp"))
    work.chmod(0o711)  # the PostgreSQL service user must reach its cluster below
    cluster = EmbeddedPostgres(work / "pg", port=free_port(), bin_dir=pgserver_bin_dir() or system_bin_dir(),
                               durable=False)
    cluster.start()
    sink = OtlpReceiver().start()
    try:
        async def prepare():
            conn = await db.connect(cluster.dsn)
            await migrate.migrate(conn)
            await conn.executemany("INSERT INTO smd.components (id, type, state, role) "
                                   "VALUES ($1, 'Node', 'Ready', 'Compute')", [(f"node-{i}",) for i in range(ENTRIES)])
            await conn.close()

        asyncio.run(prepare())
        key = secrets.token_urlsafe(32)
        servers, bases = [], {}
        for mode in ("off", "on"):
            port = free_port()
            env = {"CHAMICORE_DATABASE_URL": cluster.dsn, "CHAMICORE_LOG_LEVEL": "warning",
                   "CHAMICORE_ADMIN_LISTEN": f"127.0.0.1:{port}", "CHAMICORE_SECRET_KEY": key,
                   "CHAMICORE_ISSUER": "http://bench-admin"}
            if mode == "on":
                env["CHAMICORE_OTEL_ENDPOINT"] = sink.url
            servers.append(Server(f"admin API, tracing {mode}", [*server_cpu, sys.executable, "-m", "cli.main",
                                                                 "serve", "admin"], port, "/readiness", env))
            bases[mode] = f"http://127.0.0.1:{port}"
        with servers[0], servers[1]:
            results = asyncio.run(run(cluster.dsn, bases, args.requests, args.rounds))
        # Stopped: the traced server flushed its last batch.
        results["spans_exported"] = len(sink.spans)
        results["span_services"] = sorted({span.service for span in sink.spans})
    finally:
        sink.stop()
        cluster.destroy()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tracing.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
