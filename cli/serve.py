"""`chamicore serve boot`: one service in the foreground, under granian."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from cli.command import Commands, Invocation, handles, verbs
from cli.errors import EXIT_CONFIG, CLIError
from core import tracing
from core.config import Address, Config, ConfigError
from core.logs import configure as configure_logs
from core.logs import granian_logging
from core.signing import load_signer
from core.tls import check_certificate, expiry_warning

log = logging.getLogger("chamicore.boot")


def register(commands: Commands) -> None:
    serve = verbs(commands.add_parser("serve", help="run one service in the foreground"), "service", "SERVICE")
    boot = handles(serve.add_parser("boot", help="the boot path (iPXE scripts and cloud-init), on granian"),
                   serve_boot)
    boot.add_argument("--interface", choices=("rsgi", "asgi"),
                      help="granian interface (default CHAMICORE_BOOT_INTERFACE, rsgi: the faster one)")
    boot.add_argument("--listener", choices=("all", "http", "https"), default="all",
                      help="all (default): HTTP, and HTTPS in a second process when CHAMICORE_BOOT_TLS_LISTEN is "
                           "set; or only one of them")
    handles(serve.add_parser("admin", help="the admin REST API (Starlette), on granian"), serve_admin)
    handles(serve.add_parser("sync", help="the sync daemons the configuration enables (event relay to NATS)"),
            serve_sync)


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit toward the hard limit (never beyond)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def app_target(module: str, factory: str) -> str:
    """granian's target for `module:factory`, as the installed file's path.

    granian puts the working directory first on sys.path before it imports a
    dotted target, so a folder named `hotpath` or `core` wherever the command
    runs would shadow the installed package.  Given a file path, granian puts
    that file's package root first instead.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise CLIError("serve", f"cannot find the installed module {module}",
                       "reinstall chamicore (pip install chamicore, or make install)", EXIT_CONFIG)
    return f"{spec.origin}:{factory}"


def _database_url(config: Config, service: str) -> str:
    if not config.database_url:
        raise CLIError(service, "CHAMICORE_DATABASE_URL is not set",
                       "set it, or use `chamicore up` which starts an embedded PostgreSQL", EXIT_CONFIG)
    return config.database_url


# prometheus_client's own setting: where the workers of one service meet for /metrics.
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def metrics_directory(service: str, workers: int) -> Iterator[None]:
    """The directory through which each worker's figures reach a scrape of any other, in METRICS_DIR for the
    workers: the operator's when set (emptied of a previous run's files, which would add to this run's), else
    with several workers a private one, removed at exit.  One worker needs none."""
    given = os.environ.get(METRICS_DIR)
    if given:
        for stale in (*Path(given).glob("*.db"), *Path(given).glob("*.bootmetrics")):
            stale.unlink(missing_ok=True)
        yield
        return
    if workers < 2:
        yield
        return
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    directory = tempfile.mkdtemp(prefix=f"chamicore-{service}-metrics-",
                                 dir=runtime if runtime and os.path.isdir(runtime) else None)
    os.environ[METRICS_DIR] = directory
    try:
        yield
    finally:
        os.environ.pop(METRICS_DIR, None)
        shutil.rmtree(directory, ignore_errors=True)


def _granian(config: Config, service: str, module: str, listen: Address, interface: str, workers: int,
             factory_name: str = "create_app", **options) -> int:
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels

    # granian's own lines (start, workers, stop) go through the same format; each worker's factory configures
    # the rest of its logging (core.logs.configure).
    configure_logs(config, service)
    with metrics_directory(service, workers):
        Granian(app_target(module, factory_name), factory=True, address=listen.host, port=listen.port,
                interface=Interfaces.RSGI if interface == "rsgi" else Interfaces.ASGI, workers=workers,
                loop=Loops.uvloop, log_access=False, log_level=LogLevels(config.log_level),
                log_dictconfig=granian_logging(config, service), websockets=service == "admin", **options).serve()
    return 0


