"""Three boot-path replicas behind nginx: one is SIGKILLed mid-storm and started again; no node notices.

Each replica is its own `chamicore serve boot` process (its own index and LISTEN connection), all on one
PostgreSQL, behind nginx with the upstream settings a site would use for idempotent GETs (keep-alive
upstreams, `proxy_next_upstream error timeout http_502 http_503`).  The storm client checks every answer
against what that node should get (recorded from a replica before the storm), so a 200 with an empty
index's "wait" script or another node's answer fails the test as surely as an error.

A lock on `cloudinit.payloads` holds the restarted replica in its first full load: granian accepts
connections before that load ends, so the test sees what a node or nginx meets in that window (503 +
Retry-After, never an answer from an empty index).  An edit made through the admin API while the replica
was down is in its first answers.  Propagation of edits made during the storm is measured per replica by
asking each replica directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import msgspec
import pytest

from bench import fleet
from bench.storm import node_requests, read_response, run_storm
from core import db
from tests.helpers.polling import wait_until
from tests.helpers.ports import free_port
from tests.helpers.servers import ServiceServer
from tests.helpers.tokens import token_for

NODES = 3000  # booting nodes in the storm, each asking its script and its three cloud-init documents
PROBE = NODES + 1  # a node no storm node is: the edits change its answer
RAMP_S = 20.0  # the storm's nodes ask spread over this long; everything below happens inside it (a restart under load took 8 s)
EDITS_PER_PHASE = 8
BOOT_URL = "http://boot"

NGINX_CONF = """
worker_processes 1;
worker_rlimit_nofile 16384;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path %(dir)s/tmp; proxy_temp_path %(dir)s/tmp; fastcgi_temp_path %(dir)s/tmp;
    uwsgi_temp_path %(dir)s/tmp; scgi_temp_path %(dir)s/tmp;
    upstream chamicore_boot {
%(servers)s
        keepalive 64;
    }
    server {
        listen 127.0.0.1:%(port)d backlog=4096;
        location / {
            proxy_pass http://chamicore_boot;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout 1s;
            proxy_read_timeout 5s;
        }
    }
}
"""


class Nginx:
    def __init__(self, workdir: Path, upstreams: list[int]) -> None:
        self.port = free_port()
        self.dir = workdir
        (workdir / "tmp").mkdir(parents=True)
        servers = "\n".join(f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=1s;" for port in upstreams)
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(NGINX_CONF % {"dir": workdir, "port": self.port, "servers": servers})
        self.process = subprocess.Popen(["nginx", "-g", "daemon off;", "-c", str(self.conf)], start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class Direct:
    """Asks one replica directly, on a keep-alive connection (reopened after the replica went away)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection: http.client.HTTPConnection | None = None
        self.answered = 0  # boot requests it answered 200 (its /readiness counts them too)

    def get(self, path: str) -> tuple[int, dict, bytes]:
        for attempt in (1, 2):
            try:
                if self.connection is None:
                    self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                self.connection.request("GET", path, headers={"Host": "boot"})
                response = self.connection.getresponse()
                self.answered += response.status == 200 and path != "/readiness"
                return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            except (OSError, http.client.HTTPException):
                self.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


def call(url: str, token: str, method: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method=method, headers={
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/merge-patch+json" if method == "PATCH" else "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 201)
        return json.loads(response.read())


async def answers_of(port: int, connections: int = 16) -> dict[tuple[int, int], bytes]:
    """Every storm node's answers, in the storm's order, from one replica (a few keep-alive connections)."""
    answers: dict[tuple[int, int], bytes] = {}

    async def ask(nodes: range) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for node in nodes:
            for number, request in enumerate(node_requests(node, registered=True)):
                writer.write(request)
                status, answers[node, number] = await read_response(reader)
                assert status == 200, answers[node, number]
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(*(ask(range(first, NODES + 1, connections)) for first in range(1, connections + 1)))
    return answers


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)


