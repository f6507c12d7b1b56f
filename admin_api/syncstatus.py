"""GET /sync/v1/status: every sync daemon replica, as it last reported itself (the query: core/syncstatus.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import json_response
from admin_api.routing import Router
from core.syncstatus import ReplicaStatus, replicas

router = Router("sync")


@router.get("/sync/v1/status", scope="read:smd", summary="Sync daemons: active or standby, last success and error",
            response=list[ReplicaStatus])
async def sync_status(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        found = await replicas(conn)
    return json_response(found)
