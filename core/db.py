"""asyncpg connections and pools, set up the same way for every process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TypeAlias

import asyncpg

from core import tracing

# What a query helper takes: a connection of its own or one borrowed from a pool (`async with pool.acquire()`).
Connection: TypeAlias = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb columns arrive as Python objects and leave as JSON text.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class NoPrimaryError(ConnectionError):
    """Every host of a multi-host DSN answered, and none takes writes (target_session_attrs=read-write): a failover
    is under way.  A ConnectionError, so that whatever retries a lost database retries this too."""


async def _connect_primary(*args, **kwargs) -> asyncpg.Connection:
    # asyncpg raises an InternalClientError here, which no caller would take for "the database is away".
    try:
        return await asyncpg.connect(*args, **kwargs)
    except asyncpg.exceptions.TargetServerAttributeNotMatched as exc:
        raise NoPrimaryError(str(exc)) from exc


async def connect(dsn: str, **kwargs) -> asyncpg.Connection:
    conn = await _connect_primary(dsn, **kwargs)
    await _init_connection(conn)
    return conn


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, **kwargs) -> asyncpg.Pool:
    if tracing.enabled():  # what a connection writes carries the trace it is written for (the change feed's)
        kwargs.setdefault("setup", tracing.carry_to_database)
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection,
                                     connect=_connect_primary, **kwargs)


Notified = Callable[[object, int, str, object], None]  # asyncpg's listener: (connection, pid, channel, payload)


async def listen(conn: asyncpg.Connection, channel: str | None, wake: asyncio.Event,
                 on_notify: Notified | None = None) -> asyncio.Event:
    """Set `wake` on every NOTIFY on `channel` and when the connection is lost.

    Returns the event that says the connection was lost, so a waiting loop can
    tell "there is work" from "reconnect".  `on_notify` sees each payload first.
    """
    lost = asyncio.Event()

    def on_lost(_conn: object) -> None:
        lost.set()
        wake.set()

    def on_message(connection: object, pid: int, name: str, payload: object) -> None:
        if on_notify is not None:
            on_notify(connection, pid, name, payload)
        wake.set()

    conn.add_termination_listener(on_lost)
    if channel:
        await conn.add_listener(channel, on_message)
    return lost
