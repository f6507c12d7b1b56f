"""`chamicore serve boot`: one service in the foreground, under granian."""

from __future__ import annotations

import importlib.util
import resource

from cli.errors import EXIT_CONFIG, CLIError
from core.config import Config


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


def serve_boot(config: Config, interface: str | None = None) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    if not config.database_url:
        raise CLIError("boot", "CHAMICORE_DATABASE_URL is not set",
                       "set it, or use `chamicore up` which starts an embedded PostgreSQL", EXIT_CONFIG)
    interface = interface or config.boot_interface
    # Each connection needs a descriptor; a boot storm holds thousands at once.
    raise_fd_limit(config.boot_max_connections + 1024)
    server = Granian(
        app_target("hotpath.app", "create_app"),
        factory=True,
        address=config.boot_listen.host,
        port=config.boot_listen.port,
        interface=Interfaces.RSGI if interface == "rsgi" else Interfaces.ASGI,
        workers=config.boot_workers,
        loop=Loops.uvloop,
        # granian's default backpressure (backlog / workers) silently parks
        # clients beyond ~1024; a boot storm needs room for every node.
        backlog=config.boot_max_connections,
        backpressure=config.boot_max_connections,
        log_access=False,
        websockets=False,
    )
    server.serve()


def serve_admin(config: Config) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    if not config.database_url:
        raise CLIError("admin", "CHAMICORE_DATABASE_URL is not set",
                       "set it, or use `chamicore up` which starts an embedded PostgreSQL", EXIT_CONFIG)
    Granian(
        app_target("admin_api.app", "create_app"),
        factory=True,
        address=config.admin_listen.host,
        port=config.admin_listen.port,
        interface=Interfaces.ASGI,
        workers=config.admin_workers,
        loop=Loops.uvloop,
        log_access=False,
        websockets=False,
    ).serve()


def serve_sync(config: Config) -> None:
    import asyncio
    import logging

    from sync.runner import enabled_jobs, run_jobs

    if not config.database_url:
        raise CLIError("sync", "CHAMICORE_DATABASE_URL is not set",
                       "set it, or use `chamicore up` which starts an embedded PostgreSQL", EXIT_CONFIG)
    jobs = enabled_jobs(config)
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_jobs(jobs))
