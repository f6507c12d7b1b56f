"""/discovery/v1/scans: start a scan over targets, follow it host by host, cancel it."""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import field_problem, json_response, problem, query_states
from admin_api.resources import paging
from admin_api.routing import PAGING, Router, request_body, state_param
from admin_api.smd.schemas import Id
from core import events
from core.discovery import BadAddress, create_scan
from core.envelope import ListMetadata, ResourceMetadata

KIND, API_VERSION = "DiscoveryScan", "discovery/v1"
BASE = "/discovery/v1/scans"
router = Router("discovery-scans")
STATES = ("pending", "running", "completed", "failed", "cancelled")


class ScanRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    targets: Annotated[list[Id], msgspec.Meta(max_length=10_000,
                                              description="target ids; empty: every enabled target")] = []


class HostResult(msgspec.Struct, rename="camel"):
    target_id: str
    host: str
    state: str
    detail: str
    components: list[str]
    started_at: str | None
    finished_at: str | None


class ScanStatus(msgspec.Struct, rename="camel", omit_defaults=True):
    state: str
    requested_by: str
    counts: dict[str, int]
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    results: list[HostResult] | None = None


class Scan(msgspec.Struct, rename="camel"):
    kind: str
    api_version: str
    metadata: ResourceMetadata
    status: ScanStatus


class ScanList(msgspec.Struct, rename="camel"):
    kind: str
    api_version: str
    metadata: ListMetadata
    items: list[Scan]


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _scan(row, counts: dict[str, int], results: list | None = None) -> Scan:
    status = ScanStatus(
        state=row["state"], requested_by=row["requested_by"], counts=counts, started_at=_iso(row["started_at"]),
        finished_at=_iso(row["finished_at"]), error=row["error"],
        results=None if results is None else [
            HostResult(target_id=r["target_id"], host=r["host"], state=r["state"], detail=r["detail"],
                       components=list(r["components"]), started_at=_iso(r["started_at"]),
                       finished_at=_iso(r["finished_at"])) for r in results])
    return Scan(kind=KIND, api_version=API_VERSION, status=status,
                metadata=ResourceMetadata(id=row["id"], created_at=row["created_at"], updated_at=row["updated_at"]))


async def _counts(conn, scan_ids: list[str]) -> dict[str, dict[str, int]]:
    rows = await conn.fetch("SELECT scan_id, state, count(*) AS n FROM discovery.scan_hosts "
                            "WHERE scan_id = ANY($1::text[]) GROUP BY scan_id, state", scan_ids)
    counts: dict[str, dict[str, int]] = {s: {} for s in scan_ids}
    for row in rows:
        counts[row["scan_id"]][row["state"]] = row["n"]
    return counts


async def _one(conn, scan_id: str, status: int = 200) -> Response:
    row = await conn.fetchrow("SELECT * FROM discovery.scans WHERE id = $1", scan_id)
    if row is None:
        raise problem(404, f"no scan {scan_id[:255]!r}")
    results = await conn.fetch("SELECT * FROM discovery.scan_hosts WHERE scan_id = $1 ORDER BY target_id, host",
                               scan_id)
    headers = {"Location": f"{BASE}/{scan_id}"} if status == 201 else None
    return json_response(_scan(row, (await _counts(conn, [scan_id]))[scan_id], results), status, headers)


@router.post(BASE, scope="write:discovery", summary="Start a scan of some or all targets", request=ScanRequest,
             response=Scan)
async def start_scan(request: Request) -> Response:
    body = await request_body(request)
    principal = request.state.principal
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        if body.targets:
            targets = await conn.fetch("SELECT * FROM discovery.targets WHERE id = ANY($1::text[]) ORDER BY id",
                                       body.targets)
            missing = sorted(set(body.targets) - {t["id"] for t in targets})
            if missing:
                raise field_problem("$.targets", f"no discovery target {missing[0]!r}")
        else:
            targets = await conn.fetch("SELECT * FROM discovery.targets WHERE enabled ORDER BY id")
            if not targets:
                raise field_problem("$.targets", "there is no enabled target; create one at /discovery/v1/targets")
        try:
            scan_id = await create_scan(conn, targets, principal["sub"] if principal else "anonymous")
        except BadAddress as exc:  # a target written before a rule tightened
            raise field_problem("$.targets", str(exc)) from None
        await events.emit(conn, "discovery", "scans", "created", scan_id, {"targets": [t["id"] for t in targets]})
        return await _one(conn, scan_id, 201)


@router.get(BASE, scope="read:discovery", summary="List scans, newest first", response=ScanList,
            params=(*PAGING, state_param(STATES)))
async def list_scans(request: Request) -> Response:
    limit, offset = paging(request)
    states = query_states(request, STATES)
    async with request.app.state.pool.acquire() as conn:
        where = "WHERE cardinality($1::text[]) = 0 OR state = ANY($1::text[])"
        total = await conn.fetchval(f"SELECT count(*) FROM discovery.scans {where}", states)
        rows = await conn.fetch(f"SELECT * FROM discovery.scans {where} ORDER BY created_at DESC, id "
                                f"LIMIT {limit} OFFSET {offset}", states)
        counts = await _counts(conn, [r["id"] for r in rows])
    return json_response(ScanList(kind="DiscoveryScanList", api_version=API_VERSION,
                                  metadata=ListMetadata(total=total, limit=limit, offset=offset),
                                  items=[_scan(r, counts[r["id"]]) for r in rows]))


@router.get(BASE + "/{id}", scope="read:discovery", summary="A scan with its per-host results", response=Scan)
async def get_scan(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        return await _one(conn, request.path_params["id"])


@router.post(BASE + "/{id}/cancel", scope="write:discovery", summary="Cancel a pending or running scan",
             response=Scan, status=200)
async def cancel_scan(request: Request) -> Response:
    scan_id = request.path_params["id"]
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        state = await conn.fetchval("SELECT state FROM discovery.scans WHERE id = $1 FOR UPDATE", scan_id)
        if state is None:
            raise problem(404, f"no scan {scan_id[:255]!r}")
        if state not in ("pending", "running"):
            raise problem(409, f"scan {scan_id!r} is already {state}")
        await conn.execute("UPDATE discovery.scans SET state = 'cancelled', finished_at = now(), updated_at = now() "
                           "WHERE id = $1", scan_id)
        await conn.execute("UPDATE discovery.scan_hosts SET state = 'cancelled', finished_at = now() "
                           "WHERE scan_id = $1 AND state IN ('pending', 'running')", scan_id)
        await events.emit(conn, "discovery", "scans", "cancelled", scan_id)
        return await _one(conn, scan_id)
