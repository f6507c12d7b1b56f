"""The audit: every mutation recorded with who made it and the status it got, and
GET /auth/v1/audit to read it (admins only)."""

from __future__ import annotations

import datetime

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import field_problem, json_response, query_list
from admin_api.resources import paging
from admin_api.routing import OPERATION, PAGING, Operation, Param, Router

router = Router("audit")
# Set in the ASGI scope of a request that a face makes in-process into this app (an MCP tool running the
# REST handler): that face writes the one audit entry of the call itself.  A scope key, not a header,
# so no network client can set it.
RECORDED_BY_FACE = "chamicore.audit.recorded_by_face"


class AuditLayer:
    """ASGI middleware recording each audited operation (mutations) in auth.audit.

    It sits between the app's exception handlers and the server, so the status
    it records is the one sent: a handler's answer, a problem, a database error
    the app maps (a unique-key clash is 409), a 401/403 from the guard; 500 when
    nothing was sent at all.  The entry is written before the response leaves,
    so a client that reads the audit after its answer finds it.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get(RECORDED_BY_FACE):
            await self.app(scope, receive, send)
            return
        recorded = False

        async def record(status: int) -> None:
            nonlocal recorded
            op: Operation | None = scope.get(OPERATION)  # left by the dispatcher once a route matched
            if recorded or op is None or not op.audited:
                return
            recorded = True
            principal = (scope.get("state") or {}).get("principal")
            request = Request(scope)
            await scope["app"].state.auth.audit(request, f"{op.method} {op.path}", request.url.path,
                                                principal["sub"] if principal else "anonymous", status)

        async def send_recorded(message) -> None:
            if message["type"] == "http.response.start":
                await record(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_recorded)
        except Exception:
            await record(500)  # the server's last-resort handler answers 500
            raise


class AuditEntry(msgspec.Struct, rename="camel"):
    seq: int
    at: datetime.datetime
    actor: str
    action: str
    resource: str
    status: int
    outcome: str
    source_ip: str | None
    detail: dict | None
    request_id: str | None  # the X-Request-ID of the request that made the change (its log lines carry it too)


@router.get("/auth/v1/audit", scope="read:audit", summary="The audit log, newest first", response=list[AuditEntry],
            params=(Param("actor", "these actors"), Param("outcome", "success, failure or denied"),
                    Param("requestId", "the entries of these requests (the X-Request-ID of their responses)"),
                    Param("action", "actions, e.g. `token.issued` or `POST /hsm/v2/State/Components`"),
                    Param("since", "RFC 3339 time", schema={"type": "string", "format": "date-time"}),
                    Param("resource", "entries whose resource path has this id as a segment (a node's history)"),
                    *PAGING))
async def audit_log(request: Request) -> Response:
    limit, offset = paging(request)
    where: list[str] = []
    args: list[object] = []
    for name, column in (("actor", "actor"), ("outcome", "outcome"), ("action", "action"),
                         ("requestId", "request_id")):
        if values := query_list(request, name):
            args.append(values)
            where.append(f"{column} = ANY(${len(args)}::text[])")
    if (since := request.query_params.get("since")) is not None:
        try:
            moment = datetime.datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise field_problem("since", "expected an RFC 3339 time, e.g. 2026-01-31T12:00:00Z", 400) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        args.append(moment)
        where.append(f"at >= ${len(args)}")
    if named := request.query_params.get("resource"):
        args.append(named.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"))
        where.append(f"(resource LIKE '%/' || ${len(args)} OR resource LIKE '%/' || ${len(args)} || '/%')")
    condition = (" WHERE " + " AND ".join(where)) if where else ""
    async with request.app.state.pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT * FROM auth.audit{condition} ORDER BY seq DESC LIMIT {limit} OFFSET {offset}",
                                *args)
    return json_response([AuditEntry(seq=r["seq"], at=r["at"], actor=r["actor"], action=r["action"],
                                     resource=r["resource"], status=r["status"], outcome=r["outcome"],
                                     source_ip=str(r["source_ip"]) if r["source_ip"] else None, detail=r["detail"],
                                     request_id=r["request_id"])
                          for r in rows])
