"""CloudEvents written to the transactional outbox (events.outbox).

A mutation writes its event in the same transaction as the change, so an
event exists exactly when the change committed; the relay in sync/ ships
them to NATS later (with the W3C traceparent of the change's trace, when it
is traced).  Types read `chamicore.<domain>.<resource>.<action>`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from core import db, tracing

SOURCE = "/chamicore/admin-api"


def event_type(domain: str, resource: str, action: str) -> str:
    return f"chamicore.{domain}.{resource}.{action}"


async def emit(conn: db.Connection, domain: str, resource: str, action: str, subject: str,
               data: Any = None) -> None:
    await conn.execute(
        "INSERT INTO events.outbox (source, type, subject, data, traceparent) VALUES ($1, $2, $3, $4, $5)",
        SOURCE, event_type(domain, resource, action), subject, data, tracing.traceparent())


async def emit_many(conn: db.Connection, domain: str, resource: str, action: str, subjects: Sequence[str],
                    data: Sequence[Any] | None = None) -> None:
    """One event per subject, in one statement (bulk import writes thousands)."""
    if not subjects:
        return
    await conn.execute(
        "INSERT INTO events.outbox (source, type, subject, data, traceparent) "
        "SELECT $1, $2, s, d::jsonb, $5 FROM unnest($3::text[], $4::text[]) AS u(s, d)",
        SOURCE, event_type(domain, resource, action), list(subjects),
        # As text: a list of JSON arrays would otherwise read as one 2-D array.
        [json.dumps(d) for d in data] if data is not None else [None] * len(subjects), tracing.traceparent())
