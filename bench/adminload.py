"""Admin API figures at scale: bulk import rate, then GET and list latency at 50k components.

    python -m bench.adminload [--components 50000] [--requests 2000]

The admin API runs as `chamicore serve admin` (one worker, pinned to CPU 0
when there are two).  Imports go in batches of 10,000 nodes with their
interfaces.  Latency is measured one request at a time (no queueing); the
baseline is the same SQL sent straight through asyncpg, so the ratio is
what the API layer (HTTP, validation, envelope, JSON) adds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.bootstorm import RESULTS, ROOT, Server, cpus, free_port
from bench.fleet import ip_of, mac_of
from core import db, migrate
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir

BATCH = 10_000


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)


async def timed_requests(session: aiohttp.ClientSession, urls: list[str], concurrency: int = 1) -> list[float]:
    queue = list(urls)
    latencies: list[float] = []

    async def worker():
        while queue:
            url = queue.pop()
            started = time.perf_counter()
            async with session.get(url) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status}")
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def timed_sql(dsn: str, queries: list[tuple[str, tuple]], concurrency: int = 1) -> list[float]:
    pool = await db.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    latencies: list[float] = []
    queue = list(queries)

    async def worker():
        while queue:
            sql, args = queue.pop()
            started = time.perf_counter()
            async with pool.acquire() as conn:
                await conn.fetch(sql, *args)
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await pool.close()
    return latencies


async def admin_token(dsn: str, base: str) -> str:
    from admin_api.auth.accounts import create_account

    conn = await db.connect(dsn)
    secret = await create_account(conn, "bench-admin", ["admin"])
    await conn.close()
    async with aiohttp.ClientSession(base_url=base) as session, session.post("/auth/v1/token", data={
            "grant_type": "client_credentials", "client_id": "bench-admin", "client_secret": secret}) as response:
        return (await response.json())["access_token"]


async def run(dsn: str, base: str, components: int, requests: int) -> dict:
    results: dict = {}
    headers = {"Authorization": f"Bearer {await admin_token(dsn, base)}"}
    async with aiohttp.ClientSession(base_url=base, headers=headers) as session:
        started = time.perf_counter()
        for first in range(1, components + 1, BATCH):
            nodes = [{"id": f"node-{i}", "role": "Compute", "nid": i, "state": "Ready",
                      "location": {"rack": f"R{i // 40}", "unit": i % 40},
                      "networkInterfaces": [{"macAddr": mac_of(i), "ipAddrs": [{"ipAddress": ip_of(i)}]}]}
                     for i in range(first, min(first + BATCH, components + 1))]
            async with session.post("/hsm/v2/import", json=nodes) as response:
                body = await response.text()
                if response.status != 201:
                    raise RuntimeError(f"import failed: {response.status} {body[:300]}")
        elapsed = time.perf_counter() - started
        results["import"] = {"nodes": components, "seconds": round(elapsed, 2),
                             "nodes_per_s": round(components / elapsed)}
        print(f"bulk import: {results['import']}", flush=True)

        rng = random.Random(3)
        ids = [f"node-{rng.randint(1, components)}" for _ in range(requests)]
        offsets = [rng.randrange(0, components - 100) for _ in range(requests // 4)]
        get_ms = await timed_requests(session, [f"/hsm/v2/State/Components/{i}" for i in ids])
        list_ms = await timed_requests(session, [f"/hsm/v2/State/Components?limit=100&offset={o}&sort=id"
                                                 for o in offsets])
        keyset_ms = await timed_requests(session, [f"/hsm/v2/State/Components?limit=100&after=node-{o}"
                                                   for o in offsets])
        filter_ms = await timed_requests(session, [f"/hsm/v2/State/Components?rack=R{o // 40}&type=Node"
                                                   for o in offsets])
    from admin_api.smd.components import COLUMNS

    get_sql = await timed_sql(dsn, [(f"SELECT {COLUMNS} FROM smd.components WHERE id = $1", (i,)) for i in ids])
    list_sql = await timed_sql(dsn, [(f"SELECT {COLUMNS} FROM smd.components ORDER BY id LIMIT 100 OFFSET {o}", ())
                                     for o in offsets])
    for name, api, sql in (("get_one", get_ms, get_sql), ("list_page_100_offset", list_ms, list_sql),
                           ("list_page_100_keyset", keyset_ms, None), ("list_by_rack", filter_ms, None)):
        entry = {"requests": len(api), "p50_ms": pct(api, 0.5), "p99_ms": pct(api, 0.99),
                 "mean_ms": round(statistics.fmean(api), 3)}
        if sql:
            entry["sql_p50_ms"] = pct(sql, 0.5)
            entry["api_over_sql_p50"] = round(pct(api, 0.5) / max(pct(sql, 0.5), 1e-6), 1)
        results[name] = entry
        print(f"{name}: {entry}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--components", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=2_000)
    args = parser.parse_args()
    server_cpu, _ = cpus()
    work = Path(tempfile.mkdtemp(prefix="chamicore-adminbench-", dir="/tmp"))
    work.chmod(0o711)  # the PostgreSQL service user must reach its cluster below
    cluster = EmbeddedPostgres(work / "pg", port=free_port(), bin_dir=pgserver_bin_dir() or system_bin_dir(),
                               durable=False)
    cluster.start()
    try:
        async def prepare():
            conn = await db.connect(cluster.dsn)
            await migrate.migrate(conn)
            await conn.close()

        asyncio.run(prepare())
        port = free_port()
        server = Server("admin API", [*server_cpu, sys.executable, "-m", "cli.main", "serve", "admin"], port,
                        "/readiness", {"CHAMICORE_DATABASE_URL": cluster.dsn, "CHAMICORE_LOG_LEVEL": "warning",
                                       "CHAMICORE_ADMIN_LISTEN": f"127.0.0.1:{port}",
                                       "CHAMICORE_SECRET_KEY": secrets.token_urlsafe(32)})
        with server:
            results = asyncio.run(run(cluster.dsn, f"http://127.0.0.1:{port}", args.components, args.requests))
    finally:
        cluster.destroy()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "adminload.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
