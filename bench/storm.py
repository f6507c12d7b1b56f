"""A raw asyncio HTTP/1.1 client that plays a boot storm.

Every simulated node opens its own keep-alive connection, all at once, and
asks what a booting node asks: its iPXE script, then its three cloud-init
documents (unknown nodes ask for their script and retry).  It counts every
connection that got all its answers, so a server that silently parks
clients (granian's default backpressure does) shows up as errors, not as a
good request rate.  Given a `check`, it also judges every answer's body
against what that node should get, and counts the wrong ones.

    python -m bench.storm --port 27778 --nodes 10000 --registered 9000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import resource
import statistics
import time
from collections.abc import Callable

from bench.fleet import mac_of, token_of


@dataclasses.dataclass
class StormResult:
    connections: int
    answered_connections: int
    requests: int
    errors: int
    duration_s: float
    latencies_ms: list[float] = dataclasses.field(repr=False)
    error_samples: list[str] = dataclasses.field(default_factory=list)
    held_connections: int | None = None
    wrong: int = 0  # 200 answers whose body is not what that node should get (only counted with a `check`)

    def summary(self) -> dict:
        lat = sorted(self.latencies_ms)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else float("nan")

        return {
            "connections": self.connections,
            "held_connections": self.held_connections,
            "answered_connections": self.answered_connections,
            "requests": self.requests,
            "errors": self.errors,
            "wrong": self.wrong,
            "duration_s": round(self.duration_s, 3),
            "req_per_s": round(self.requests / self.duration_s) if self.duration_s else 0,
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "max_ms": round(lat[-1], 2) if lat else float("nan"),
            "mean_ms": round(statistics.fmean(lat), 2) if lat else float("nan"),
            "error_samples": self.error_samples[:5],
        }


def node_requests(index: int, registered: bool) -> list[bytes]:
    mac = mac_of(index)
    node_id = f"node-{index}"
    paths = [f"/boot/v1/bootscript?mac={mac.replace(':', '-')}"]
    if registered:
        paths += [f"/cloud-init/{node_id}/{token_of(index)}/{doc}" for doc in ("user-data", "meta-data", "vendor-data")]
    else:
        paths.append(f"/boot/v1/bootscript?mac={mac}&retry=1")
    return [f"GET {p} HTTP/1.1\r\nHost: boot\r\nUser-Agent: iPXE/1.0.0\r\n\r\n".encode() for p in paths]


# check(node index, request number, body) -> True when the body is what that node should get.
Check = Callable[[int, int, bytes], bool]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    return status, await reader.readexactly(length) if length else b""


async def _one_node(host: str, port: int, node: int, requests: list[bytes], result: StormResult,
                    start: asyncio.Event, timeout: float, delay: float | None, connected: list,
                    check: Check | None) -> None:
    """delay None: connect when the storm starts, ask at once (burst).  Otherwise
    connect first, hold the connection, and ask `delay` seconds after the start."""
    writer = None
    try:
        if delay is None:
            await start.wait()
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 16), timeout)
        connected[0] += 1
        if delay is not None:
            await start.wait()
            await asyncio.sleep(delay)
        for number, request in enumerate(requests):
            began = time.perf_counter()
            writer.write(request)
            status, body = await asyncio.wait_for(read_response(reader), timeout)
            result.latencies_ms.append((time.perf_counter() - began) * 1000)
            result.requests += 1
            if status != 200:
                result.errors += 1
                if len(result.error_samples) < 20:
                    result.error_samples.append(f"HTTP {status}")
                return
            if check is not None and not check(node, number, body):
                result.wrong += 1
                if len(result.error_samples) < 20:
                    result.error_samples.append(f"wrong answer to node {node}, request {number}: {body[:80]!r}")
                return
        result.answered_connections += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
        result.errors += 1
        if len(result.error_samples) < 20:
            result.error_samples.append(f"{type(exc).__name__}: {exc}"[:120])
    finally:
        if writer is not None:
            writer.close()


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return max(soft, target)


async def run_storm(host: str, port: int, nodes: int, registered: int, timeout: float = 30.0,
                    ramp: float | None = None, check: Check | None = None) -> StormResult:
    """`nodes` nodes; the first `registered` of them are known to the server.

    ramp None: a burst, every node connects and asks at the same instant (a
    measure of throughput under saturation: latency is mostly queueing).
    ramp R: every node connects first and holds its connection open, then the
    nodes ask spread evenly over R seconds (a measure of how fast each answer
    comes while `nodes` connections are open at once).
    check: judges each 200 answer (node i asks, in order, its script and then
    user-data, meta-data, vendor-data; an unknown node its script twice).
    """
    limit = raise_fd_limit(nodes + 512)
    if limit < nodes + 64:
        raise SystemExit(f"storm: the open-files limit is {limit}, too low for {nodes} connections")
    result = StormResult(nodes, 0, 0, 0, 0.0, [])
    start = asyncio.Event()
    connected = [0]
    rng = random.Random(7)
    delays = [None] * nodes if ramp is None else sorted(rng.uniform(0, ramp) for _ in range(nodes))
    tasks = [asyncio.create_task(_one_node(host, port, i, node_requests(i, i <= registered), result, start, timeout,
                                           delays[i - 1], connected, check))
             for i in range(1, nodes + 1)]
    if ramp is not None:
        deadline = time.perf_counter() + timeout
        while connected[0] + result.errors < nodes and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        result.held_connections = connected[0]
    await asyncio.sleep(0)
    began = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    result.duration_s = time.perf_counter() - began
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nodes", type=int, default=1000, help="simultaneous nodes (connections)")
    parser.add_argument("--registered", type=int, help="how many of them the server knows (default: 90%%)")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--ramp", type=float, help="hold every connection, then ask spread over RAMP seconds")
    args = parser.parse_args()
    registered = args.registered if args.registered is not None else int(args.nodes * 0.9)
    storm = run_storm(args.host, args.port, args.nodes, registered, args.timeout, args.ramp)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(storm)
    else:
        result = uvloop.run(storm)
    print(json.dumps(result.summary()))


if __name__ == "__main__":
    main()
