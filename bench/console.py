"""The web console at scale: server-side time of every page with N nodes, and what its live updates cost the
boot path.

    python -m bench.console [--nodes 100000] [--rounds 20] [--duration 10] [--listeners 20]

1. Pages.  The admin API (`chamicore serve admin`, one worker) and a boot path
   serve N seeded nodes; a console user logs in over HTTP and asks each page
   `rounds` times, one at a time, reading every byte.  Printed: median and p95
   milliseconds against the issue's budget of 200 ms per page, and, as the
   baseline measured in the same run, the REST call a page of the inventory
   makes for its rows (GET /hsm/v2/State/Components?limit=100 with a token).
2. Live updates.  wrk drives the boot path's usual mix for `duration` seconds
   with no console open, then with each number of `listeners` dashboards open,
   then with none again (the two quiet runs bracket the machine's drift).  A
   dashboard holds the SSE stream /ui/live and, as console.js does, re-fetches
   each section showing a topic whenever the stream names it.  Boot telemetry
   flushes wake them: the boot path runs with
   CHAMICORE_TELEMETRY_NODE_INTERVAL_S=0 (every flush writes every node seen,
   the most events the live layer can get).  Printed: requests per second of
   each run and its ratio to the mean of the quiet runs (1.0: the console costs
   the boot path nothing).  The boot path is pinned to CPU 0; wrk, the admin
   API and the simulated browsers to CPU 1 (on a head node the console does
   not run on the boot path's cores, and browsers run on admins' desks);
   PostgreSQL, which both use, floats.

Writes bench/results/console.json.  No figure is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from admin_api.console.dashboard import SECTIONS, SharedLoads
from admin_api.console.live import TOPICS
from bench import fleet
from bench.adminload import admin_token
from bench.bootstorm import RESULTS, ROOT, Server, cpus, free_port, run_wrk
from core import db, migrate
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir

BUDGET_MS = 200.0
SECTIONS_BY_TOPIC = {topic: [s.name for s in SECTIONS if topic in s.topics.split()] for topic in TOPICS}
PASSWORD = "bench password 1234"


def pages(nodes: int) -> list[tuple[str, str]]:
    """(what, path) for every console page, with the filters an admin uses at this scale."""
    middle = f"node-{nodes // 2}"
    return [
        ("dashboard, sections loaded afresh", "/ui/?fresh"),
        ("dashboard, shared load (another page < 2 s)", "/ui/"),
        ("inventory, first page", "/ui/inventory"),
        ("inventory, Nodes sorted by id descending", "/ui/inventory?type=Node&sort=-id"),
        ("inventory, deep page", f"/ui/inventory?offset={max(0, nodes - 100)}"),
        ("inventory, text search (MAC)", f"/ui/inventory?q={fleet.mac_of(nodes // 3)}"),
        ("node page (with script preview)", f"/ui/inventory/{middle}"),
        ("boot configuration", "/ui/boot"),
        ("cloud-init", "/ui/cloud-init"),
        ("discovery", "/ui/discovery"),
        ("power", "/ui/power"),
        ("access", "/ui/access"),
        ("audit", "/ui/audit"),
        ("import", "/ui/import"),
        ("your account", "/ui/account"),
    ]


async def log_in(session: aiohttp.ClientSession) -> None:
    async with session.post("/ui/login", data={"username": "bench", "password": PASSWORD},
                            allow_redirects=False) as answer:
        if answer.status != 303:
            raise RuntimeError(f"console login: HTTP {answer.status}")


async def timed_get(session: aiohttp.ClientSession, path: str, rounds: int) -> tuple[list[float], int, int]:
    """Milliseconds per request, the last status and the last body's size.  `?fresh`: each request waits out
    the dashboard's shared loads, so it loads every section itself."""
    times: list[float] = []
    status, size = 0, 0
    fresh = path.endswith("?fresh")
    path = path.removesuffix("?fresh")
    for _ in range(min(rounds, 5) + 1 if fresh else rounds + 1):  # the first warms caches and is not counted
        if fresh:
            await asyncio.sleep(SharedLoads.MAX_AGE_S + 0.1)
        started = time.perf_counter()
        async with session.get(path, allow_redirects=False) as answer:
            body = await answer.read()
            status, size = answer.status, len(body)
        times.append((time.perf_counter() - started) * 1000)
    return times[1:], status, size


