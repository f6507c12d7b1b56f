"""/hsm/v2/Inventory/Hardware: each node's processors, GPUs, memory, drives, NICs and firmware, as discovery read them.

Read-only: a redfish discovery scan writes it (sync/discovery/hardware.py)
and records what each re-scan changed (`/{id}/changes`, newest first).
Filters answer the questions admins ask of a fleet: which nodes carry GPU
model X, which run firmware older than Y (versions compare by their numbers,
so 1.10 is above 1.9).
"""

from __future__ import annotations

import datetime
import re

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import field_problem, json_response, not_modified, problem, query_list
from admin_api.resources import answer, list_answer, paging, path_key
from admin_api.routing import PAGING, Param, Router
from core import fields
from core.envelope import ListMetadata, Resource, ResourceList, ResourceMetadata, etag_for
from core.hardware import Change, Hardware, Summary, version_key
from core.identity import is_valid_id

KIND, API_VERSION = "Hardware", "hsm/v2"
BASE = "/hsm/v2/Inventory/Hardware"
FILTER_MAX = 256
router = Router("hardware")


class HardwareSpec(msgspec.Struct, rename="camel", kw_only=True):
    component_id: str
    summary: Summary
    inventory: Hardware
    scan_id: str | None  # the scan that last read it
    scanned_at: datetime.datetime
    changed_at: datetime.datetime  # when a scan last found it different


class ChangeSet(msgspec.Struct, rename="camel", kw_only=True):
    id: int
    component_id: str
    scan_id: str | None
    changed_at: datetime.datetime
    changes: list[Change]


class ChangeList(msgspec.Struct, rename="camel"):
    metadata: ListMetadata
    items: list[ChangeSet]


