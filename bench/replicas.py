"""Memory and start-up of boot-path replicas on one machine: 1, 2 and 3 at once, over N nodes.

    python -m bench.replicas [--nodes 100000] [--counts 1,2,3]

A private PostgreSQL holds N nodes (bench/fleet.py).  For each count, that many replicas (`chamicore serve
boot`, one worker each, its own index and LISTEN connection) start at the same instant, as a rollout or a
node failure would start them; for each: seconds from its start to /readiness 200, its feed's full load
(`lastFullReloadSeconds` from /readiness), and the resident memory of the worker that holds the index and of
the whole replica (granian's main process + worker).  Then a resync (what a reconnect to PostgreSQL does)
makes each replica build a second index beside the one it serves: the worker's peak RSS (VmHWM) after it
is what a memory limit must allow.  The replicas share the machine's CPUs unpinned, so
several loading at once compete for them: that is the figure a site sizing N replicas per host needs.

Prints a Markdown table and writes bench/results/replicas.json, with the load average before and after
(the machine may be busy with other work: say so beside the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from bench.bootstorm import BASE_URL, RESULTS, ROOT, free_port
from bench.metrics import seed
from core import db
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir

MB = 2**20


def readiness(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readiness", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())
    except OSError:
        return 0, {}


def memory(pid: int) -> tuple[int, float, float]:
    """(worker pid, worker RSS, whole replica RSS), in MB: the worker is the child that holds the index."""
    main = psutil.Process(pid)
    children = main.children(recursive=True)
    rss = {p.pid: p.memory_info().rss for p in [main, *children]}
    worker = max(rss, key=lambda p: rss[p] if p != pid else -1)
    return worker, round(rss[worker] / MB, 1), round(sum(rss.values()) / MB, 1)


def peak_rss_mb(pid: int) -> float:
    """The process's resident high-water mark (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) * 1024 / MB, 1)
    raise ValueError(f"no VmHWM for {pid}")


async def resync(dsn: str) -> None:
    """What the feed does after a lost connection: every replica loads everything again, beside its index."""
    conn = await db.connect(dsn)
    await conn.execute("""SELECT pg_notify('chamicore_boot', '{"resync": true}')""")
    await conn.close()


@dataclasses.dataclass
class Replica:
    port: int
    process: subprocess.Popen
    started: float
    ready: dict | None = None  # its figures, once /readiness said 200


def start_replicas(count: int, dsn: str, timeout: float) -> list[dict]:
    """`count` replicas started at once; each one's time to ready, full load and memory once ready."""
    replicas = []
    for _ in range(count):
        port = free_port()
        env = dict(os.environ, CHAMICORE_DATABASE_URL=dsn, CHAMICORE_BOOT_URL=BASE_URL, CHAMICORE_LOG_LEVEL="warning",
                   CHAMICORE_BOOT_WORKERS="1", CHAMICORE_BOOT_LISTEN=f"127.0.0.1:{port}")
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "boot"], env=env, cwd=ROOT,
                                   start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        replicas.append(Replica(port, process, started))
    try:
        deadline = time.perf_counter() + timeout
        while any(r.ready is None for r in replicas) and time.perf_counter() < deadline:
            for replica in [r for r in replicas if r.ready is None]:
                status, body = readiness(replica.port)
                if status == 200:
                    replica.ready = {"ready_s": round(time.perf_counter() - replica.started, 2),
                                     "full_load_s": round(body["feed"]["lastFullReloadSeconds"], 2),
                                     "nodes": body["nodes"]}
                elif replica.process.poll() is not None:
                    raise SystemExit(f"a replica exited with {replica.process.returncode} before it was ready")
            time.sleep(0.05)
        if any(r.ready is None for r in replicas):
            raise SystemExit(f"not every one of {count} replicas was ready within {timeout} s")
        results = []
        for replica in replicas:
            pid, worker, total = memory(replica.process.pid)
            results.append({**(replica.ready or {}), "worker_pid": pid, "worker_rss_mb": worker,
                            "replica_rss_mb": total})
        asyncio.run(resync(dsn))
        for replica, result in zip(replicas, results, strict=True):
            while readiness(replica.port)[1].get("feed", {}).get("fullReloads", 0) < 2:
                if time.perf_counter() > deadline:
                    raise SystemExit("a replica did not reload within the timeout")
                time.sleep(0.05)
            result["reload_s"] = round(readiness(replica.port)[1]["feed"]["lastFullReloadSeconds"], 2)
            result["worker_peak_rss_mb"] = peak_rss_mb(result.pop("worker_pid"))
    finally:
        for replica in replicas:
            os.killpg(replica.process.pid, signal.SIGTERM)
        for replica in replicas:
            try:
                replica.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(replica.process.pid, signal.SIGKILL)
                replica.process.wait()
    return results


def report(results: dict) -> str:
    lines = [f"Boot-path replicas on one machine, {results['nodes']:,} nodes, {results['cpus']} CPUs "
             f"({results['when']}; load average {results['load_before']} before, {results['load_after']} after)", "",
             "| replicas at once | replica | time to ready (s) | full load (s) | worker RSS (MB) | replica RSS (MB) "
             "| resync (s) | worker peak RSS, after a resync (MB) |",
             "|---|---|---|---|---|---|---|---|"]
    for count, replicas in results["runs"].items():
        for number, r in enumerate(replicas, 1):
            lines.append(f"| {count} | {number} | {r['ready_s']} | {r['full_load_s']} | {r['worker_rss_mb']} | "
                         f"{r['replica_rss_mb']} | {r['reload_s']} | {r['worker_peak_rss_mb']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--counts", default="1,2,3", help="replicas started at once, one run per count")
    parser.add_argument("--timeout", type=float, default=300, help="seconds for every replica of a run to be ready")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chamicore-replicas-", dir="/tmp"))
    work.chmod(0o711)  # the PostgreSQL service user must reach its cluster below
    cluster = EmbeddedPostgres(work / "pg", port=free_port(), bin_dir=pgserver_bin_dir() or system_bin_dir(),
                               durable=False)
    cluster.start()
    results: dict = {"when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "nodes": args.nodes,
                     "cpus": os.cpu_count(), "load_before": [round(x, 2) for x in os.getloadavg()], "runs": {}}
    try:
        asyncio.run(seed(cluster.dsn, args.nodes))
        for count in [int(c) for c in args.counts.split(",") if c]:
            results["runs"][count] = start_replicas(count, cluster.dsn, args.timeout)
            print(f"{count} at once: {results['runs'][count]}", flush=True)
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    text = report(results)
    print("\n" + text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "replicas.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
