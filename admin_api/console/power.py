"""Power: transitions on nodes or groups, per-node progress live, abort.

An operation that takes power away from a node or interrupts it asks for a
confirmation first, as the MCP tools do: the page shows the dry run's plan
(which nodes would run, which would fail and why) and starts nothing until
the box is ticked.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from admin_api.console.web import (
    Pages,
    api,
    field_errors,
    form,
    offset_of,
    redirect,
    render,
    state_page,
    wants_fragment,
)
from admin_api.inprocess import NativeError, segment
from core.power import DESTRUCTIVE, Operation

pages = Pages()
RECENT = 25  # transitions on the list page
TASKS = 100  # tasks on a transition's page
ABORTABLE = ("new", "in-progress")
TASK_STATES = ("pending", "sending", "verifying", "succeeded", "failed", "aborted")
DONE_TASK_STATES = ("succeeded", "failed", "aborted")
FIELDS = {"operation", "nodes", "groups"}  # the fields the form shows errors by


def ids(text: str) -> list[str]:
    """Node or group ids typed comma- or space-separated, each once, in order."""
    return list(dict.fromkeys(part for part in re.split(r"[\s,]+", text) if part))


def done(counts: dict[str, int]) -> int:
    return sum(counts.get(state, 0) for state in DONE_TASK_STATES)


async def _page(request: Request, status: int = 200, entered: dict[str, str] | None = None, **context: Any) -> Response:
    offset = offset_of(request)
    recent = await api(request).json("GET", "/power/v1/transitions", query={"limit": RECENT, "offset": offset})
    if wants_fragment(request):
        return render(request, "power_recent.html", recent=recent, offset=offset, limit=RECENT, done=done)
    context.setdefault("errors", {})
    context.setdefault("problem", None)
    context.setdefault("plan", None)
    context.setdefault("unconfirmed", False)
    return render(request, "power.html", status, recent=recent, offset=offset, limit=RECENT, done=done,
                  operations=list(Operation), destructive=sorted(DESTRUCTIVE),
                  entered=entered or {"operation": "On", "nodes": "", "groups": ""}, **context)


@pages.get("/ui/power", scope="read:power")
async def power(request: Request) -> Response:
    return await _page(request)


@pages.post("/ui/power", scope="write:power")
async def start(request: Request) -> Response:
    entered = await form(request)
    operation = entered.get("operation", "")
    body = {"operation": operation, "nodes": ids(entered.get("nodes", "")), "groups": ids(entered.get("groups", ""))}
    preview = "preview" in entered
    unconfirmed = operation in DESTRUCTIVE and entered.get("confirm") != "yes"
    try:
        if preview or unconfirmed:
            plan = await api(request).json("POST", "/power/v1/transitions", body={**body, "dryRun": True})
            # 428: nothing was started, the same answer the MCP tool gives an unconfirmed destructive call.
            return await _page(request, 428 if unconfirmed and not preview else 200, entered, plan=plan,
                               unconfirmed=unconfirmed)
        started = await api(request).json("POST", "/power/v1/transitions", body=body)
    except NativeError as exc:
        errors = field_errors(exc)
        # A problem the form shows by its field is not said twice; any other (a 409) is said above the form.
        return await _page(request, exc.problem.status, entered, errors=errors,
                           problem=None if errors and errors.keys() <= FIELDS else exc.problem.detail or exc.problem.title)
    count = started["counts"]["total"]
    return redirect(request, f"/ui/power/{segment(started['id'])}",
                    flash=f"{operation} started on {count} node{'s' if count != 1 else ''}.")


async def _transition(request: Request, status: int = 200, problem: str | None = None) -> Response:
    found, state, offset = await state_page(request, f"/power/v1/transitions/{segment(request.path_params['id'])}/tasks",
                                            TASK_STATES, TASKS)
    context = {"transition": found["transition"], "tasks": found["items"], "total": found["metadata"]["total"],
               "offset": offset, "limit": TASKS, "state": state, "task_states": TASK_STATES,
               "done": done(found["transition"]["counts"]), "abortable": ABORTABLE,
               "problem": problem}
    if wants_fragment(request):
        return render(request, "power_tasks.html", status, **context)
    return render(request, "power_transition.html", status, **context)


@pages.get("/ui/power/{id}", scope="read:power")
async def transition(request: Request) -> Response:
    return await _transition(request)


@pages.post("/ui/power/{id}/abort", scope="write:power")
async def abort(request: Request) -> Response:
    transition_id = request.path_params["id"]
    try:
        await api(request).request("DELETE", f"/power/v1/transitions/{segment(transition_id)}")
    except NativeError as exc:
        return await _transition(request, exc.problem.status, exc.problem.detail or exc.problem.title)
    return redirect(request, f"/ui/power/{segment(transition_id)}",
                    flash="Abort signalled: tasks not yet sent stop; those in flight finish their request.")