def serve_boot(run: Invocation) -> int:
    config = run.config
    _database_url(config, "boot")
    load_signer(config)  # CHAMICORE_BOOT_SIGNING_*: a key or certificate iPXE would refuse stops here, before listening
    interface = run.args.interface or config.boot_interface
    listener = run.args.listener
    if config.boot_tls_listen is None:
        if listener == "https":
            raise CLIError("boot", "CHAMICORE_BOOT_TLS_LISTEN is not set",
                           "set it, CHAMICORE_BOOT_TLS_CERT and CHAMICORE_BOOT_TLS_KEY", EXIT_CONFIG)
        listener = "http"
    elif listener != "http":
        _check_tls(config)  # before anything listens: a bad pair stops both listeners with a clear reason
    # Each connection needs a descriptor; a boot storm holds thousands at once.
    raise_fd_limit(config.boot_max_connections + 1024)
    if listener == "all":
        with _https_sibling(interface) as sibling:
            status = _serve_boot(config, interface, tls=False)
        return status or sibling.status
    return _serve_boot(config, interface, tls=listener == "https")


def _serve_boot(config: Config, interface: str, tls: bool) -> int:
    # granian's default backpressure (backlog / workers) silently parks
    # clients beyond ~1024; a boot storm needs room for every node.
    options: dict = {"backlog": config.boot_max_connections, "backpressure": config.boot_max_connections}
    if not tls:
        return _granian(config, "boot", "hotpath.app", config.boot_listen, interface, config.boot_workers, **options)
    from granian.constants import SSLProtocols

    assert config.boot_tls_listen and config.boot_tls_cert and config.boot_tls_key  # load_config checks it
    # TLS 1.2 at least, not granian's default 1.3: iPXE and UEFI firmware speak TLS 1.2.
    return _granian(config, "boot", "hotpath.app", config.boot_tls_listen, interface, config.boot_workers,
                    factory_name="create_tls_app", ssl_cert=Path(config.boot_tls_cert),
                    ssl_key=Path(config.boot_tls_key), ssl_protocol_min=SSLProtocols.tls12, **options)


def _check_tls(config: Config) -> None:
    assert config.boot_tls_cert and config.boot_tls_key  # load_config checks it
    try:
        cert = check_certificate(config.boot_tls_cert, config.boot_tls_key)
    except ConfigError as exc:
        raise CLIError("boot", str(exc), "fix the file or the setting", EXIT_CONFIG) from None
    warning = expiry_warning(cert)
    if warning:
        configure_logs(config, "boot")
        log.warning("%s: TLS clients will refuse it", warning)


class _Sibling:
    """The HTTPS listener's process, started beside the HTTP one and stopped with it."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.stopping = False
        self.status = 0

    def watch(self) -> None:
        code = self.process.wait()
        if not self.stopping:  # it stopped on its own (failed, or was signalled): the HTTP listener stops too
            self.status = code if code >= 0 else 128 - code  # killed by a signal: the shell's 128 + its number
            os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def _https_sibling(interface: str) -> Iterator[_Sibling]:
    env = dict(os.environ)
    shared = env.get(METRICS_DIR)
    if shared:  # its workers' figures apart from the HTTP ones (each listener's /metrics counts its own)
        env[METRICS_DIR] = os.path.join(shared, "https")
        os.makedirs(env[METRICS_DIR], exist_ok=True)
    process = subprocess.Popen([sys.executable, "-P", "-m", "cli.main", "serve", "boot", "--listener", "https",
                                "--interface", interface], env=env)
    sibling = _Sibling(process)
    threading.Thread(target=sibling.watch, name="chamicore-https-listener", daemon=True).start()
    try:
        yield sibling
    finally:
        sibling.stopping = True
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve_admin(run: Invocation) -> int:
    config = run.config
    _database_url(config, "admin")
    return _granian(config, "admin", "admin_api.app", config.admin_listen, "asgi", config.admin_workers)


def serve_sync(run: Invocation) -> int:
    import asyncio

    from sync.runner import enabled_jobs, run_jobs

    config = run.config
    _database_url(config, "sync")
    jobs = enabled_jobs(config)
    configure_logs(config, "sync")
    tracing.configure(config, "sync")  # each job's spans as chamicore-sync-<job>
    try:
        asyncio.run(run_jobs(jobs))
    finally:
        tracing.shutdown()
    return 0
