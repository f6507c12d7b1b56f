"""Two boot paths compared in one run, for the benchmarks of what a feature costs (bench.metrics, bench.stages,
bench.bootfeatures).

Both boot paths (`chamicore serve boot`, one worker each) run at once, pinned to CPU 0; wrk (on CPU 1) drives
the usual mix of bootscript and cloud-init requests at each in turn, off-on-on-off for every round, so the
machine's drift falls on both alike.  On a quiet 2-core machine one run of wrk varies by about 10% from the
next: use several rounds, and an A/A run (the same setting on both) to see the drift alone.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bench import fleet
from bench.bootstorm import BASE_URL, Server, cpus, free_port, run_storm, run_wrk
from core import db, migrate
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir

ORDER = ("off", "on", "on", "off")


@contextlib.contextmanager
def private_cluster(prefix: str) -> Iterator[tuple[EmbeddedPostgres, Path]]:
    """A throwaway PostgreSQL (not durable) and a work directory, both removed at exit."""
    work = Path(tempfile.mkdtemp(prefix=f"chamicore-{prefix}-", dir="/tmp"))
    work.chmod(0o711)  # the PostgreSQL service user must reach its cluster below
    cluster = EmbeddedPostgres(work / "pg", port=free_port(), bin_dir=pgserver_bin_dir() or system_bin_dir(),
                               durable=False)
    cluster.start()
    try:
        yield cluster, work
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


async def seed(dsn: str, nodes: int) -> None:
    """N nodes of bench.fleet in a migrated database."""
    conn = await db.connect(dsn)
    await migrate.migrate(conn)
    await conn.execute("SET session_replication_role = replica")  # no one listens to the seed's NOTIFYs
    await fleet.seed(conn, nodes)
    await conn.execute("RESET session_replication_role")
    await conn.execute("VACUUM ANALYZE")
    await conn.close()


def boot_env(dsn: str, **settings: str) -> dict[str, str]:
    """One boot path's settings: one worker, quiet logs, the benchmarks' boot URL."""
    return {"CHAMICORE_DATABASE_URL": dsn, "CHAMICORE_BOOT_URL": BASE_URL, "CHAMICORE_LOG_LEVEL": "warning",
            "CHAMICORE_BOOT_WORKERS": "1", **settings}


def arguments(description: str | None, feature: str) -> argparse.ArgumentParser:
    """The options every such comparison takes."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per run")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="off-on-on-off rounds")
    parser.add_argument("--control", action="store_true", help=f"{feature} off on both paths: the drift alone")
    parser.add_argument("--storm", action="store_true",
                        help="bench.storm instead of wrk: every node boots once a run (its script, then its three "
                             "cloud-init documents), as in a real storm; wrk's random mix asks random nodes again "
                             "and again")
    return parser


def alternate(feature: str, envs: dict[str, dict[str, str]], *, nodes: int, connections: int, duration: int,
              rounds: int, work: Path, storm: bool = False,
              during: Callable[[dict[str, Server]], dict] | None = None) -> dict:
    """Runs of wrk at the `off` and `on` boot paths (settings in `envs`), then `during(servers)` while both
    still run (its figures are added to the result).  Returns every run and their summary."""
    server_cpu, client_cpu = cpus()
    ports = {setting: free_port() for setting in ("on", "off")}
    servers = {setting: Server(f"boot path, {feature} {setting}",
                               [*server_cpu, sys.executable, "-m", "cli.main", "serve", "boot"], port, "/readiness",
                               {**envs[setting], "CHAMICORE_BOOT_LISTEN": f"127.0.0.1:{port}"})
               for setting, port in ports.items()}
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    extra: dict = {}
    with servers["on"], servers["off"]:
        for _ in range(rounds):
            for setting in ORDER:
                cpu_before = server_cpu_s(servers[setting])
                if storm:
                    result = run_storm(ports[setting], nodes, nodes, client_cpu)
                    run = {"req_per_s": result.get("req_per_s", 0), "p99": f"{result.get('p99_ms', 0)}ms",
                           "errors": result.get("errors"), "answered": result.get("answered_connections"),
                           "requests": result.get("requests", 0)}
                else:
                    run = run_wrk(ports[setting], nodes, connections, duration, client_cpu, work)
                cpu = server_cpu_s(servers[setting]) - cpu_before
                run["server_cpu_us_per_request"] = round(cpu / run["requests"] * 1e6, 2) if run["requests"] else None
                runs[setting].append(run)
                print(f"{feature} {setting:3}: {run}", flush=True)
        if during is not None:
            extra = during(servers)
    return {"runs": runs, **summary(runs), **extra}


def _ms(text: str) -> float:
    return float(text.removesuffix("ms"))


def summary(runs: dict[str, list[dict]]) -> dict:
    """Mean requests per second and p99 of each setting, their ratios (on / off), and how far the runs of one
    setting spread (max - min over the mean): the resolution the ratio is read with."""
    def mean(setting: str, figure: Callable[[dict], float]) -> float:
        return statistics.mean(figure(run) for run in runs[setting])

    on, off = mean("on", lambda r: r["req_per_s"]), mean("off", lambda r: r["req_per_s"])
    p99_on, p99_off = mean("on", lambda r: _ms(r["p99"])), mean("off", lambda r: _ms(r["p99"]))
    spread = {s: round((max(r["req_per_s"] for r in runs[s]) - min(r["req_per_s"] for r in runs[s]))
                       / statistics.mean(r["req_per_s"] for r in runs[s]), 3) for s in runs}
    out = {"on_req_per_s": round(on), "off_req_per_s": round(off), "ratio": round(on / off, 3),
           "p99_on_ms": round(p99_on, 2), "p99_off_ms": round(p99_off, 2), "p99_ratio": round(p99_on / p99_off, 3),
           "spread_within_setting": spread}
    # The server's own CPU time per request (user + system, its whole process tree): unlike requests per second
    # it does not move when another process takes the core for a while.  cpu_ratio = off / on, read like `ratio`
    # (the throughput ratio a core of its own would give).
    if all(r.get("server_cpu_us_per_request") for setting in runs for r in runs[setting]):
        cpu_on, cpu_off = (statistics.median(r["server_cpu_us_per_request"] for r in runs[s]) for s in ("on", "off"))
        out.update(server_cpu_us_per_request={"on": cpu_on, "off": cpu_off}, cpu_ratio=round(cpu_off / cpu_on, 3))
    return out


def cpu_figures(results: dict) -> str:
    """The server-CPU comparison of summary(), as printed after the throughput figures."""
    if "cpu_ratio" not in results:
        return "server CPU per request: not measured"
    cpu = results["server_cpu_us_per_request"]
    return f"server CPU per request on {cpu['on']} us, off {cpu['off']} us: ratio {results['cpu_ratio']:.3f}"


def server_cpu_s(server: Server) -> float:
    """CPU seconds (user + system) a running boot path has used: `chamicore serve`, granian and its workers."""
    return sum(sum(p.cpu_times()[:2]) for p in _processes(server))


def resident_mb(server: Server) -> float:
    """Resident memory of a running boot path: `chamicore serve`'s process, granian's and its worker's."""
    return round(sum(p.memory_info().rss for p in _processes(server)) / 2**20, 1)


def _processes(server: Server) -> list:
    """A running boot path's processes: `chamicore serve` and all below it."""
    import psutil

    assert server.process is not None
    top = psutil.Process(server.process.pid)
    return [top, *top.children(recursive=True)]
