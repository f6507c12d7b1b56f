"""Boot storm: the boot path against nginx (the ceiling) and a typical app, in one run.

    python -m bench.bootstorm [--nodes 10000] [--duration 10] [--changes 1000]

Starts a private PostgreSQL with N registered nodes, then in turn: the boot
path (granian RSGI, then ASGI; one worker), nginx serving the same bytes as
static files, and a typical Starlette + uvicorn app that queries PostgreSQL
per request.  Each server is pinned to CPU 0 and the load generators to
CPU 1 when there are two.  For each: wrk throughput at 1,000 connections,
then the storm client (bench/storm.py) with 1,000 and 10,000 simultaneous
nodes (bootscript + three cloud-init documents each; 10% unknown MACs that
retry).  Then propagation: admin-side changes until the boot path serves
them.  Prints a Markdown table with ratios and writes bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import fleet
from bench.plot import plot_bootstorm
from core import db, migrate
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir
from hotpath import loader
from hotpath.answers import AnswerBuilder
from hotpath.index import Index

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BASE_URL = "http://boot"  # the Host the load generators send; the boot path is told to advertise it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpus() -> tuple[list[str], list[str]]:
    """taskset prefixes for the server and for the load generator."""
    if os.cpu_count() and os.cpu_count() >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", "0"], ["taskset", "-c", "1"]
    return [], []


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


class Server:
    def __init__(self, name: str, argv: list[str], port: int, ready_path: str, env: dict | None = None):
        self.name, self.argv, self.port, self.ready_path = name, argv, port, ready_path
        self.env = dict(os.environ, **(env or {}))
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        self.process = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.port}{self.ready_path}")
        return self

    def __exit__(self, *exc) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


WRK_SCRIPT = """
math.randomseed(7)
local n = %(nodes)d
local docs = {"user-data", "meta-data", "vendor-data"}
local function mac(i)
  return string.format("02-00-%%02x-%%02x-%%02x-%%02x", math.floor(i / 16777216) %% 256,
                       math.floor(i / 65536) %% 256, math.floor(i / 256) %% 256, i %% 256)
end
request = function()
  local i = math.random(n)
  local k = math.random(4)
  local path
  if k == 4 then path = "/boot/v1/bootscript?mac=" .. mac(i)
  else path = "/cloud-init/node-" .. i .. "/" .. string.format("%%032x", i) .. "/" .. docs[k] end
  return wrk.format("GET", path, {["Host"] = "boot"})
end
-- The figures as one JSON line, so nothing depends on wrk's human-readable report.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"socket_errors": %%d, "non_2xx": %%d}\\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def run_wrk(target: int | str, nodes: int, connections: int, duration: int, prefix: list[str], workdir: Path) -> dict:
    """wrk's boot mix at a port of 127.0.0.1 (http) or a URL (https://127.0.0.1:PORT, say)."""
    script = workdir / "mix.lua"
    script.write_text(WRK_SCRIPT % {"nodes": nodes})
    url = target if isinstance(target, str) else f"http://127.0.0.1:{target}"
    out = subprocess.run([*prefix, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s",
                          "-s", str(script), url], capture_output=True, text=True).stdout
    [line] = [line for line in out.splitlines() if line.startswith("WRK_JSON ")]
    figures = json.loads(line.removeprefix("WRK_JSON "))
    return {"req_per_s": round(figures["requests"] / (figures["duration_us"] / 1e6)), "requests": figures["requests"],
            "p50": f"{figures['p50_us'] / 1000:.2f}ms", "p99": f"{figures['p99_us'] / 1000:.2f}ms",
            "socket_errors": figures["socket_errors"], "non_2xx": figures["non_2xx"]}