def _text_filter(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        value = fields.plain_text(value.strip(), FILTER_MAX, name)
    except fields.InvalidField as exc:
        raise field_problem(name, str(exc), 400) from None
    if not value:
        raise field_problem(name, f"{name} is empty", 400)
    return value


_DECIMAL = re.compile(r"\d{1,9}(\.\d{1,6})?")


def _filters(request: Request) -> tuple[str, list]:
    """The WHERE clause of the query string, and its arguments; a 400 for a filter that cannot be applied."""
    processor, gpu = _text_filter(request, "processorModel"), _text_filter(request, "gpuModel")
    firmware, below = _text_filter(request, "firmware"), _text_filter(request, "firmwareBelow")
    memory = request.query_params.get("minMemoryGiB")
    if memory is not None and not _DECIMAL.fullmatch(memory):
        raise field_problem("minMemoryGiB", f"expected a number of GiB such as 64 or 0.5, got {memory[:40]!r}", 400)
    if below is not None and firmware is None:
        raise field_problem("firmwareBelow", "firmwareBelow compares the version of the firmware named by "
                            "`firmware`: give both", 400)
    if below is not None and not version_key(below):
        raise field_problem("firmwareBelow", f"{below[:40]!r} has no number to compare versions by", 400)
    ids = query_list(request, "componentId")
    if bad := [i for i in ids if not is_valid_id(i)]:
        raise field_problem("componentId", f"{bad[0][:40]!r} is not a component id", 400)
    clauses = [
        # Substrings, in any case: "h100" finds "NVIDIA H100 80GB HBM3".
        "($1::text IS NULL OR EXISTS (SELECT FROM unnest(h.processor_models) m WHERE strpos(lower(m), lower($1)) > 0))",
        "($2::text IS NULL OR EXISTS (SELECT FROM unnest(h.gpu_models) m WHERE strpos(lower(m), lower($2)) > 0))",
        "($3::float8 IS NULL OR h.memory_gib >= $3)",
        # A firmware entry by name (in any case), older than `below` when given; a version without a number
        # cannot be compared and is not taken as older.
        "($4::text IS NULL OR EXISTS (SELECT FROM jsonb_array_elements(h.document -> 'firmware') f "
        "WHERE lower(f ->> 'name') = lower($4) AND ($5::text IS NULL OR "
        "(cardinality(smd.version_key(f ->> 'version')) > 0 AND smd.version_key(f ->> 'version') < "
        "smd.version_key($5)))))",
        "(cardinality($6::text[]) = 0 OR h.component_id = ANY($6::text[]))",
    ]
    return " AND ".join(clauses), [processor, gpu, float(memory) if memory is not None else None, firmware, below,
                                   ids]


def _resource(row) -> Resource[HardwareSpec]:
    spec = HardwareSpec(component_id=row["component_id"], summary=Summary(
        processor_models=row["processor_models"], gpu_models=row["gpu_models"], cores=row["cores"],
        memory_gib=row["memory_gib"], drive_bytes=row["drive_bytes"]),
        inventory=msgspec.convert(row["document"], Hardware), scan_id=row["scan_id"], scanned_at=row["scanned_at"],
        changed_at=row["changed_at"])
    return Resource(kind=KIND, api_version=API_VERSION, spec=spec, metadata=ResourceMetadata(
        id=row["component_id"], etag=etag_for(row["component_id"], row["scanned_at"].isoformat()),
        created_at=None, updated_at=row["changed_at"]))


TEXT = {"type": "string", "maxLength": FILTER_MAX}


@router.get(BASE, scope="read:smd", response=ResourceList[HardwareSpec],
            summary="Nodes' hardware inventories, by component id, filtered by CPU or GPU model, memory or firmware",
            params=(*PAGING,
                    Param("processorModel", "nodes with a CPU whose model contains this text (any case)", schema=TEXT),
                    Param("gpuModel", "nodes with a GPU or accelerator whose model contains this text (any case)",
                          schema=TEXT),
                    Param("minMemoryGiB", "nodes with at least this much memory, in GiB", "number",
                          schema={"type": "number", "minimum": 0}),
                    Param("firmware", "nodes with a firmware entry of this name (any case)", schema=TEXT),
                    Param("firmwareBelow", "with `firmware`: only where its version is older than this one, "
                          "compared number by number (1.9 < 1.10)", schema=TEXT),
                    Param("componentId", "component ids, comma = OR", schema={"type": "string"})))
async def list_hardware(request: Request) -> Response:
    limit, offset = paging(request)
    where, args = _filters(request)
    async with request.app.state.pool.acquire() as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM smd.hardware h WHERE {where}", *args)
        rows = await conn.fetch(f"SELECT h.* FROM smd.hardware h WHERE {where} ORDER BY h.component_id "
                                f"LIMIT {limit} OFFSET {offset}", *args)
    return list_answer(request, KIND, API_VERSION, [_resource(r) for r in rows], total, limit, offset)


@router.get(BASE + "/{id}", scope="read:smd", response=Resource[HardwareSpec],
            summary="One node's hardware inventory as its last redfish scan read it")
async def get_hardware(request: Request) -> Response:
    node_id = path_key(request, "component")
    async with request.app.state.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM smd.hardware WHERE component_id = $1", node_id)
    if row is None:
        raise problem(404, f"no hardware inventory for {node_id!r}: no redfish discovery scan has read it")
    found = _resource(row)
    if found.metadata.etag is not None and not_modified(request, found.metadata.etag):
        return Response(status_code=304, headers={"ETag": found.metadata.etag})
    return answer(found)


@router.get(BASE + "/{id}/changes", scope="read:smd", response=ChangeList, params=PAGING,
            summary="What each re-scan found different in a node's hardware (added, removed, changed items), "
                    "newest first")
async def list_hardware_changes(request: Request) -> Response:
    node_id = path_key(request, "component")
    limit, offset = paging(request)
    async with request.app.state.pool.acquire() as conn:
        if not await conn.fetchval("SELECT true FROM smd.components WHERE id = $1", node_id):
            raise problem(404, f"no component {node_id!r}")
        total = await conn.fetchval("SELECT count(*) FROM smd.hardware_changes WHERE component_id = $1", node_id)
        rows = await conn.fetch("SELECT * FROM smd.hardware_changes WHERE component_id = $1 ORDER BY id DESC "
                                f"LIMIT {limit} OFFSET {offset}", node_id)
    return json_response(ChangeList(metadata=ListMetadata(total=total, limit=limit, offset=offset), items=[
        ChangeSet(id=r["id"], component_id=r["component_id"], scan_id=r["scan_id"], changed_at=r["changed_at"],
                  changes=msgspec.convert(r["changes"], list[Change])) for r in rows]))
