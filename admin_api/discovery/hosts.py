"""/discovery/v1/scans/{id}/hosts: a scan's counts and its per-host results, a page at a time.

GET /discovery/v1/scans/{id} answers every host at once, and a CIDR target
names up to 65,536 of them; a page that follows a scan live asks for the
counts and for the hosts it shows.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.discovery.scans import BASE, HostResult, Scan, _counts, _scan
from admin_api.http import field_problem, json_response, problem, query_list
from admin_api.resources import paging
from admin_api.routing import PAGING, Param, Router, one_of
from core.envelope import ListMetadata

router = Router("discovery-hosts")
HOST_STATES = ("pending", "running", "ok", "failed", "cancelled")


class HostPage(msgspec.Struct, rename="camel"):
    metadata: ListMetadata  # total: the hosts in the states asked for
    scan: Scan  # with every host's count, without the results
    items: list[HostResult]


@router.get(BASE + "/{id}/hosts", scope="read:discovery", response=HostPage,
            summary="A scan with its host counts and a page of its per-host results",
            params=(*PAGING, Param("state", "host states, comma = OR",
                                   schema={"type": "string", "pattern": one_of(HOST_STATES)})))
async def list_hosts(request: Request) -> Response:
    limit, offset = paging(request)
    states = query_list(request, "state")
    if bad := [s for s in states if s not in HOST_STATES]:
        raise field_problem("state", f"unknown host state {bad[0][:40]!r}; one of {', '.join(HOST_STATES)}", 400)
    scan_id = request.path_params["id"]
    async with request.app.state.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM discovery.scans WHERE id = $1", scan_id)
        if row is None:
            raise problem(404, f"no scan {scan_id[:255]!r}")
        counts = (await _counts(conn, [scan_id]))[scan_id]
        hosts = await conn.fetch("SELECT * FROM discovery.scan_hosts WHERE scan_id = $1 AND (cardinality($2::text[]) "
                                 "= 0 OR state = ANY($2::text[])) ORDER BY target_id, host "
                                 f"LIMIT {limit} OFFSET {offset}", scan_id, states)
    total = sum(n for state, n in counts.items() if not states or state in states)
    return json_response(HostPage(metadata=ListMetadata(total=total, limit=limit, offset=offset),
                                  scan=_scan(row, counts), items=_scan(row, counts, hosts).status.results or []))
