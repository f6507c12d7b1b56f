"""asyncpg connections and pools, set up the same way for every process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TypeAlias
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg

from core import tracing

# What a query helper takes: a connection of its own or one borrowed from a pool (`async with pool.acquire()`).
Connection: TypeAlias = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb columns arrive as Python objects and leave as JSON text.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


# What a long-running loop (the boot path's change feed and telemetry) treats as "the database or the connection
# failed: reconnect and carry on".  asyncpg raises InternalClientError ("cannot switch to state ...") for a query
# on a connection its server killed (pg_terminate_backend, a failover) before the loss was noticed.
DATABASE_ERRORS = (OSError, TimeoutError, ConnectionError, asyncpg.PostgresError, asyncpg.InterfaceError,
                   asyncpg.InternalClientError)


class NoPrimaryError(ConnectionError):
    """Every host of a multi-host DSN answered, and none takes writes (target_session_attrs=read-write): a failover
    is under way.  A ConnectionError, so that whatever retries a lost database retries this too."""


# A new pooled connection waits this long per host (asyncpg's default is 60 s).
POOL_CONNECT_TIMEOUT_S = 10.0
_ONE_PRIMARY = ("read-write", "primary")


def _one_dsn_per_host(dsn: str) -> list[tuple[str, str]] | None:
    """`postgresql://u@h1:p1,h2:p2/db?target_session_attrs=read-write` -> (host, DSN of that host alone), in order;
    None when the DSN names one host or asks for something else than the primary (prefer-standby picks among
    them all)."""
    parts = urlsplit(dsn)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if "," not in hosts or parse_qs(parts.query).get("target_session_attrs", [""])[-1] not in _ONE_PRIMARY:
        return None
    return [(host, urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}"))) for host in hosts.split(",")]


async def _connect_primary(dsn: str | None = None, **kwargs) -> asyncpg.Connection:
    """asyncpg.connect, but each host of a multi-host DSN gets the whole `timeout` of its own.

    asyncpg spends one timeout on the whole host list: a first host that accepts TCP and never answers (a frozen
    or unplugged machine rather than a stopped server) uses it up, and the promoted standby after it is never
    tried.  asyncpg's "no host matches" (an InternalClientError) becomes NoPrimaryError."""
    per_host = _one_dsn_per_host(dsn) if dsn else None
    if per_host is None:
        try:
            return await asyncpg.connect(dsn, **kwargs)
        except asyncpg.exceptions.TargetServerAttributeNotMatched as exc:
            raise NoPrimaryError(str(exc)) from exc
    failures: list[Exception] = []
    for host, one in per_host:  # as asyncpg goes through them, but with a timeout each
        try:
            return await asyncpg.connect(one, **kwargs)
        except asyncpg.exceptions.TargetServerAttributeNotMatched as exc:
            failures.append(NoPrimaryError(f"{host} is not the primary: {exc}"))
        except (OSError, TimeoutError, asyncpg.CannotConnectNowError) as exc:
            failures.append(exc)
    # A host that answered as a standby says the most: a failover is under way.
    raise next((f for f in failures if isinstance(f, NoPrimaryError)), failures[-1])


async def connect(dsn: str, **kwargs) -> asyncpg.Connection:
    conn = await _connect_primary(dsn, **kwargs)
    await _init_connection(conn)
    return conn


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, **kwargs) -> asyncpg.Pool:
    if tracing.enabled():  # what a connection writes carries the trace it is written for (the change feed's)
        kwargs.setdefault("setup", tracing.carry_to_database)
    kwargs.setdefault("timeout", POOL_CONNECT_TIMEOUT_S)
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
