"""/power/v1: transitions over nodes and groups, their per-node tasks, power status, action shortcuts.

In the style of OpenCHAMI's PCS.  The admin API only records what is asked
(a transition and a task per node, in one transaction); the power engine in
sync/ does it.  A node that cannot be reached (no BMC mapping, no
credential) gets its task failed at once with what to do, and the others
still go ahead.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api import dryrun
from admin_api.http import field_problem, json_response, problem, query_list, query_states
from admin_api.resources import paging
from admin_api.routing import PAGING, Param, Router, request_body, state_param
from admin_api.smd.schemas import Id
from core import events, power_targets, tracing
from core.envelope import ListMetadata
from core.power import ACTIONS, ACTIVE_TASK_STATES_SQL, STEPS, Operation
from core.power_targets import target_problem

router = Router("power")
BASE = "/power/v1/transitions"
TRANSITION_STATES = ("new", "in-progress", "completed", "abort-signaled", "aborted")
POWER_STATES = ("on", "off", "undefined")
Ids = Annotated[list[Id], msgspec.Meta(max_length=100_000)]


class Targets(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    nodes: Ids = []
    groups: Annotated[list[Id], msgspec.Meta(max_length=1000)] = []
    dry_run: bool = False


class TransitionRequest(Targets, kw_only=True):
    operation: Operation


class Task(msgspec.Struct, rename="camel", omit_defaults=True):
    node_id: str
    state: str
    bmc_id: str | None = None
    step: str | None = None
    attempts: int = 0
    detail: str = ""


class Transition(msgspec.Struct, rename="camel", omit_defaults=True):
    id: str
    operation: str
    state: str
    requested_by: str
    created_at: str
    counts: dict[str, int]
    steps: list[str]
    finished_at: str | None = None
    dry_run: bool = False
    tasks: list[Task] | None = None


class TransitionList(msgspec.Struct, rename="camel"):
    metadata: ListMetadata
    items: list[Transition]


class PowerStatus(msgspec.Struct, rename="camel", omit_defaults=True):
    node_id: str
    power_state: str
    management_state: str
    error: str | None = None
    updated_at: str | None = None


class PowerStatusList(msgspec.Struct, rename="camel"):
    metadata: ListMetadata
    items: list[PowerStatus]


def _steps(operation: str) -> list[str]:
    return [step.reset_type for step in STEPS[Operation(operation)]]


def _transition(row, counts: dict[str, int], tasks=None) -> Transition:
    return Transition(
        id=str(row["id"]), operation=row["operation"], state=row["state"], requested_by=row["requested_by"],
        created_at=row["created_at"].isoformat(), counts=counts, steps=_steps(row["operation"]),
        finished_at=row["finished_at"].isoformat() if row["finished_at"] else None,
        tasks=None if tasks is None else [
            Task(node_id=t["node_id"], state=t["state"], bmc_id=t["bmc_id"], attempts=t["attempts"], detail=t["detail"],
                 step=_steps(row["operation"])[t["step"]]) for t in tasks])


async def _nodes(conn, request: Request, targets: Targets) -> list[str]:
    """Named nodes plus the Node members of named groups, in order, each once; 422 naming an unknown one."""
    if not targets.nodes and not targets.groups:
        raise field_problem("$.nodes", "name at least one node or group")
    known = {r["name"] for r in await conn.fetch("SELECT name FROM smd.groups WHERE name = ANY($1::text[])",
                                                 targets.groups)}
    if missing := [g for g in targets.groups if g not in known]:
        raise field_problem("$.groups", f"no group {missing[0]!r}")
    members = await conn.fetch("SELECT m.component_id FROM smd.group_members m JOIN smd.components c "
                               "ON c.id = m.component_id WHERE m.group_name = ANY($1::text[]) AND c.type = 'Node' "
                               "ORDER BY m.component_id", targets.groups)
    node_ids = list(dict.fromkeys([*targets.nodes, *(r["component_id"] for r in members)]))
    limit = request.app.state.config.power_bulk_limit
    if len(node_ids) > limit:
        raise field_problem("$.nodes", f"{len(node_ids)} nodes in one request; at most {limit} "
                                       "(CHAMICORE_POWER_BULK_LIMIT): split it")
    return node_ids


async def start(request: Request, operation: Operation, targets: Targets):
    """Record a transition over `targets` and a task per node, in one transaction (rolled back for a dry run):
    the transition row and its tasks.  Every face that starts a transition comes through here."""
    principal = request.state.principal
    async with request.app.state.pool.acquire() as conn, dryrun.transaction(conn, targets.dry_run):
        node_ids = await _nodes(conn, request, targets)
        rows = await power_targets.fetch(conn, node_ids)
        unknown = [r["id"] for r in rows if r["type"] is None]
        if unknown:
            raise field_problem("$.nodes", f"no component {unknown[0]!r}" + (
                f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""))
        not_nodes = [r for r in rows if r["type"] != "Node"]
        if not_nodes:
            raise field_problem("$.nodes", f"{not_nodes[0]['id']!r} is a {not_nodes[0]['type']}, not a Node")
        # One transition at a time per node: two at once would fight over the power button.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('chamicore.power.transitions'))")
        busy = await conn.fetchrow(
            "SELECT node_id, transition_id FROM power.tasks WHERE node_id = ANY($1::text[]) "
            f"AND state IN {ACTIVE_TASK_STATES_SQL} LIMIT 1", node_ids)
        if busy and not targets.dry_run:
            raise problem(409, f"node {busy['node_id']!r} is already in transition {busy['transition_id']}; wait for "
                               f"it or abort it (DELETE {BASE}/{busy['transition_id']})")
        transition = await conn.fetchrow(
            "INSERT INTO power.transitions (operation, requested_by, traceparent) VALUES ($1, $2, $3) RETURNING *",
            operation.value, principal["sub"] if principal else "anonymous", tracing.traceparent())
        problems = {r["id"]: target_problem(r) for r in rows}
        await conn.execute(
            "INSERT INTO power.tasks (transition_id, node_id, bmc_id, state, detail) "
            "SELECT $1, n, b, CASE WHEN p IS NULL THEN 'pending' ELSE 'failed' END, coalesce(p, '') "
            "FROM unnest($2::text[], $3::text[], $4::text[]) AS u(n, b, p)",
            transition["id"], [r["id"] for r in rows], [r["bmc_id"] for r in rows], [problems[r["id"]] for r in rows])
        tasks = await tasks_of(conn, transition["id"])
        if not targets.dry_run:
            await events.emit(conn, "power", "transitions", "created", str(transition["id"]),
                              {"operation": operation.value, "nodes": len(node_ids)})
    return transition, tasks


async def _create(request: Request, operation: Operation, targets: Targets) -> Response:
    transition, tasks = await start(request, operation, targets)
    body = _transition(transition, _count(tasks), tasks)
    if targets.dry_run:
        return json_response(_plan(body))  # its transaction was rolled back
    return json_response(body, 201, {"Location": f"{BASE}/{transition['id']}"})


def _plan(body: Transition) -> Transition:
    """What a dry run answers: the transition it would start, its tasks as would-run or would-fail."""
    return msgspec.structs.replace(
        body, dry_run=True, id="", state="dry-run",
        tasks=[msgspec.structs.replace(t, state="would-fail" if t.state == "failed" else "would-run")
               for t in body.tasks or ()],
        counts={k.replace("failed", "would-fail").replace("pending", "would-run"): v for k, v in body.counts.items()})


def _count(tasks) -> dict[str, int]:
    counts: dict[str, int] = {"total": len(tasks)}
    for task in tasks:
        counts[task["state"]] = counts.get(task["state"], 0) + 1
    return counts


@router.post(BASE, scope="write:power", summary="Start a power transition (or plan it with dryRun)",
             request=TransitionRequest, response=Transition)
async def create_transition(request: Request) -> Response:
    body = await request_body(request)
    return await _create(request, body.operation, body)


for _name, _operation in ACTIONS.items():
    async def _action(request: Request, operation: Operation = _operation) -> Response:
        return await _create(request, operation, await request_body(request))

    _action.__name__ = f"power_action_{_name}"
    router.post(f"/power/v1/actions/{_name}", scope="write:power", request=Targets, response=Transition,
                summary=f"Shortcut: a {_operation.value} transition")(_action)


@router.get(BASE, scope="read:power", summary="List transitions, newest first", response=TransitionList,
            params=(*PAGING, state_param(TRANSITION_STATES)))
async def list_transitions(request: Request) -> Response:
    limit, offset = paging(request)
    states = query_states(request, TRANSITION_STATES)
    async with request.app.state.pool.acquire() as conn:
        total, rows, counts = await transitions_page(conn, states, limit, offset)
    return json_response(TransitionList(metadata=ListMetadata(total=total, limit=limit, offset=offset),
                                         items=[_transition(r, counts[r["id"]]) for r in rows]))


async def transitions_page(conn, states: list[str], limit: int | None, offset: int = 0):
    """Transitions in `states` (any state when empty), newest first, `limit` of them (None: all): the total, the
    rows, and each one's task counts by task state (`{id: {"total": n, "pending": n, ...}}`)."""
    where = "WHERE cardinality($1::text[]) = 0 OR state = ANY($1::text[])"
    total = await conn.fetchval(f"SELECT count(*) FROM power.transitions {where}", states)
    rows = await conn.fetch(f"SELECT * FROM power.transitions {where} ORDER BY created_at DESC, id "
                            f"LIMIT {'ALL' if limit is None else int(limit)} OFFSET {int(offset)}", states)
    count_rows = await conn.fetch("SELECT transition_id, state, count(*) AS n FROM power.tasks "
                                  "WHERE transition_id = ANY($1::uuid[]) GROUP BY 1, 2", [r["id"] for r in rows])
    counts: dict = {r["id"]: {"total": 0} for r in rows}
    for row in count_rows:
        counts[row["transition_id"]][row["state"]] = row["n"]
        counts[row["transition_id"]]["total"] += row["n"]
    return total, rows, counts


