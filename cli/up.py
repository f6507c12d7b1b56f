"""`chamicore up`: the whole system on one machine, in the foreground.

Starts the embedded PostgreSQL (unless CHAMICORE_DATABASE_URL names a
server), applies migrations, then runs each service as a child process
and says what runs where.  Ctrl-C or SIGTERM stops the children, then
PostgreSQL, and leaves nothing running.  A second `up` reuses the data.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from cli.command import Commands, Invocation, handles
from cli.dbcmd import run_migrate
from cli.errors import EXIT_FAILURE, CLIError
from core import db
from core.config import Config, mask_url, nats_servers
from core.embedded import EmbeddedPostgres, EmbeddedPostgresError

READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15


def register(commands: Commands) -> None:
    up = handles(commands.add_parser(
        "up", help="start everything (embedded PostgreSQL unless CHAMICORE_DATABASE_URL is set)"), up_command)
    up.add_argument("--data-dir", type=Path, help="where to keep everything up creates "
                    "(default: CHAMICORE_DATA_DIR, ~/.local/share/chamicore, or /var/lib/chamicore as root)")


def up_command(run: Invocation) -> int:
    data_dir = (run.args.data_dir or run.config.resolved_data_dir).expanduser().resolve()
    return run_up(run.config, data_dir)


class _Stop(Exception):
    pass


@dataclass
class Service:
    name: str
    argv: list[str]
    ready_url: str | None
    process: subprocess.Popen | None = field(default=None, repr=False)  # set once run_up starts it

    @property
    def started(self) -> subprocess.Popen:
        if self.process is None:
            raise RuntimeError(f"the {self.name} has not been started")
        return self.process


def _services(config: Config) -> list[Service]:
    # -P: the working directory is not put on sys.path, so a folder named `core` or `hotpath`
    # where `up` runs cannot shadow the installed package in the children.
    python = [sys.executable, "-P", "-m", "cli.main", "serve"]
    services = [
        Service("boot path", [*python, "boot"], config.boot_listen.local_url + "/readiness"),
        Service("admin API", [*python, "admin"], config.admin_listen.local_url + "/readiness"),
        # Discovery and power always run; the Kea sync and the event relay when configured.
        Service("sync daemons", [*python, "sync"], None),
    ]
    return services


def _wait_ready(service: Service, deadline: float) -> None:
    if service.ready_url is None:
        return
    process = service.started
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CLIError(service.name, f"exited with status {process.returncode} while starting",
                           "read its log lines above; a port already in use is the usual cause")
        try:
            with urllib.request.urlopen(service.ready_url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise CLIError(service.name, f"not ready after {READY_TIMEOUT_S} s ({service.ready_url})",
                   "read its log lines above")


def _stop_children(services: list[Service]) -> None:
    running = [s.process for s in services if s.process is not None and s.process.poll() is None]
    for process in running:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def _bootstrap(dsn: str, data_dir: Path, config: Config) -> tuple[Path | None, Path | None]:
    """The admin service account and the console's first user; each file when it was just written."""
    from admin_api.auth.bootstrap import bootstrap_admin, bootstrap_console_user

    conn = await db.connect(dsn)
    try:
        account = await bootstrap_admin(conn, data_dir, f"{config.token_issuer}/auth/v1/token",
                                        config.token_lifetime_s)
        user = await bootstrap_console_user(conn, data_dir, f"{config.admin_listen.local_url}/ui/")
        return account, user
    finally:
        await conn.close()


