"""coresmd's poll at scale: the two whole collections of the OpenCHAMI face, N nodes with one interface each.

    python -m bench.openchami_poll [--nodes 100000] [--rounds 5]

coresmd asks SMD for every Ethernet interface and every component every 30 s
(no token, no filter).  The admin API runs as `chamicore serve admin` (one
worker, pinned to CPU 0 when there are two) with CHAMICORE_OPENCHAMI_PUBLIC_READS
on; each GET goes over a real socket and is read to the last byte.  Measured
in the same run, as baselines:

- the native paged listing of the same interfaces (limit 10,000, every page),
  what a client of the native API would do for the same rows;
- the bare SQL fetch of the same rows through asyncpg (no JSON at all);
- building the face's JSON in Python instead (fetch the rows, msgspec encode):
  the alternative to the PostgreSQL-built JSON the face uses.

Prints median milliseconds, megabytes and rows per second, and the ratios;
writes bench/results/openchami_poll.json.  No figure is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import msgspec

from bench import fleet
from bench.adminload import admin_token
from bench.bootstorm import RESULTS, ROOT, Server, cpus, free_port
from core import db, migrate
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir

FACE = "/openchami/hsm/v2"
NATIVE_PAGE = 10_000
ROWS_SQL = ("SELECT i.id, i.description, i.mac, i.updated_at, i.component_id, c.type, i.ip_addrs "
            "FROM smd.ethernet_interfaces i JOIN smd.components c ON c.id = i.component_id")


class Address(msgspec.Struct, omit_defaults=True):
    IPAddress: str
    Network: str = ""


class Interface(msgspec.Struct):
    ID: str
    Description: str
    MACAddress: str
    LastUpdate: datetime.datetime
    ComponentID: str
    Type: str
    IPAddresses: list[Address]


async def python_built(conn) -> bytes:
    """The face's interface list built the other way: rows into Python, msgspec out."""
    from admin_api.openchami.smd_values import openchami_type

    rows = await conn.fetch(ROWS_SQL)
    return msgspec.json.encode([
        Interface(r["id"], r["description"], r["mac"], r["updated_at"], r["component_id"],
                  openchami_type(r["component_id"], r["type"]),
                  [Address(a["ipAddress"], a.get("network", "")) for a in r["ip_addrs"]]) for r in rows])


async def sql_built(conn) -> bytes:
    """The face's interface list as it builds it (admin_api/openchami/smd.py)."""
    from admin_api.collection import Where
    from admin_api.openchami.smd_json import INTERFACE, INTERFACES_FROM, json_list

    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return b"[" + await json_list(conn, INTERFACE, INTERFACES_FROM, Where()) + b"]"


async def timed(work, rounds: int) -> tuple[list[float], int]:
    """Milliseconds of each round, and the bytes the last one produced."""
    times, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        size = await work()
        times.append((time.perf_counter() - started) * 1000)
    return times, size


def figures(name: str, times: list[float], size: int, rows: int) -> dict:
    median = statistics.median(times)
    entry = {"median_ms": round(median, 1), "min_ms": round(min(times), 1), "mb": round(size / 1e6, 2),
             "rows_per_s": round(rows / (median / 1000))}
    print(f"{name:<44} {entry['median_ms']:>9.1f} ms  (min {entry['min_ms']:.1f})  {entry['mb']:>6.2f} MB  "
          f"{entry['rows_per_s']:>10,} rows/s", flush=True)
    return entry


