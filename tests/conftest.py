"""Real parts for the tests: one throwaway PostgreSQL cluster per test session,
a freshly migrated database per test, and boot-path servers on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import asyncpg
import pytest

from core import db, migrate
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DB = "chamicore_template"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tmp_root() -> Path:
    # Outside /root, and traversable: the cluster runs as an unprivileged user when we are root,
    # and the product leaves the modes of directories above its data alone.
    base = Path(os.environ.get("CHAMICORE_TEST_TMP", "/tmp"))
    root = Path(tempfile.mkdtemp(prefix="chamicore-test-", dir=base))
    root.chmod(0o711)
    return root


@pytest.fixture(scope="session")
def pg_cluster():
    """A PostgreSQL cluster on 127.0.0.1 for the whole session (Debian's binaries if present)."""
    cluster = EmbeddedPostgres(_tmp_root() / "pg", port=free_port(),
                               bin_dir=pgserver_bin_dir() or system_bin_dir(), durable=False)
    cluster.start()

    async def make_template():
        conn = await db.connect(cluster.dsn)
        await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        await conn.close()
        conn = await db.connect(cluster.dsn.rsplit("/", 1)[0] + "/" + TEMPLATE_DB)
        await migrate.migrate(conn)
        await conn.close()

    asyncio.run(make_template())
    yield cluster
    cluster.destroy()


def dsn_for(cluster: EmbeddedPostgres, name: str) -> str:
    return cluster.dsn.rsplit("/", 1)[0] + "/" + name


async def create_database(cluster: EmbeddedPostgres, template: str = TEMPLATE_DB) -> str:
    """A new database copied from `template`; returns its DSN."""
    name = "t_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(cluster.dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await conn.close()
    return dsn_for(cluster, name)


def _create_database(cluster: EmbeddedPostgres, template: str) -> str:
    return asyncio.run(create_database(cluster, template))


@pytest.fixture
def dsn(pg_cluster) -> str:
    """A new database with the whole schema applied."""
    return _create_database(pg_cluster, TEMPLATE_DB)


@pytest.fixture
def empty_dsn(pg_cluster) -> str:
    """A new database with no schema at all."""
    return _create_database(pg_cluster, "template0")


@pytest.fixture
async def conn(dsn):
    connection = await db.connect(dsn)
    yield connection
    await connection.close()


class ServiceServer:
    """`chamicore serve boot|admin` in a child process, on a free port."""

    def __init__(self, dsn: str, interface: str = "rsgi", service: str = "boot", **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.service = service
        self.env = dict(
            os.environ,
            CHAMICORE_DATABASE_URL=dsn,
            **{f"CHAMICORE_{service.upper()}_LISTEN": f"127.0.0.1:{self.port}"},
            CHAMICORE_FEED_CHECK_S="1",
            CHAMICORE_TELEMETRY_FLUSH_S="0.2",
            CHAMICORE_LOG_LEVEL="warning",
            CHAMICORE_SECRET_KEY="test-signing-key-0123456789abcdef",
            CHAMICORE_CREDENTIALS_KEY="test-credentials-key-0123456789abcdef",
            **env,
        )
        self.interface = interface
        self.process: subprocess.Popen | None = None

    def start(self, wait_ready: bool = True) -> ServiceServer:
        extra = ["--interface", self.interface] if self.service == "boot" else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", self.service, *extra],
            env=self.env, cwd=ROOT, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self.wait_listening()
        if wait_ready:
            self.wait_ready()
        return self

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), error.read()

    def wait_listening(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.service} server exited: {self.process.stderr.read().decode()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{self.service} server did not listen")

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get("/readiness")[0] == 200:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.service} server never became ready")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        if self.process and self.process.stderr:
            self.process.stderr.close()


@pytest.fixture
def boot_server(dsn):
    servers = []

    def start(interface: str = "rsgi", wait_ready: bool = True, server_dsn: str | None = None, **env):
        server = ServiceServer(server_dsn or dsn, interface, **env)
        servers.append(server)
        return server.start(wait_ready)

    yield start
    for server in servers:
        server.stop()


def service_token(server: ServiceServer, dsn: str, client_id: str = "test-admin", roles=("admin",)) -> str:
    """A bearer token from a running admin server, for a service account made on the spot."""
    from admin_api.auth.accounts import create_account

    async def make() -> str:
        conn = await db.connect(dsn)
        try:
            return await create_account(conn, client_id, list(roles))
        finally:
            await conn.close()

    secret = asyncio.run(make())
    body = f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}".encode()
    request = urllib.request.Request(server.url + "/auth/v1/token", data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["access_token"]


@pytest.fixture
def admin_server(dsn):
    servers = []

    def start(**env):
        server = ServiceServer(dsn, service="admin", **env)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.01):
    """Poll `predicate` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)


async def stop_task(task: asyncio.Task) -> None:
    """Cancel a daemon's run() and wait for its cleanup (its finally closes its database connection)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def running(job):
    """A sync job's real run loop (leadership, wake-ups) in this event loop, for the length of the block."""
    task = asyncio.create_task(job.run())
    try:
        yield job
    finally:
        await stop_task(task)
