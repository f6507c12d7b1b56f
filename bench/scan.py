"""Discovery scanner concurrency over IPMI: one scan of many BMCs, a tenth of which never answer.

    python -m bench.scan [--hosts 1000] [--unreachable 0.1] [--timeout 8] [--concurrency 64]

Each answering host is a real BMC simulator (OpenIPMI's ipmi_sim, through
tests/helpers/ipmisim.py: about 4 MB each) on its own UDP port of 127.0.0.1,
with its own GUID, FRU and MAC; each unreachable host is a UDP socket that
takes packets and never answers (no ICMP either: the worst kind of dead BMC).
Every host is an `ipmi` discovery target of its own, all scanned at once by
the real DiscoveryScanner against a real PostgreSQL.

The claim checked: the scan finishes within its per-host timeouts, i.e. a
dead host costs one timeout of one slot, never the scan's, and the scan's
wall time stays under (dead hosts / concurrency + 1) timeouts plus the time
the answering hosts take.  Figures: wall time, per-host durations (median,
p95, max) for answered and failed hosts, the outcomes, and whether every
dead host failed with a reason that names it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import statistics
import tempfile
import time
from pathlib import Path

from bench.bootstorm import RESULTS, free_port
from core import db, migrate
from core.discovery import create_scan
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir
from sync.discovery.scanner import DiscoveryScanner
from tests.helpers.ipmisim import PASSWORD, USERNAME, IpmiSim
from tests.helpers.keys import box
from tests.helpers.tasks import running


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


def summary(values: list[float]) -> dict:
    return {"n": len(values), "median_s": round(statistics.median(values), 3) if values else None,
            "p95_s": round(pct(values, 0.95), 3) if values else None,
            "max_s": round(max(values), 3) if values else None}


async def scan(dsn: str, addresses: list[str], timeout_s: float, concurrency: int) -> dict:
    conn = await db.connect(dsn)
    try:
        await migrate.migrate(conn)
        await conn.execute("INSERT INTO auth.credentials (id, username, secret_enc) VALUES ('ipmi', $1, $2)",
                           USERNAME, box().seal(PASSWORD.encode(), "ipmi"))
        await conn.executemany("INSERT INTO discovery.targets (id, driver, address, credential_id) "
                               "VALUES ($1, 'ipmi', $2, 'ipmi')",
                               [(f"host-{i:05d}", address) for i, address in enumerate(addresses)])
        started = time.monotonic()
        scan_id = await create_scan(conn, await conn.fetch("SELECT * FROM discovery.targets"), "bench")
        async with running(DiscoveryScanner(dsn, box(), concurrency=concurrency, timeout_s=timeout_s)):
            while await conn.fetchval("SELECT state FROM discovery.scans WHERE id = $1", scan_id) in (
                    "pending", "running"):
                await asyncio.sleep(0.2)
        wall = time.monotonic() - started
        rows = await conn.fetch("SELECT host, state, detail, extract(epoch FROM finished_at - started_at) AS s "
                                "FROM discovery.scan_hosts WHERE scan_id = $1", scan_id)
        return {"wall_s": wall, "rows": [dict(r) for r in rows],
                "nodes": await conn.fetchval("SELECT count(*) FROM smd.components WHERE type = 'Node'")}
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--unreachable", type=float, default=0.1, help="fraction of hosts that never answer")
    parser.add_argument("--timeout", type=float, default=8.0, help="the scanner's per-host timeout, seconds")
    parser.add_argument("--concurrency", type=int, default=64, help="hosts scanned at once")
    args = parser.parse_args()
    dead_count = round(args.hosts * args.unreachable)
    work = Path(tempfile.mkdtemp(prefix="chamicore-scanbench-", dir="/tmp"))
    work.chmod(0o711)  # the PostgreSQL service user must reach its cluster below
    cluster = EmbeddedPostgres(work / "pg", port=free_port(), bin_dir=pgserver_bin_dir() or system_bin_dir(),
                               durable=False)
    sims: list[IpmiSim] = []
    silent: list[socket.socket] = []
    try:
        cluster.start()
        began = time.monotonic()
        for i in range(args.hosts - dead_count):
            sims.append(IpmiSim(guid=f"{i:032x}", serial=f"SN-{i:06d}", mac=f"02:00:{i >> 16 & 255:02x}:"
                                f"{i >> 8 & 255:02x}:{i & 255:02x}:01", ip=f"10.{60 + (i >> 16)}.{i >> 8 & 255}."
                                f"{i & 255}", name=f"bmc{i}").start())
        for _ in range(dead_count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            silent.append(sock)
        started_s = time.monotonic() - began
        dead = [f"127.0.0.1:{s.getsockname()[1]}" for s in silent]
        found = asyncio.run(scan(cluster.dsn, [s.address for s in sims] + dead, args.timeout, args.concurrency))
    finally:
        for sim in sims:
            sim.close()
        for sock in silent:
            sock.close()
        cluster.destroy()
    dead_hosts = {f"ipmi://{d}" for d in dead}
    rows = found["rows"]
    answered = [r for r in rows if r["host"] not in dead_hosts]
    failed_dead = [r for r in rows if r["host"] in dead_hosts]
    bound = (math.ceil(dead_count / args.concurrency) + 1) * args.timeout
    results = {
        "hosts": args.hosts, "unreachable": dead_count, "concurrency": args.concurrency,
        "per_host_timeout_s": args.timeout, "simulators_started_s": round(started_s, 1),
        "scan_wall_s": round(found["wall_s"], 2),
        "answered_hosts": {"ok": sum(r["state"] == "ok" for r in answered),
                           "failed": sum(r["state"] != "ok" for r in answered),
                           **summary([float(r["s"]) for r in answered if r["s"] is not None])},
        "unreachable_hosts": {"failed": sum(r["state"] == "failed" for r in failed_dead),
                              "named_in_reason": sum(r["host"] in r["detail"] for r in failed_dead),
                              **summary([float(r["s"]) for r in failed_dead if r["s"] is not None])},
        "nodes_registered": found["nodes"],
        "dead_hosts_cost_at_most_s": bound,
        "answered_failures": sorted({r["detail"][:160] for r in answered if r["state"] != "ok"})[:5],
    }
    results["every_host_within_its_timeout"] = all(float(r["s"] or 0) <= args.timeout + 1 for r in rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scan.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
