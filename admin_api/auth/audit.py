"""GET /auth/v1/audit: who changed what, when, and how it went (admins only)."""

from __future__ import annotations

import datetime

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import field_problem, json_response, query_list
from admin_api.resources import paging
from admin_api.routing import PAGING, Param, Router

router = Router("audit")


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


@router.get("/auth/v1/audit", scope="read:audit", summary="The audit log, newest first", response=list[AuditEntry],
            params=(Param("actor", "these actors"), Param("outcome", "success, failure or denied"),
                    Param("action", "actions, e.g. `token.issued` or `POST /hsm/v2/State/Components`"),
                    Param("since", "RFC 3339 time", schema={"type": "string", "format": "date-time"}), *PAGING))
async def audit_log(request: Request) -> Response:
    limit, offset = paging(request)
    where: list[str] = []
    args: list[object] = []
    for name, column in (("actor", "actor"), ("outcome", "outcome"), ("action", "action")):
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
    condition = (" WHERE " + " AND ".join(where)) if where else ""
    async with request.app.state.pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT * FROM auth.audit{condition} ORDER BY seq DESC LIMIT {limit} OFFSET {offset}",
                                *args)
    return json_response([AuditEntry(seq=r["seq"], at=r["at"], actor=r["actor"], action=r["action"],
                                     resource=r["resource"], status=r["status"], outcome=r["outcome"],
                                     source_ip=str(r["source_ip"]) if r["source_ip"] else None, detail=r["detail"])
                          for r in rows])
