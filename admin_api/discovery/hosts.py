"""/discovery/v1/scans/{id}/hosts: a scan's counts and its per-host results, a page at a time.

GET /discovery/v1/scans/{id} answers every host at once, and a CIDR target
names up to 65,536 of them; a page that follows a scan live asks for the
counts and for the hosts it shows.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.discovery.scans import BASE, HostResult, Scan, _scan
from admin_api.http import json_response, problem, query_states
from admin_api.resources import child_page, paging
from admin_api.routing import PAGING, Router, state_param
from core.envelope import ListMetadata

router = Router("discovery-hosts")
HOST_STATES = ("pending", "running", "ok", "failed", "cancelled")


class HostPage(msgspec.Struct, rename="camel"):
    metadata: ListMetadata  # total: the hosts in the states asked for
    scan: Scan  # with every host's count, without the results
    items: list[HostResult]


@router.get(BASE + "/{id}/hosts", scope="read:discovery", response=HostPage,
            summary="A scan with its host counts and a page of its per-host results",
            params=(*PAGING, state_param(HOST_STATES, "host states")))
async def list_hosts(request: Request) -> Response:
    limit, offset = paging(request)
    states = query_states(request, HOST_STATES, "host state")
    scan_id = request.path_params["id"]
    async with request.app.state.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM discovery.scans WHERE id = $1", scan_id)
        if row is None:
            raise problem(404, f"no scan {scan_id[:255]!r}")
        by_state, hosts = await child_page(conn, "discovery.scan_hosts", "scan_id", scan_id, states,
                                           "target_id, host", limit, offset)
    total = sum(n for state, n in by_state.items() if not states or state in states)
    return json_response(HostPage(metadata=ListMetadata(total=total, limit=limit, offset=offset),
                                  scan=_scan(row, by_state), items=_scan(row, by_state, hosts).status.results or []))
