"""/power/v1/transitions/{id}/tasks: a transition's counts and its per-node tasks, a page at a time.

GET /power/v1/transitions/{id} answers every task at once (up to
CHAMICORE_POWER_BULK_LIMIT of them); a page that follows 10,000 nodes live
asks for the counts and for the tasks it shows.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import json_response, query_states
from admin_api.power.transitions import BASE, Task, Transition, _key, _transition, load
from admin_api.resources import child_page, paging
from admin_api.routing import PAGING, Router, state_param
from core.envelope import ListMetadata
from core.power import ACTIVE_TASK_STATES, FINAL_TASK_STATES

router = Router("power-tasks")
TASK_STATES = (*ACTIVE_TASK_STATES, *FINAL_TASK_STATES)


class TaskPage(msgspec.Struct, rename="camel"):
    metadata: ListMetadata  # total: the tasks in the states asked for
    transition: Transition  # with every task's count, without the tasks
    items: list[Task]


@router.get(BASE + "/{id}/tasks", scope="read:power", response=TaskPage,
            summary="A transition with its task counts and a page of its tasks, by node id",
            params=(*PAGING, state_param(TASK_STATES, "task states")))
async def list_tasks(request: Request) -> Response:
    limit, offset = paging(request)
    states = query_states(request, TASK_STATES, "task state")
    async with request.app.state.pool.acquire() as conn:
        row = await load(conn, _key(request))
        by_state, tasks = await child_page(conn, "power.tasks", "transition_id", row["id"], states, "node_id", limit,
                                           offset)
    counts = {"total": sum(by_state.values()), **by_state}
    total = sum(n for state, n in by_state.items() if not states or state in states)
    return json_response(TaskPage(metadata=ListMetadata(total=total, limit=limit, offset=offset),
                                  transition=_transition(row, counts), items=_transition(row, counts, tasks).tasks or []))