def _lock(data_dir: Path):
    """Held for the whole run: one `up` per data directory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = open(data_dir / "up.lock", "w")  # noqa: SIM115 - closed when up stops
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise CLIError("up", f"another `chamicore up` is using {data_dir}",
                       "stop it first, or pass a different --data-dir") from None
    return lock


def _database(config: Config, data_dir: Path) -> tuple[str, str, EmbeddedPostgres | None]:
    """(DSN, what to say about it, the embedded server to stop later or None)."""
    if config.database_url:
        return config.database_url, f"external, {mask_url(config.database_url)}", None
    postgres = EmbeddedPostgres(data_dir / "postgres")
    print(f"starting embedded PostgreSQL in {postgres.pgdata} ...", flush=True)
    try:
        postgres.start()
    except EmbeddedPostgresError as exc:
        raise CLIError("PostgreSQL", exc.detail, exc.hint) from exc
    return postgres.dsn, f"embedded, {postgres.dsn}", postgres


def _environment(dsn: str, data_dir: Path) -> dict[str, str]:
    """The children's settings: the database, and keys for secrets at rest (the operator's if set, else
    files kept 0600 under the data dir)."""
    from core.crypto import create_key_file

    env = dict(os.environ, CHAMICORE_DATABASE_URL=dsn, CHAMICORE_DATA_DIR=str(data_dir))
    for setting, name in (("SECRET_KEY", "secret.key"), ("CREDENTIALS_KEY", "credentials.key")):
        if not os.environ.get(f"CHAMICORE_{setting}") and not os.environ.get(f"CHAMICORE_{setting}_FILE"):
            env[f"CHAMICORE_{setting}_FILE"] = str(create_key_file(data_dir / "secrets" / name))
    return env


def _say_where(config: Config, data_dir: Path, database: str, new_credentials: bool, new_user: bool) -> None:
    from admin_api.auth.bootstrap import CONSOLE_USER, console_credentials_path, credentials_path

    print(f"\nChamicore is up. Data: {data_dir}")
    print(f"  PostgreSQL  {database}")
    bootfile = (f"{config.node_boot_url}/boot/v1/boot.ipxe" if config.node_boot_url
                else "set CHAMICORE_BOOT_URL to the URL nodes reach it at")
    print(f"  boot path   {config.boot_listen.local_url}  (DHCP bootfile for iPXE: {bootfile})")
    if config.boot_tls_listen is not None:
        print(f"  boot path   {config.boot_tls_listen.local('https')}  (HTTPS, certificate {config.boot_tls_cert}; "
              "for iPXE built with TLS and UEFI HTTPS boot)")
    admin = config.admin_listen.local_url
    print(f"  console     {admin}/ui/  (web console; log in with a user of `chamicore users list`)")
    print(f"  admin API   {admin}  (OpenAPI: {admin}/api/openapi.json, docs: {admin}/api/docs)")
    public = ", coresmd's reads open" if config.openchami_public_reads else ""
    print(f"  OpenCHAMI   {admin}/openchami  (ochami cluster.uri, coresmd and magellan SMD URL{public})")
    print(f"  MCP         {admin}/mcp  ({config.mcp_mode}; stdio: chamicore mcp)")
    print("  sync        discovery scans and power transitions")
    if config.nats_url:
        print(f"  sync        outbox relay to {','.join(mask_url(s) for s in nats_servers(config.nats_url))}")
    if config.kea_url:
        print(f"  sync        Kea reservations through {config.kea_url}")
    print(f"  admin credentials  {credentials_path(data_dir)}"
          + ("  (new: client_credentials for the admin role)" if new_credentials else ""))
    if new_user:
        print(f"  console login      user {CONSOLE_USER!r}, password in {console_credentials_path(data_dir)}  "
              f"(new; change it with `chamicore users passwd {CONSOLE_USER}`)")
    print("Press Ctrl-C to stop.", flush=True)


def _watch(services: list[Service]) -> NoReturn:
    while True:
        for service in services:
            if service.started.poll() is not None:
                raise CLIError(service.name, f"exited unexpectedly with status {service.started.returncode}",
                               "read its log lines above; everything else is being stopped", EXIT_FAILURE)
        time.sleep(0.5)


def run_up(config: Config, data_dir: Path) -> int:
    lock = _lock(data_dir)

    def on_signal(signum, _frame):
        raise _Stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    postgres: EmbeddedPostgres | None = None
    services = _services(config)
    try:
        dsn, where, postgres = _database(config, data_dir)
        asyncio.run(run_migrate(dsn))
        env = _environment(dsn, data_dir)
        written, new_user = asyncio.run(_bootstrap(dsn, data_dir, config))
        deadline = time.monotonic() + READY_TIMEOUT_S
        for service in services:
            service.process = subprocess.Popen(service.argv, env=env, start_new_session=True)
        for service in services:
            _wait_ready(service, deadline)
        _say_where(config, data_dir, where, written is not None, new_user is not None)
        _watch(services)
    except _Stop:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        # Children first (they hold database connections), then PostgreSQL.
        for signum in previous:
            signal.signal(signum, signal.SIG_IGN)
        _stop_children(services)
        if postgres is not None:
            postgres.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        lock.close()
        print("stopped", flush=True)
