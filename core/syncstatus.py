"""The sync daemons' replicas as they last reported themselves (sync.status): read by the admin API
(GET /sync/v1/status) and by `chamicore sync status`, through this one query."""

from __future__ import annotations

import datetime
from typing import Any

import msgspec

from core import db

QUERY = ("SELECT job, instance, state, last_success, last_error, last_error_at, counts, updated_at, "
         "extract(epoch FROM now() - updated_at)::float8 AS age FROM sync.status ORDER BY job, state, instance")


class ReplicaStatus(msgspec.Struct, rename="camel"):
    job: str
    instance: str
    state: str
    last_success: datetime.datetime | None
    last_error: str | None
    last_error_at: datetime.datetime | None
    counts: dict[str, Any]
    seconds_since_report: float


def to_status(row) -> ReplicaStatus:
    return ReplicaStatus(job=row["job"], instance=row["instance"], state=row["state"],
                         last_success=row["last_success"], last_error=row["last_error"],
                         last_error_at=row["last_error_at"], counts=row["counts"],
                         seconds_since_report=round(row["age"], 1))


async def replicas(conn: db.Connection) -> list[ReplicaStatus]:
    """Every replica, by job, state and instance."""
    return [to_status(row) for row in await conn.fetch(QUERY)]
