"""Databases in the session's PostgreSQL cluster: each test gets its own, copied from a migrated template."""

from __future__ import annotations

import uuid

import asyncpg

from core.embedded import EmbeddedPostgres

TEMPLATE_DB = "chamicore_template"


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
