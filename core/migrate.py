"""Numbered SQL migrations under core/migrations, applied under an advisory lock.

Each file `NNNN_name.sql` runs in its own transaction and is recorded with
its SHA-256 in public.schema_migrations.  Re-running is a no-op.  The runner
refuses to go on when the database knows a migration the code does not
(the database is ahead) or when an applied file was edited since.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.resources
import re
from collections.abc import Callable

import asyncpg

# One fixed key: every Chamicore process that migrates takes the same lock.
MIGRATION_LOCK_KEY = 0x43484D43_4D494752  # "CHMCMIGR"

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The database and the code disagree about the schema; nothing was changed."""

    def __init__(self, detail: str, hint: str) -> None:
        self.detail = detail
        self.hint = hint
        super().__init__(f"{detail}\nhint: {hint}")


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


@dataclasses.dataclass(frozen=True, slots=True)
class MigrationState:
    migration: Migration
    applied_at: datetime.datetime | None

    @property
    def applied(self) -> bool:
        return self.applied_at is not None


def bundled_migrations() -> list[Migration]:
    found = []
    for entry in importlib.resources.files("core.migrations").iterdir():
        match = _FILE_RE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a number", "renumber the newer file")
    return found


async def _applied(conn: asyncpg.Connection) -> dict[int, asyncpg.Record]:
    exists = await conn.fetchval("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum, applied_at FROM public.schema_migrations")
    return {row["version"]: row for row in rows}


def _check(migrations: list[Migration], applied: dict[int, asyncpg.Record]) -> None:
    known = {m.version: m for m in migrations}
    ahead = sorted(set(applied) - set(known))
    if ahead:
        names = ", ".join(f"{v:04d}_{applied[v]['name']}" for v in ahead)
        raise MigrationError(
            f"the database has migrations this code does not know: {names}",
            "the database is ahead of this Chamicore; run the newer version, or restore a matching backup",
        )
    for version, row in applied.items():
        if row["checksum"] != known[version].checksum:
            raise MigrationError(
                f"migration {known[version].filename} was edited after it was applied",
                "never edit an applied migration: restore the file and put the change in a new, higher-numbered one",
            )


async def status(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[MigrationState]:
    """Every known migration and when it was applied; raises MigrationError on drift."""
    migrations = bundled_migrations() if migrations is None else migrations
    applied = await _applied(conn)
    _check(migrations, applied)
    return [MigrationState(m, applied[m.version]["applied_at"] if m.version in applied else None) for m in migrations]


async def migrate(
    conn: asyncpg.Connection,
    migrations: list[Migration] | None = None,
    on_apply: Callable[[Migration], None] | None = None,
) -> list[Migration]:
    """Apply pending migrations in order; return those applied by this call."""
    migrations = bundled_migrations() if migrations is None else migrations
    # A session lock, so that it spans the per-file transactions; a second
    # starter waits here and then finds nothing left to do.
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(_BOOKKEEPING)
        applied = await _applied(conn)
        _check(migrations, applied)
        done = []
        for migration in migrations:
            if migration.version in applied:
                continue
            if on_apply:
                on_apply(migration)
            async with conn.transaction():
                try:
                    await conn.execute(migration.sql)
                except asyncpg.PostgresError as exc:
                    raise MigrationError(
                        f"migration {migration.filename} failed: {exc}",
                        "nothing of this file was applied; fix the SQL or the database and run again",
                    ) from exc
                await conn.execute(
                    "INSERT INTO public.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version, migration.name, migration.checksum,
                )
            done.append(migration)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