async def load(conn, key: uuid.UUID, *, lock: bool = False):
    """The transition `key` (locked FOR UPDATE with `lock`), or a 404."""
    row = await conn.fetchrow("SELECT * FROM power.transitions WHERE id = $1" + (" FOR UPDATE" if lock else ""), key)
    if row is None:
        raise problem(404, f"no transition {str(key)!r}")
    return row


async def tasks_of(conn, transition_id: uuid.UUID):
    return await conn.fetch("SELECT * FROM power.tasks WHERE transition_id = $1 ORDER BY node_id", transition_id)


def _key(request: Request) -> uuid.UUID:
    transition_id = request.path_params["id"]
    try:
        return uuid.UUID(transition_id)
    except ValueError:
        raise problem(404, f"no transition {transition_id[:64]!r} (transition ids are UUIDs)") from None


@router.get(BASE + "/{id}", scope="read:power", summary="A transition with its per-node tasks", response=Transition)
async def get_transition(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        row = await load(conn, _key(request))
        tasks = await tasks_of(conn, row["id"])
    return json_response(_transition(row, _count(tasks), tasks))


ABORTABLE = ("new", "in-progress")


async def abort(conn, key: uuid.UUID):
    """Signal an abort of transition `key` if it is new or in progress (one in any other state is left as it is):
    the state it was in, its row as it now is, and its tasks."""
    async with conn.transaction():
        row = await load(conn, key, lock=True)
        before = row["state"]
        if before in ABORTABLE:
            # Tasks not in the middle of a request stop here; the engine finishes the rest and closes the transition.
            await conn.execute("UPDATE power.tasks SET state = 'aborted', detail = 'aborted', updated_at = now() "
                               "WHERE transition_id = $1 AND state IN ('pending', 'verifying')", row["id"])
            row = await conn.fetchrow("UPDATE power.transitions SET state = 'abort-signaled', updated_at = now() "
                                      "WHERE id = $1 RETURNING *", row["id"])
            await events.emit(conn, "power", "transitions", "abort-signaled", str(row["id"]))
        tasks = await tasks_of(conn, row["id"])
    return before, row, tasks


@router.delete(BASE + "/{id}", scope="write:power", summary="Abort a transition (tasks not yet done stop)",
               response=Transition, status=202)
async def abort_transition(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        before, row, tasks = await abort(conn, _key(request))
    if before not in ABORTABLE:
        raise problem(409, f"transition {row['id']} is already {before}")
    return json_response(_transition(row, _count(tasks), tasks), 202)


@router.get("/power/v1/power-status", scope="read:power", summary="Last known power state of nodes",
            response=PowerStatusList,
            params=(*PAGING, Param("node", "node ids, comma = OR"), Param("group", "members of these groups"),
                    state_param(POWER_STATES, "power states")))
async def power_status(request: Request) -> Response:
    limit, offset = paging(request)
    nodes, groups = query_list(request, "node"), query_list(request, "group")
    states = query_states(request, POWER_STATES, "power state")
    async with request.app.state.pool.acquire() as conn:
        total, items = await power_states(conn, nodes, groups, states, limit=limit, offset=offset)
    return json_response(PowerStatusList(metadata=ListMetadata(total=total, limit=limit, offset=offset), items=items))


async def power_states(conn, nodes: list[str], groups: list[str], states: list[str],
                       managements: Sequence[str] = (), *, limit: int | None = None,
                       offset: int = 0) -> tuple[int, list[PowerStatus]]:
    """The last known power state of nodes, by id: those named (all when none), members of `groups`, in power
    `states` and management states `managements` (any when empty).  The total and `limit` of them (None: all)."""
    query = (
        "FROM smd.components c LEFT JOIN power.status s ON s.node_id = c.id WHERE c.type = 'Node' "
        "AND (cardinality($1::text[]) = 0 OR c.id = ANY($1::text[])) "
        "AND (cardinality($2::text[]) = 0 OR c.id IN (SELECT component_id FROM smd.group_members "
        "                                            WHERE group_name = ANY($2::text[]))) "
        "AND (cardinality($3::text[]) = 0 OR coalesce(s.power_state, 'undefined') = ANY($3::text[])) "
        "AND (cardinality($4::text[]) = 0 OR coalesce(s.management_state, 'unavailable') = ANY($4::text[]))")
    args = (nodes, groups, states, list(managements))
    total = await conn.fetchval(f"SELECT count(*) {query}", *args)
    rows = await conn.fetch(f"SELECT c.id, s.power_state, s.management_state, s.error, s.updated_at {query} "
                            f"ORDER BY c.id LIMIT {'ALL' if limit is None else int(limit)} OFFSET {int(offset)}",
                            *args)
    return total, [PowerStatus(node_id=r["id"], power_state=r["power_state"] or "undefined",
                               management_state=r["management_state"] or "unavailable",
                               error=r["error"] if r["power_state"] else "no power state known yet",
                               updated_at=r["updated_at"].isoformat() if r["updated_at"] else None) for r in rows]
