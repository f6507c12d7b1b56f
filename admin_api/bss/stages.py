"""/boot/v1/stages: how far this boot storm is.

Each node's current boot, dhcp -> ipxe -> script -> kernel-booted ->
cloud-init -> ready, as the boot path and the Kea lease sync wrote it in
batches (bss.boot_stages, migration 0026).  Counts per stage, the nodes stuck
at a stage for longer than N seconds, and time-to-ready percentiles: a boot's
time to ready runs from its first stamp (its lease when Kea's was seen, else
its first request to the boot path) to its phone-home.  A lease newer than
the boot's first request (a renewal, or a reboot the boot path has not seen
yet) is kept but not shown as the boot's.
"""

from __future__ import annotations

import datetime

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import field_problem, json_response, query_int, query_list
from admin_api.resources import paging
from admin_api.routing import PAGING, Param, Router

router = Router("stages")
BASE = "/boot/v1/stages"
STAGES = ("dhcp", "ipxe", "script", "kernel-booted", "cloud-init", "ready")  # bss.boot_stages.stage 0..5
GROUP = Param("group", "nodes of these groups only (comma = or)")
_STARTED = "least(s.dhcp_at, s.ipxe_at, s.script_at, s.kernel_at, s.cloud_init_at, s.ready_at)"


class Stamps(msgspec.Struct, rename="camel", omit_defaults=True):
    dhcp: datetime.datetime | None = None
    ipxe: datetime.datetime | None = None
    script: datetime.datetime | None = None
    kernel_booted: datetime.datetime | None = msgspec.field(default=None, name="kernel-booted")
    cloud_init: datetime.datetime | None = msgspec.field(default=None, name="cloud-init")
    ready: datetime.datetime | None = None


class NodeStage(msgspec.Struct, rename="camel"):
    component_id: str
    stage: str
    stage_at: datetime.datetime | None
    seconds_at_stage: float | None
    stamps: Stamps


class StageList(msgspec.Struct, rename="camel"):
    kind: str
    total: int
    limit: int
    offset: int
    items: list[NodeStage]


class Percentiles(msgspec.Struct):
    p50: float | None
    p90: float | None
    p99: float | None


class StageSummary(msgspec.Struct, rename="camel"):
    kind: str
    nodes: int  # the Nodes asked about (all, or those of the groups)
    by_stage: dict[str, int]
    not_seen: int  # Nodes with no stage at all: no lease seen, never asked the boot path
    window_minutes: int
    ready_in_window: int
    time_to_ready_seconds: Percentiles


def _groups(request: Request, args: list[object]) -> str:
    """A condition on `s.component_id` (or "" with no ?group=), its value appended to `args`."""
    groups = query_list(request, "group")
    if not groups:
        return ""
    args.append(groups)
    return (f" AND EXISTS (SELECT 1 FROM smd.group_members m WHERE m.component_id = s.component_id "
            f"AND m.group_name = ANY(${len(args)}::text[]))")


def _item(row) -> NodeStage:
    first = min((row[k] for k in ("ipxe_at", "script_at", "kernel_at", "cloud_init_at", "ready_at") if row[k]),
                default=None)
    lease = row["dhcp_at"] if first is None or (row["dhcp_at"] and row["dhcp_at"] <= first) else None
    return NodeStage(
        component_id=row["component_id"], stage=STAGES[row["stage"]], stage_at=row["stage_at"],
        seconds_at_stage=None if row["age"] is None else round(row["age"], 3),
        stamps=Stamps(dhcp=lease, ipxe=row["ipxe_at"], script=row["script_at"], kernel_booted=row["kernel_at"],
                      cloud_init=row["cloud_init_at"], ready=row["ready_at"]))


@router.get(BASE, scope="read:bss", summary="Each node's boot stage; the nodes stuck at a stage", response=StageList,
            params=(Param("stage", "at these stages only: " + ", ".join(STAGES)),
                    Param("stuckFor", "at their stage for at least this many seconds, and not ready", "integer",
                          schema={"type": "integer", "minimum": 0, "maximum": 10 ** 7}),
                    Param("componentId", "these nodes only"), GROUP, *PAGING))