def figures(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"median_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 1)}


async def measure_pages(dsn: str, base: str, nodes: int, rounds: int) -> dict:
    results: dict = {}
    token = await admin_token(dsn, base)
    jar = aiohttp.CookieJar(unsafe=True)  # the admin API is at an IP address
    async with aiohttp.ClientSession(base_url=base, cookie_jar=jar) as browser, \
            aiohttp.ClientSession(base_url=base, headers={"Authorization": f"Bearer {token}"}) as rest:
        await log_in(browser)
        times, status, size = await timed_get(rest, "/hsm/v2/State/Components?limit=100", rounds)
        results["baseline: REST components, limit 100"] = {**figures(times), "status": status, "bytes": size}
        print(f"{'baseline: REST components, limit 100':<44} {figures(times)['median_ms']:>8.1f} ms median", flush=True)
        for what, path in pages(nodes):
            times, status, size = await timed_get(browser, path, rounds)
            entry = {**figures(times), "status": status, "bytes": size, "path": path,
                     "within_budget": status == 200 and figures(times)["p95_ms"] < BUDGET_MS}
            results[what] = entry
            verdict = "ok" if entry["within_budget"] else ("OVER BUDGET" if status == 200 else f"HTTP {status}")
            print(f"{what:<44} {entry['median_ms']:>8.1f} ms median {entry['p95_ms']:>8.1f} ms p95 "
                  f"{size / 1024:>7.1f} KiB  {verdict}", flush=True)
    return results


async def dashboards(base: str, listeners: int, stop: asyncio.Event) -> int:
    """`listeners` open dashboards: each follows /ui/live and re-renders the dashboard on every event."""
    refreshes = 0

    async def one() -> None:
        nonlocal refreshes
        async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            await log_in(browser)
            async with browser.get("/ui/live", timeout=aiohttp.ClientTimeout(total=None)) as stream:
                while not stop.is_set():
                    line = await stream.content.readline()
                    if not line:
                        return
                    if line.startswith(b"data: "):  # as console.js: each section showing that topic
                        topic = line[6:].strip().decode()
                        for name in SECTIONS_BY_TOPIC.get(topic, ()):
                            async with browser.get(f"/ui/dashboard/{name}",
                                                   headers={"X-Console-Fragment": "1"}) as page:
                                await page.read()
                            refreshes += 1

    tasks = [asyncio.create_task(one()) for _ in range(listeners)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await task
    return refreshes


async def measure_live(base: str, boot_port: int, nodes: int, duration: int, listeners: list[int],
                       client_cpu: list[str], work: Path) -> dict:
    """Without, with each number of dashboards, and again without: the quiet runs show the machine's drift."""
    if client_cpu:  # the browsers this process plays stay off the boot path's core, as wrk does
        os.sched_setaffinity(0, {int(client_cpu[-1])})
    def wrk() -> dict:
        return run_wrk(boot_port, nodes, 256, duration, client_cpu, work)

    before = await asyncio.to_thread(wrk)
    print(f"boot path, no console open:            {before}", flush=True)
    watched: dict[int, dict] = {}
    for count in listeners:
        stop = asyncio.Event()
        watching = asyncio.create_task(dashboards(base, count, stop))
        await asyncio.sleep(2)  # every dashboard logged in and listening
        watched[count] = await asyncio.to_thread(wrk)
        stop.set()
        watched[count]["section_refreshes"] = await watching
        print(f"boot path, {count:>3} live dashboards open: {watched[count]}", flush=True)
    after = await asyncio.to_thread(wrk)
    print(f"boot path, no console open again:      {after}", flush=True)
    quiet = (before["req_per_s"] + after["req_per_s"]) / 2
    ratios = {count: round(entry["req_per_s"] / quiet, 3) for count, entry in watched.items()}
    for count, ratio in ratios.items():
        print(f"ratio with {count} dashboards / without (mean of both quiet runs): {ratio}", flush=True)
    return {"without_console": [before, after], "with_console": watched, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per live-update run")
    parser.add_argument("--listeners", default="3,20", help="dashboards open, one run per number (comma-separated)")
    args = parser.parse_args()
    server_cpu, client_cpu = cpus()
    work = Path(tempfile.mkdtemp(prefix="chamicore-consolebench-", dir="/tmp"))
    work.chmod(0o711)  # the PostgreSQL service user must reach its cluster below
    cluster = EmbeddedPostgres(work / "pg", port=free_port(), bin_dir=pgserver_bin_dir() or system_bin_dir(),
                               durable=False)
    cluster.start()
    results: dict = {"nodes": args.nodes, "rounds": args.rounds, "budget_ms": BUDGET_MS}
    try:
        async def prepare() -> None:
            from admin_api.auth.users import create_user

            conn = await db.connect(cluster.dsn)
            await migrate.migrate(conn)
            await conn.execute("SET session_replication_role = replica")  # no one listens to the seed's NOTIFYs
            await fleet.seed(conn, args.nodes)
            await conn.execute("RESET session_replication_role")
            await create_user(conn, "bench", PASSWORD, ["admin"])
            await conn.execute("VACUUM ANALYZE")
            await conn.close()

        started = time.perf_counter()
        asyncio.run(prepare())
        print(f"seeded {args.nodes:,} nodes in {time.perf_counter() - started:.1f} s", flush=True)
        boot_port, admin_port = free_port(), free_port()
        boot_url = f"http://127.0.0.1:{boot_port}"
        common = {"CHAMICORE_DATABASE_URL": cluster.dsn, "CHAMICORE_LOG_LEVEL": "warning",
                  "CHAMICORE_BOOT_URL": boot_url}
        boot = Server("boot path", [*server_cpu, sys.executable, "-m", "cli.main", "serve", "boot"], boot_port,
                      "/readiness", {**common, "CHAMICORE_BOOT_LISTEN": f"127.0.0.1:{boot_port}",
                                     "CHAMICORE_TELEMETRY_NODE_INTERVAL_S": "0"})
        admin = Server("admin API", [*client_cpu, sys.executable, "-m", "cli.main", "serve", "admin"], admin_port,
                       "/readiness",
                       {**common, "CHAMICORE_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
                        "CHAMICORE_SECRET_KEY": secrets.token_urlsafe(32)})
        with boot, admin:
            base = f"http://127.0.0.1:{admin_port}"
            results["pages"] = asyncio.run(measure_pages(cluster.dsn, base, args.nodes, args.rounds))
            counts = [int(n) for n in args.listeners.split(",") if n]
            results["live"] = asyncio.run(measure_live(base, boot_port, args.nodes, args.duration, counts,
                                                       client_cpu, work))
    finally:
        cluster.destroy()
    over = [what for what, entry in results["pages"].items() if "path" in entry and not entry["within_budget"]]
    print(f"pages within {BUDGET_MS:.0f} ms at {args.nodes:,} nodes: "
          f"{len(pages(args.nodes)) - len(over)}/{len(pages(args.nodes))}" + (f"; over: {', '.join(over)}" if over else ""))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "console.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
