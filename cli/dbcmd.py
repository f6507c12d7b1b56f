"""`chamicore db migrate|status`."""

from __future__ import annotations

import asyncio

import asyncpg

from cli.command import Commands, Invocation, handles, verbs
from cli.errors import EXIT_DATABASE, CLIError
from core import db, migrate
from core.config import Config, mask_url


def register(commands: Commands) -> None:
    database = verbs(commands.add_parser("db", help="database schema"), "db_command", "ACTION")
    handles(database.add_parser("migrate", help="apply pending migrations (safe to run from several hosts at once)"),
            migrate_schema)
    handles(database.add_parser("status", help="list migrations and whether each is applied"), status)


def migrate_schema(run: Invocation) -> int:
    asyncio.run(run_migrate(require_database_url(run.config)))
    return 0


def status(run: Invocation) -> int:
    asyncio.run(run_status(require_database_url(run.config)))
    return 0


async def _connect(dsn: str) -> asyncpg.Connection:
    try:
        return await db.connect(dsn, timeout=10)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise CLIError("database", f"cannot connect to {mask_url(dsn)}: {exc}",
                       "check CHAMICORE_DATABASE_URL and that PostgreSQL is running", EXIT_DATABASE) from exc


def require_database_url(config: Config) -> str:
    if not config.database_url:
        raise CLIError("database", "CHAMICORE_DATABASE_URL is not set",
                       "set it to your PostgreSQL URL; `chamicore up` starts and migrates an embedded one itself",
                       EXIT_DATABASE)
    return config.database_url


async def run_migrate(dsn: str, quiet: bool = False) -> list[migrate.Migration]:
    conn = await _connect(dsn)
    try:
        def announce(m: migrate.Migration) -> None:
            if not quiet:
                print(f"applying {m.filename} ...", flush=True)

        applied = await migrate.migrate(conn, on_apply=announce)
    except migrate.MigrationError as exc:
        raise CLIError("database", exc.detail, exc.hint, EXIT_DATABASE) from exc
    finally:
        await conn.close()
    if not quiet:
        print(f"{len(applied)} migration(s) applied" if applied else "schema is up to date")
    return applied


async def run_status(dsn: str) -> int:
    conn = await _connect(dsn)
    try:
        states = await migrate.status(conn)
    except migrate.MigrationError as exc:
        raise CLIError("database", exc.detail, exc.hint, EXIT_DATABASE) from exc
    finally:
        await conn.close()
    pending = 0
    for state in states:
        when = state.applied_at.isoformat(timespec="seconds") if state.applied_at is not None else "pending"
        pending += not state.applied
        print(f"{state.migration.filename:<32} {when}")
    print(f"{len(states) - pending} applied, {pending} pending")
    return pending