async def list_stages(request: Request) -> Response:
    """Longest at their stage first: `?stuckFor=300` is the list of nodes that have made no progress for five
    minutes, the ones to look at during a storm."""
    limit, offset = paging(request)
    args: list[object] = []
    where = ""
    if stages := query_list(request, "stage"):
        if bad := [s for s in stages if s not in STAGES]:
            raise field_problem("stage", f"unknown stage {bad[0][:40]!r}; one of {', '.join(STAGES)}", 400)
        args.append([STAGES.index(s) for s in stages])
        where += f" AND s.stage = ANY(${len(args)}::smallint[])"
    if "stuckFor" in request.query_params:
        args.append(query_int(request, "stuckFor", 0, 0, 10 ** 7))
        where += f" AND s.stage < 5 AND s.stage_at <= now() - make_interval(secs => ${len(args)})"
    if ids := query_list(request, "componentId"):
        args.append(ids)
        where += f" AND s.component_id = ANY(${len(args)}::text[])"
    where += _groups(request, args)
    async with request.app.state.pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):  # the count and the page agree
            total = await conn.fetchval(f"SELECT count(*) FROM bss.boot_stages s WHERE true{where}", *args)
            rows = await conn.fetch(
                f"SELECT s.*, extract(epoch FROM now() - s.stage_at)::float8 AS age FROM bss.boot_stages s "
                f"WHERE true{where} ORDER BY s.stage_at NULLS LAST, s.component_id LIMIT {limit} OFFSET {offset}",
                *args)
    return json_response(StageList(kind="BootStageList", total=total, limit=limit, offset=offset,
                                   items=[_item(r) for r in rows]))


@router.get(BASE + "/summary", scope="read:bss", summary="How far the boot storm is: counts per stage, time to ready",
            response=StageSummary,
            params=(Param("windowMinutes", "time-to-ready percentiles over the boots that became ready within this "
                                           "many minutes (default 60)", "integer",
                          schema={"type": "integer", "minimum": 1, "maximum": 10 ** 6}), GROUP))
async def summary(request: Request) -> Response:
    minutes = query_int(request, "windowMinutes", 60, 1, 10 ** 6)
    groups = query_list(request, "group")
    # $1: the groups (none: every node); a node of several of them counts once.
    member = ("(cardinality($1::text[]) = 0 OR EXISTS (SELECT 1 FROM smd.group_members m "
              "WHERE m.component_id = {id} AND m.group_name = ANY($1::text[])))")
    async with request.app.state.pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):  # every figure from one snapshot
            nodes = await conn.fetchval(
                f"SELECT count(*) FROM smd.components c WHERE c.type = 'Node' AND {member.format(id='c.id')}", groups)
            by_stage = await conn.fetch(
                f"SELECT s.stage, count(*) AS n FROM bss.boot_stages s WHERE {member.format(id='s.component_id')} "
                f"GROUP BY s.stage", groups)
            ready = await conn.fetchrow(
                f"SELECT count(*) AS n, percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP "
                f"(ORDER BY extract(epoch FROM s.ready_at - {_STARTED})) AS p FROM bss.boot_stages s "
                f"WHERE s.ready_at >= now() - make_interval(mins => $2) AND {member.format(id='s.component_id')}",
                groups, minutes)
    counts = {name: 0 for name in STAGES}
    for row in by_stage:
        counts[STAGES[row["stage"]]] = row["n"]
    p = ready["p"] or [None, None, None]
    return json_response(StageSummary(
        kind="BootStageSummary", nodes=nodes, by_stage=counts, not_seen=max(0, nodes - sum(counts.values())),
        window_minutes=minutes, ready_in_window=ready["n"],
        time_to_ready_seconds=Percentiles(*(None if v is None else round(v, 3) for v in p))))