@pytest.fixture
def replicas(dsn):
    """Three boot-path replicas, not started: the test starts them (and one again) with room for a loaded machine."""
    servers = [ServiceServer(dsn, CHAMICORE_BOOT_URL=BOOT_URL, CHAMICORE_BOOT_WORKERS="1") for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()


def test_a_killed_replica_behind_nginx_costs_no_node_an_answer(dsn, replicas, admin_server, tmp_path):
    async def seed():
        conn = await db.connect(dsn)
        await fleet.seed(conn, PROBE)
        await conn.close()

    asyncio.run(seed())
    admin = admin_server()
    with concurrent.futures.ThreadPoolExecutor() as pool:  # several seconds each on a loaded machine: at once
        list(pool.map(lambda replica: replica.start(wait_ready=False, timeout=60), replicas))
    token = asyncio.run(token_for(admin.url, dsn))
    call(admin.url, token, "POST", "/boot/v1/bootparams", {"metadata": {"id": "probe"}, "spec": {
        "componentId": f"node-{PROBE}", "kernel": "http://images/k-0/vmlinuz", "initrd": "http://images/initrd"}})
    for replica in replicas:
        replica.wait_ready(timeout=60)
    direct = [Direct(replica.port) for replica in replicas]
    probe_path = f"/boot/v1/bootscript?mac={fleet.mac_of(PROBE)}"

    # What each node should get, from one replica before anything happens; spot-checked independently.
    expected = asyncio.run(answers_of(replicas[0].port))
    assert b"nid=42 hostname=node-42 " in expected[42, 0]
    assert msgspec.json.decode(expected[42, 2])["local-hostname"] == "node-42"

    nginx = Nginx(tmp_path / "nginx", [replica.port for replica in replicas])
    lock_loop = asyncio.new_event_loop()
    lock_conn = lock_loop.run_until_complete(db.connect(dsn))
    try:
        wait_until(nginx.listening, timeout=10)
        outcome: dict = {}

        def storm() -> None:
            outcome["result"] = asyncio.run(run_storm(
                "127.0.0.1", nginx.port, NODES, NODES, timeout=20, ramp=RAMP_S,
                check=lambda node, number, body: body == expected[node, number]))
            outcome["ended"] = time.monotonic()

        def served() -> int:
            return sum(json.loads(d.get("/readiness")[2])["requests"]["total"] for d in direct)

        began = time.monotonic()
        timeline: dict[str, float] = {}  # seconds since the storm's nodes connected to nginx, for the report

        def mark(event: str) -> None:
            timeline[event] = round(time.monotonic() - began, 2)

        before = served()
        storm_thread = threading.Thread(target=storm, daemon=True)
        storm_thread.start()
        wait_until(lambda: served() > before + 200, timeout=30)  # the nodes are asking
        mark("asking")

        delays: dict[int, list[float]] = {0: [], 1: [], 2: []}
        kernel = [0]

        def edit_and_measure(live: list[int]) -> None:
            kernel[0] += 1
            marker = f"/k-{kernel[0]}/".encode()
            call(admin.url, token, "PATCH", "/boot/v1/bootparams/probe",
                 {"spec": {"kernel": f"http://images/k-{kernel[0]}/vmlinuz"}})
            committed = time.perf_counter()
            waiting = set(live)
            deadline = time.monotonic() + 10
            while waiting and time.monotonic() < deadline:
                for r in sorted(waiting):
                    if marker in direct[r].get(probe_path)[2]:
                        delays[r].append((time.perf_counter() - committed) * 1000)
                        waiting.discard(r)
            assert not waiting, f"edit {kernel[0]} never reached replicas {waiting}"

        for _ in range(EDITS_PER_PHASE):
            edit_and_measure([0, 1, 2])

        mark("killed")
        victim = replicas[1]
        os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        victim.process.stderr.close()
        for _ in range(EDITS_PER_PHASE):  # the last of these is made while it is down
            edit_and_measure([0, 2])
        missed = f"/k-{kernel[0]}/".encode()

        # Restarted while a lock holds its first full load: it listens, and answers no node from an empty index.
        lock_loop.run_until_complete(lock_conn.execute("BEGIN"))
        lock_loop.run_until_complete(lock_conn.execute("LOCK TABLE cloudinit.payloads IN ACCESS EXCLUSIVE MODE"))
        mark("restarted")
        victim.start(wait_ready=False, timeout=60)
        mark("listening")
        restarted = Direct(victim.port)
        direct[1].close()
        direct[1] = restarted
        status, _, body = restarted.get("/readiness")
        assert status == 503 and json.loads(body)["status"] == "loading"
        for path in ("/boot/v1/bootscript?mac=" + fleet.mac_of(42), f"/cloud-init/node-42/{fleet.token_of(42)}/meta-data",
                     probe_path):
            status, headers, body = restarted.get(path)
            assert status == 503 and headers.get("retry-after") == "1", (status, body[:200])
        # nginx meets it too (its 503s are counted as waits), and asks another replica: the storm sees no error.
        wait_until(lambda: json.loads(restarted.get("/readiness")[2])["requests"]["waits"] > 3, timeout=10)
        mark("load unblocked")
        lock_loop.run_until_complete(lock_conn.execute("ROLLBACK"))

        # Its answers from the first 200 on are complete, the edit it missed included.
        def answered() -> bool:
            status, _, body = restarted.get(probe_path)
            if status == 503:
                return False
            assert status == 200 and missed in body, body[:200]
            return True

        wait_until(answered, timeout=20, interval=0.005)
        mark("ready")
        assert restarted.get("/boot/v1/bootscript?mac=" + fleet.mac_of(42))[2] == expected[42, 0]
        assert restarted.get(f"/cloud-init/node-42/{fleet.token_of(42)}/meta-data")[2] == expected[42, 2]
        assert restarted.get("/readiness")[0] == 200

        for _ in range(EDITS_PER_PHASE):
            edit_and_measure([0, 1, 2])
        choreography_ended = time.monotonic()
        mark("edits done")
        storm_thread.join(timeout=60)
        totals = json.loads(restarted.get("/readiness")[2])["requests"]
    finally:
        lock_loop.run_until_complete(lock_conn.close())
        lock_loop.close()
        nginx.stop()
        for d in direct:
            d.close()

    summary = outcome["result"].summary()
    timeline["storm ended"] = round(outcome["ended"] - began, 2)
    print(json.dumps({"storm": summary, "timeline_s": timeline, "propagation_ms": {
        f"replica-{r + 1}": {"edits": len(d), "p50": percentile(d, 0.5), "p99": percentile(d, 0.99),
                             "max": round(max(d), 1)} for r, d in delays.items()}}))
    assert summary["errors"] == 0 and summary["wrong"] == 0, summary["error_samples"]
    assert summary["answered_connections"] == NODES and summary["requests"] == NODES * 4
    assert choreography_ended < outcome["ended"], "the storm ended before the replica was back: nothing was shown"
    # nginx sent the restarted replica nodes' requests again (beyond the ones this test asked it directly).
    assert totals["total"] - totals["waits"] > restarted.answered
    assert len(delays[1]) == 2 * EDITS_PER_PHASE and len(delays[0]) == 3 * EDITS_PER_PHASE