async def run(dsn: str, base: str, nodes: int, rounds: int) -> dict:
    results: dict = {"nodes": nodes, "rounds": rounds}
    token = await admin_token(dsn, base)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(base_url=base, timeout=timeout) as anonymous, \
            aiohttp.ClientSession(base_url=base, timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"}) as client:
        async def get(session, path: str, expect: int) -> int:
            async with session.get(path, headers={"User-Agent": "Go-http-client/1.1"}) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{path}: HTTP {response.status} {body[:200]!r}")
            # One key per object, counted without decoding 20 MB inside the timed region.
            count = body.count(b'"MACAddress":' if body.startswith(b"[") else b'{"ID":')
            if count != expect:
                raise RuntimeError(f"{path}: {count} rows, expected {expect}")
            return len(body)

        async def native_pages() -> int:
            size = 0
            for offset in range(0, nodes, NATIVE_PAGE):
                async with client.get("/hsm/v2/Inventory/EthernetInterfaces",
                                      params={"limit": NATIVE_PAGE, "offset": offset, "sort": "id"}) as response:
                    body = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"native page {offset}: HTTP {response.status}")
                    size += len(body)
            return size

        polls = (("coresmd poll: interfaces (no token)", anonymous, "/Inventory/EthernetInterfaces"),
                 ("coresmd poll: components (no token)", anonymous, "/State/Components"),
                 ("face, full: interfaces (token)", client, "/Inventory/EthernetInterfaces"),
                 ("face, full: components (token)", client, "/State/Components"))
        for name, session, path in polls:
            times, size = await timed(lambda s=session, p=path: get(s, FACE + p, nodes), rounds)
            results[name] = figures(name, times, size, nodes)
        times, size = await timed(native_pages, rounds)
        results["native paged listing: interfaces"] = figures("native paged listing: interfaces (token)", times,
                                                              size, nodes)

    conn = await db.connect(dsn)
    try:
        async def raw_rows() -> int:
            return len(await conn.fetch(ROWS_SQL))

        async def built(build) -> int:
            return len(await build(conn))

        times, _ = await timed(raw_rows, rounds)
        results["raw SQL fetch: interfaces"] = figures("raw SQL fetch: interfaces (asyncpg rows)", times, 0, nodes)
        for name, build in (("in-process, JSON by PostgreSQL", sql_built), ("in-process, JSON by msgspec", python_built)):
            times, size = await timed(lambda b=build: built(b), rounds)
            results[name] = figures(f"{name}: interfaces", times, size, nodes)
    finally:
        await conn.close()

    def ratio(a: str, b: str) -> float:
        return round(results[a]["median_ms"] / results[b]["median_ms"], 2)

    results["ratios"] = {
        "poll_over_native_paged": ratio("face, full: interfaces (token)", "native paged listing: interfaces"),
        "poll_over_raw_sql": ratio("face, full: interfaces (token)", "raw SQL fetch: interfaces"),
        "postgres_json_over_msgspec_json": ratio("in-process, JSON by PostgreSQL", "in-process, JSON by msgspec"),
    }
    for name, value in results["ratios"].items():
        print(f"ratio {name}: x{value}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    server_cpu, _ = cpus()
    work = Path(tempfile.mkdtemp(prefix="chamicore-pollbench-", dir="/tmp"))
    work.chmod(0o711)  # the PostgreSQL service user must reach its cluster below
    cluster = EmbeddedPostgres(work / "pg", port=free_port(), bin_dir=pgserver_bin_dir() or system_bin_dir(),
                               durable=False)
    cluster.start()
    try:
        async def prepare():
            conn = await db.connect(cluster.dsn)
            await migrate.migrate(conn)
            # The change feed's triggers would NOTIFY every seeded key; no one listens here.
            await conn.execute("SET session_replication_role = replica")
            await fleet.seed(conn, args.nodes)
            await conn.execute("RESET session_replication_role")
            await conn.execute("VACUUM ANALYZE")
            await conn.close()

        started = time.perf_counter()
        asyncio.run(prepare())
        print(f"seeded {args.nodes:,} nodes with one interface each in {time.perf_counter() - started:.1f} s",
              flush=True)
        port = free_port()
        server = Server("admin API", [*server_cpu, sys.executable, "-m", "cli.main", "serve", "admin"], port,
                        "/readiness", {"CHAMICORE_DATABASE_URL": cluster.dsn, "CHAMICORE_LOG_LEVEL": "warning",
                                       "CHAMICORE_ADMIN_LISTEN": f"127.0.0.1:{port}",
                                       "CHAMICORE_OPENCHAMI_PUBLIC_READS": "true",
                                       "CHAMICORE_SECRET_KEY": secrets.token_urlsafe(32)})
        with server:
            results = asyncio.run(run(cluster.dsn, f"http://127.0.0.1:{port}", args.nodes, args.rounds))
    finally:
        cluster.destroy()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "openchami_poll.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