def run_storm(port: int, nodes: int, registered: int, prefix: list[str], ramp: float | None = None) -> dict:
    out = subprocess.run([*prefix, sys.executable, "-m", "bench.storm", "--port", str(port), "--nodes", str(nodes),
                          "--registered", str(registered), *(["--ramp", str(ramp)] if ramp else [])],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        return {"failed": out.stderr[-500:]}
    return json.loads(out.stdout)


async def prepare_database(cluster: EmbeddedPostgres, nodes: int) -> None:
    conn = await db.connect(cluster.dsn)
    await migrate.migrate(conn)
    await fleet.seed(conn, nodes)
    # One node gets params of its own: the propagation benchmark edits them.
    await conn.execute("INSERT INTO bss.boot_params (id, component_id, kernel, initrd, cmdline) "
                       "VALUES ('node-1-params', 'node-1', 'http://images/k-0/vmlinuz', 'http://images/initrd', '')")
    await conn.execute("ANALYZE")
    await conn.close()


async def write_static_tree(dsn: str, root: Path) -> int:
    """The exact bytes the boot path serves, as files nginx can serve."""
    conn = await db.connect(dsn)
    index = Index()
    batch = AnswerBuilder(BASE_URL, 2.0, 60.0).batch()
    await loader.load(conn, lambda rows, params, payloads: index.add(batch(rows, params, payloads)))
    await conn.close()
    (root / "bootscript").mkdir(parents=True)
    for mac, entry in index.by_mac.items():
        (root / "bootscript" / mac.replace(":", "-")).write_bytes(entry.body)
    (root / "bootscript" / "unknown").write_bytes(b"#!ipxe\nsleep 10\nchain http://boot/boot/v1/bootscript\n")
    for node_id, entry in index.cloud_by_id.items():
        folder = root / "cloud-init" / node_id / entry.token
        folder.mkdir(parents=True)
        (folder / "user-data").write_bytes(entry.user_data)
        (folder / "meta-data").write_bytes(entry.meta_data)
        (folder / "vendor-data").write_bytes(entry.vendor_data)
    return len(index)


NGINX_CONF = """
worker_processes 1;
worker_rlimit_nofile 20000;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log error;
events { worker_connections 19000; multi_accept on; }
http {
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path %(dir)s/tmp; proxy_temp_path %(dir)s/tmp; fastcgi_temp_path %(dir)s/tmp;
    uwsgi_temp_path %(dir)s/tmp; scgi_temp_path %(dir)s/tmp;
    default_type text/plain;
    server {
        listen 127.0.0.1:%(port)d backlog=16384;
        root %(root)s;
        location = /boot/v1/bootscript { try_files /bootscript/$arg_mac /bootscript/unknown; }
        location /cloud-init/ { }
        location = /health { return 200 "ok"; }
    }
}
"""


async def propagation(dsn: str, port: int, changes: int) -> dict:
    """Commit a change, then ask the boot path until it serves it: the time between, per change."""
    conn = await db.connect(dsn)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET /boot/v1/bootscript?mac={fleet.mac_of(1)} HTTP/1.1\r\nHost: boot\r\n\r\n".encode()

    async def fetch() -> bytes:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        return await reader.readexactly(length)

    delays = []
    for k in range(1, changes + 1):
        await conn.execute("UPDATE bss.boot_params SET kernel = $1 WHERE id = 'node-1-params'",
                           f"http://images/k-{k}/vmlinuz")
        committed = time.perf_counter()
        marker = f"/k-{k}/".encode()
        while marker not in await fetch():
            pass
        delays.append((time.perf_counter() - committed) * 1000)
    writer.close()
    await conn.close()
    delays.sort()
    return {"changes": changes, "p50_ms": round(delays[len(delays) // 2], 2),
            "p99_ms": round(delays[int(len(delays) * 0.99) - 1], 2), "max_ms": round(delays[-1], 2)}


def tune_kernel() -> str:
    """A boot storm opens thousands of connections at once: let the accept queue hold them."""
    path = Path("/proc/sys/net/core/somaxconn")
    try:
        if int(path.read_text()) < 16384 and os.geteuid() == 0:
            path.write_text("16384")
    except OSError:
        pass
    return path.read_text().strip() if path.exists() else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000, help="registered nodes")
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per server")
    parser.add_argument("--changes", type=int, default=1000, help="changes for the propagation figure")
    parser.add_argument("--storms", default="1000,10000", help="simultaneous nodes per storm")
    parser.add_argument("--skip", default="", help="comma-separated servers to leave out")
    parser.add_argument("--ramp", type=float, default=4.0,
                        help="held-connections storm: seconds over which the held nodes ask")
    args = parser.parse_args()

    server_cpu, client_cpu = cpus()
    somaxconn = tune_kernel()
    work = Path(tempfile.mkdtemp(prefix="chamicore-bench-", dir="/tmp"))
    work.chmod(0o711)  # the PostgreSQL service user must reach its cluster below
    cluster = EmbeddedPostgres(work / "pg", port=free_port(), bin_dir=pgserver_bin_dir() or system_bin_dir(),
                               durable=False)
    cluster.start()
    results: dict = {"when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                     "nodes": args.nodes, "cpus": os.cpu_count(), "somaxconn": somaxconn, "ramp": args.ramp,
                     "servers": {}}
    storms = [int(s) for s in args.storms.split(",") if s]
    try:
        asyncio.run(prepare_database(cluster, args.nodes))
        asyncio.run(write_static_tree(cluster.dsn, work / "static"))
        nginx_port = free_port()
        (work / "nginx").mkdir()
        (work / "nginx" / "tmp").mkdir()
        (work / "nginx" / "nginx.conf").write_text(
            NGINX_CONF % {"dir": work / "nginx", "port": nginx_port, "root": work / "static"})
        os.chmod(work, 0o755)
        boot_env = {"CHAMICORE_DATABASE_URL": cluster.dsn, "CHAMICORE_BOOT_URL": BASE_URL,
                    "CHAMICORE_LOG_LEVEL": "warning", "CHAMICORE_BOOT_WORKERS": "1"}
        ports = {name: free_port() for name in ("boot-rsgi", "boot-asgi", "typical")}
        servers = {
            "boot-rsgi": Server("boot path (granian RSGI)",
                                [*server_cpu, sys.executable, "-m", "cli.main", "serve", "boot", "--interface", "rsgi"],
                                ports["boot-rsgi"], "/readiness",
                                {**boot_env, "CHAMICORE_BOOT_LISTEN": f"127.0.0.1:{ports['boot-rsgi']}"}),
            "boot-asgi": Server("boot path (granian ASGI)",
                                [*server_cpu, sys.executable, "-m", "cli.main", "serve", "boot", "--interface", "asgi"],
                                ports["boot-asgi"], "/readiness",
                                {**boot_env, "CHAMICORE_BOOT_LISTEN": f"127.0.0.1:{ports['boot-asgi']}"}),
            "nginx": Server("nginx, static files", [*server_cpu, "nginx", "-g", "daemon off;", "-c",
                            str(work / "nginx" / "nginx.conf")], nginx_port, "/health"),
            "typical": Server("Starlette + uvicorn + PostgreSQL per request",
                              [*server_cpu, sys.executable, "-m", "uvicorn", "--factory", "bench.typical_app:create_app",
                               "--port", str(ports["typical"]), "--log-level", "warning", "--backlog", "16384",
                               "--loop", "uvloop"], ports["typical"], "/cloud-init/node-1/user-data",
                              {"CHAMICORE_DATABASE_URL": cluster.dsn}),
        }
        skip = set(filter(None, args.skip.split(",")))
        for key, server in servers.items():
            if key in skip:
                continue
            print(f"== {server.name}", flush=True)
            with server:
                entry = {"name": server.name}
                entry["wrk_1000"] = run_wrk(server.port, args.nodes, 1000, args.duration, client_cpu, work)
                print(f"   wrk 1000 connections: {entry['wrk_1000']}", flush=True)
                for size in storms:
                    entry[f"storm_{size}"] = run_storm(server.port, size, int(size * 0.9), client_cpu)
                    print(f"   storm {size}: {entry[f'storm_{size}']}", flush=True)
                held = max(storms)
                entry["held"] = run_storm(server.port, held, int(held * 0.9), client_cpu, ramp=args.ramp)
                print(f"   {held} held connections, asking over {args.ramp} s: {entry['held']}", flush=True)
                if key == "boot-rsgi" and args.changes:
                    entry["propagation"] = asyncio.run(propagation(cluster.dsn, server.port, args.changes))
                    print(f"   propagation: {entry['propagation']}", flush=True)
                results["servers"][key] = entry
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    report(results, storms)


def report(results: dict, storms: list[int]) -> None:
    servers = results["servers"]
    lines = [f"Boot storm, {results['nodes']:,} registered nodes, {results['cpus']} CPUs, "
             f"somaxconn {results['somaxconn']} ({results['when']})", "",
             "| server | wrk req/s @1k conns | p50 | p99 | " + " | ".join(
                 f"burst of {s:,}: req/s, p50/p99/max ms, errors, answered" for s in storms)
             + f" | {max(storms):,} held, asking over {results['ramp']} s: p50/p99/max ms, errors, answered |",
             "|---|---|---|---|" + "---|" * (len(storms) + 1)]
    for entry in servers.values():
        wrk = entry["wrk_1000"]
        cells = [entry["name"], f"{wrk['req_per_s']:,}", str(wrk["p50"]), str(wrk["p99"])]
        for s in [entry.get(f"storm_{size}", {}) for size in storms] + [entry.get("held", {})]:
            if "failed" in s or not s:
                cells.append("failed")
            else:
                rate = "" if s.get("held_connections") is not None else f"{s['req_per_s']:,}, "
                cells.append(f"{rate}{s['p50_ms']}/{s['p99_ms']}/{s['max_ms']}, {s['errors']}, "
                             f"{s['answered_connections']:,}/{s['connections']:,}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    boot = servers.get("boot-rsgi", {}).get("wrk_1000", {}).get("req_per_s")
    for key, label in (("nginx", "of nginx"), ("typical", "x the typical app"), ("boot-asgi", "x ASGI")):
        other = servers.get(key, {}).get("wrk_1000", {}).get("req_per_s")
        if boot and other:
            ratio = boot / other
            lines.append(f"- boot path (RSGI) throughput: {ratio:.2f} {label}")
    if "propagation" in servers.get("boot-rsgi", {}):
        p = servers["boot-rsgi"]["propagation"]
        lines.append(f"- propagation of {p['changes']} changes: p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, "
                     f"max {p['max_ms']} ms")
    text = "\n".join(lines)
    print("\n" + text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bootstorm.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "bootstorm.md").write_text(text + "\n")
    png = plot_bootstorm(results, RESULTS / "bootstorm.png")
    print(f"\nwritten: {RESULTS}/bootstorm.json, bootstorm.md" + (", bootstorm.png" if png else ""))


if __name__ == "__main__":
    main()
