"""GET /sync/v1/status: every sync daemon replica, as it last reported itself."""

from __future__ import annotations

import datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import json_response
from admin_api.routing import Router

router = Router("sync")
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


@router.get("/sync/v1/status", scope="read:smd", summary="Sync daemons: active or standby, last success and error",
            response=list[ReplicaStatus])
async def sync_status(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        rows = await conn.fetch(QUERY)
    return json_response([to_status(r) for r in rows])
