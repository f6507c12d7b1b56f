"""/discovery/v1/targets: what discovery scans (a Redfish host, range or CIDR; or a csv/json node list)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.auth.binding import check_binding
from admin_api.http import (
    MAX_BULK_BODY,
    MERGE_PATCH_TYPES,
    check_if_match,
    field_problem,
    json_response,
    patched,
    problem,
    read_json,
    read_patch,
)
from admin_api.resources import answer, etag_of, fetch_one, list_answer, metadata, paging
from admin_api.routing import PAGING, Param, Router
from admin_api.smd.schemas import Id
from core import events
from core.discovery import DRIVERS, BadAddress, expand
from core.envelope import Resource, ResourceList, ResourceRequest
from core.identity import generate_id, is_valid_id
from core.nodelist import NodeListError, parse

KIND, API_VERSION = "DiscoveryTarget", "discovery/v1"
BASE = "/discovery/v1/targets"
router = Router("discovery")


class TargetSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    driver: Literal["redfish", "csv", "json"]
    address: Annotated[str, msgspec.Meta(max_length=300, description="redfish: host, host:port, URL, "
                                                                     "first-last range or CIDR")] = ""
    document: str | None = msgspec.field(default=None)  # csv/json: the node list
    credential_id: Id | None = None
    insecure: bool = msgspec.field(default=False)  # skip TLS verification: an explicit choice, never the default
    schedule_s: Annotated[int, msgspec.Meta(ge=60, le=31_536_000)] | None = None
    enabled: bool = True
    description: Annotated[str, msgspec.Meta(max_length=1024)] = ""


class DriverInfo(msgspec.Struct):
    name: str
    description: str


COLUMNS = ("id, driver, address, document, credential_id, insecure, schedule_s, enabled, description, last_scan_at, "
           "created_at, updated_at")


def _resource(row) -> Resource[TargetSpec]:
    spec = TargetSpec(driver=row["driver"], address=row["address"], document=row["document"],
                      credential_id=row["credential_id"], insecure=row["insecure"], schedule_s=row["schedule_s"],
                      enabled=row["enabled"], description=row["description"])
    return Resource(kind=KIND, api_version=API_VERSION, metadata=metadata(row["id"], row), spec=spec)


async def _check(request: Request, conn, spec: TargetSpec) -> None:
    if spec.driver == "redfish":
        if spec.document is not None:
            raise field_problem("$.spec.document", "only the csv and json drivers take a document")
        try:
            expand(spec.address)
        except BadAddress as exc:
            raise field_problem("$.spec.address", str(exc)) from None
    else:
        if spec.document is None:
            raise field_problem("$.spec.document", f"the {spec.driver} driver needs the node list as document")
        if spec.address:
            raise field_problem("$.spec.address", f"the {spec.driver} driver reads its document, not an address")
        try:
            parse(spec.driver, spec.document)
        except NodeListError as exc:
            raise field_problem("$.spec.document", str(exc)) from None
    if spec.credential_id and not await conn.fetchval("SELECT true FROM auth.credentials WHERE id = $1",
                                                      spec.credential_id):
        raise field_problem("$.spec.credentialId", f"no credential {spec.credential_id!r}")
    if spec.driver == "redfish":  # the node-list drivers send no credential anywhere
        await check_binding(request, conn, spec.credential_id, expand(spec.address), spec.insecure, "the target")


def _values(spec: TargetSpec) -> tuple:
    return (spec.driver, spec.address.strip(), spec.document, spec.credential_id, spec.insecure, spec.schedule_s,
            spec.enabled, spec.description)


async def _fetch(conn, target_id: str, *, lock: bool = False):
    return await fetch_one(conn, f"SELECT {COLUMNS} FROM discovery.targets WHERE id = $1", target_id,
                           "discovery target", lock=lock)


@router.get("/discovery/v1/drivers", scope="read:discovery", summary="Discovery drivers", response=list[DriverInfo])
async def list_drivers(request: Request) -> Response:
    return json_response([DriverInfo(name, text) for name, text in DRIVERS.items()])


@router.get(BASE, scope="read:discovery", summary="List discovery targets", response=ResourceList[TargetSpec],
            params=(*PAGING, Param("driver", "only this driver")))
async def list_targets(request: Request) -> Response:
    limit, offset = paging(request)
    driver = request.query_params.get("driver")
    async with request.app.state.pool.acquire() as conn:
        total = await conn.fetchval("SELECT count(*) FROM discovery.targets WHERE $1::text IS NULL OR driver = $1",
                                    driver)
        rows = await conn.fetch(f"SELECT {COLUMNS} FROM discovery.targets WHERE $1::text IS NULL OR driver = $1 "
                                f"ORDER BY id LIMIT {limit} OFFSET {offset}", driver)
    return list_answer(request, "DiscoveryTargetList", API_VERSION, [_resource(r) for r in rows], total, limit, offset)


@router.post(BASE, scope="write:discovery", summary="Create a discovery target",
             request=ResourceRequest[TargetSpec], response=Resource[TargetSpec])
async def create_target(request: Request) -> Response:
    body = await read_json(request, ResourceRequest[TargetSpec], MAX_BULK_BODY)
    target_id = body.metadata.id or generate_id("target")
    if not is_valid_id(target_id):
        raise field_problem("$.metadata.id", "not a valid id (ADR-010: letters, digits, . _ -; 2 to 255 long)")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT true FROM discovery.targets WHERE id = $1", target_id):
            raise problem(409, f"discovery target {target_id!r} already exists")
        await _check(request, conn, body.spec)
        row = await conn.fetchrow(
            f"INSERT INTO discovery.targets (id, driver, address, document, credential_id, insecure, schedule_s, "
            f"enabled, description) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}",
            target_id, *_values(body.spec))
        await events.emit(conn, "discovery", "targets", "created", target_id)
    return answer(_resource(row), 201, f"{BASE}/{target_id}")


@router.get(BASE + "/{id}", scope="read:discovery", summary="Get a discovery target", response=Resource[TargetSpec])
async def get_target(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        return answer(_resource(await _fetch(conn, request.path_params["id"])))


@router.patch(BASE + "/{id}", scope="write:discovery", summary="Change a discovery target (JSON merge patch)",
              request=dict, response=Resource[TargetSpec], content_types=MERGE_PATCH_TYPES)
async def patch_target(request: Request) -> Response:
    target_id = request.path_params["id"]
    patch = await read_patch(request)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        current = await _fetch(conn, target_id, lock=True)
        check_if_match(request, etag_of(target_id, current), required=False)
        spec = patched(_resource(current).spec, patch, TargetSpec)
        await _check(request, conn, spec)
        row = await conn.fetchrow(
            f"UPDATE discovery.targets SET driver = $2, address = $3, document = $4, credential_id = $5, "
            f"insecure = $6, schedule_s = $7, enabled = $8, description = $9, updated_at = now() WHERE id = $1 "
            f"RETURNING {COLUMNS}", target_id, *_values(spec))
        await events.emit(conn, "discovery", "targets", "updated", target_id)
    return answer(_resource(row))


@router.delete(BASE + "/{id}", scope="write:discovery", summary="Delete a discovery target (its scans stay)")
async def delete_target(request: Request) -> Response:
    target_id = request.path_params["id"]
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await _fetch(conn, target_id, lock=True)
        await conn.execute("DELETE FROM discovery.targets WHERE id = $1", target_id)
        await events.emit(conn, "discovery", "targets", "deleted", target_id)
    return Response(status_code=204)
