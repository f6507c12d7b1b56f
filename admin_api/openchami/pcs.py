"""PCS (OpenCHAMI's Power Control Service) as ochami speaks it, over Chamicore's power transitions.

PCS serves every route both at its root and under /v1; so does this face,
under PREFIX (`/openchami/transitions` and `/openchami/v1/transitions`).
Transitions are the native ones (admin_api/power/transitions.py records
them, the power engine in sync/ runs them): a transition started here is
the row `/power/v1/transitions` shows, and the reverse.

Operations, PCS -> Chamicore (core/power.py; the restarts are off, then on):

    on            On
    off           GracefulShutdown  what the native `off` action does; PCS's forced fallback is not made
    soft-off      GracefulShutdown
    force-off     ForceOff
    soft-restart  GracefulRestart   the native `reboot` action
    hard-restart  ForceRestart      the native `reset` action
    init, reinit  ForceRestart      off, then on, from any power state (ochami sends `reinit`, PCS knows `init`)

A transition is shown under the PCS name of what Chamicore runs (PCS_NAMES),
so `off` answers `Soft-Off` and `init` answers `Hard-Restart`: the
operation stored is Chamicore's, and two requests that run the same steps
read the same.  `taskDeadlineMinutes` is checked (a whole number or null)
and not used: how long a node may take is the engine's own setting
(CHAMICORE_POWER_VERIFY_S), not a transition's.  `deputyKey` is checked and
not used (Chamicore has no component reservations).  Records are not reaped:
`automaticExpirationTime` says when PCS, with its default of a day, would.
"""

from __future__ import annotations

import collections
import datetime
import uuid

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api import service
from admin_api.http import convert, json_response, problem
from admin_api.openchami import compat
from admin_api.openchami.compat import BODY_TYPES, PREFIX, json_body, json_object, key
from admin_api.power import transitions as native
from admin_api.routing import Param, Router
from core import power_targets, syncstatus, xname
from core.identity import is_valid_id
from core.power import ACTIONS, Operation
from core.power_targets import target_problem

router = Router("openchami-pcs")
routers: list[Router] = [router]
BASES = (PREFIX, PREFIX + "/v1")

OPERATIONS: dict[str, Operation] = {
    "on": ACTIONS["on"],
    "off": ACTIONS["off"],
    "soft-off": Operation.GracefulShutdown,
    "force-off": Operation.ForceOff,
    "soft-restart": ACTIONS["reboot"],
    "hard-restart": ACTIONS["reset"],
    "init": ACTIONS["reset"],
    "reinit": ACTIONS["reset"],
}
PCS_NAMES: dict[str, str] = {
    Operation.On: "On", Operation.ForceOff: "Force-Off", Operation.GracefulShutdown: "Soft-Off",
    Operation.GracefulRestart: "Soft-Restart", Operation.ForceRestart: "Hard-Restart", Operation.Nmi: "Nmi",
}
# What a node Chamicore can reach may be asked (every PCS operation maps onto steps its BMC takes).
SUPPORTED = ["On", "Force-Off", "Soft-Off", "Off", "Soft-Restart", "Init", "Hard-Restart"]
EXPIRATION = datetime.timedelta(minutes=1440)  # PCS's default record lifetime (expire-time-mins)

TASK_STATUS = {"pending": "new", "sending": "in-progress", "verifying": "in-progress", "succeeded": "succeeded",
               "failed": "failed", "aborted": "failed"}
TASK_DESCRIPTION = {"pending": "Waiting for the power engine", "sending": "Sending the request to the BMC",
                    "verifying": "Waiting for the node to reach its power state", "succeeded": "Transition confirmed"}
MANAGEMENT_STATES = ("available", "unavailable")
NOT_FOUND = "Component not found in component map."

POWER_JOB = "power"  # the power engine's job name in sync.status (sync/power/engine.py)
REPORT_STALE_S = 30.0  # an active engine reports after every pass, every 2 s when idle


class PcsLocation(msgspec.Struct, omit_defaults=True):
    xname: str
    deputyKey: str = ""


class PcsTransitionRequest(msgspec.Struct, omit_defaults=True):
    operation: str
    location: list[PcsLocation]
    taskDeadlineMinutes: int | None = None


class PcsTransitionCreated(msgspec.Struct):
    transitionID: str
    operation: str


class PcsTaskCounts(msgspec.Struct):
    total: int = 0
    new: int = 0
    in_progress: int = msgspec.field(default=0, name="in-progress")
    failed: int = 0
    succeeded: int = 0
    unsupported: int = msgspec.field(default=0, name="un-supported")


class PcsTask(msgspec.Struct, omit_defaults=True):
    xname: str
    taskStatus: str
    taskStatusDescription: str
    error: str = ""


class PcsTransition(msgspec.Struct, omit_defaults=True):
    transitionID: str
    operation: str
    createTime: datetime.datetime
    automaticExpirationTime: datetime.datetime
    transitionStatus: str
    taskCounts: PcsTaskCounts
    tasks: list[PcsTask] | None = None


class PcsTransitionList(msgspec.Struct):
    transitions: list[PcsTransition]


class PcsAbort(msgspec.Struct):
    abortStatus: str


class PcsPowerStatusRequest(msgspec.Struct):
    xname: list[str] | None = None
    powerStateFilter: str | None = None
    managementStateFilter: str | None = None


class PcsPowerStatus(msgspec.Struct):
    xname: str
    powerState: str
    managementState: str
    error: str
    supportedPowerTransitions: list[str]
    lastUpdated: str


class PcsPowerStatusList(msgspec.Struct):
    status: list[PcsPowerStatus]


class PcsHealth(msgspec.Struct):
    KvStore: str
    DistLocking: str
    StateManager: str
    Vault: str
    TaskRunner: str


# -- service status ------------------------------------------------------------------------------------------

async def liveness(request: Request) -> Response:
    return compat.no_content()


async def readiness(request: Request) -> Response:
    """204 when the native readiness (the database answers, its schema is current) says ready."""
    answer = await service.readiness(request)
    if answer.status_code == 200:
        return compat.no_content()
    raise problem(503, f"not ready: {msgspec.json.decode(answer.body).get('detail', 'unknown')}")


async def health(request: Request) -> Response:
    """PCS's parts, as Chamicore has them: its store, locks and state manager are the one PostgreSQL database;
    BMC credentials are kept there too (no Vault); the task runner is the power engine of the sync daemon."""
    try:
        async with request.app.state.pool.acquire(timeout=2) as conn:
            replicas = [r for r in await syncstatus.replicas(conn) if r.job == POWER_JOB]
    except Exception:  # any failure means "not responsive"; the engine's reports are in the same database
        database, runner = "connected, not responsive", "not connected"
    else:
        database = "connected, responsive"
        if not replicas:
            runner = "not connected"
        elif any(r.state == "active" and r.seconds_since_report < REPORT_STALE_S for r in replicas):
            runner = "connected, responsive, local mode"  # the engine sends its Redfish requests itself
        else:
            runner = "connected, not responsive, local mode"
    return json_response(PcsHealth(KvStore=database, DistLocking=database, StateManager=database, Vault="disabled",
                                   TaskRunner=runner))


# -- transitions ---------------------------------------------------------------------------------------------

def _component_id(text: str) -> str:
    """An xname as SMD stores it (normalised); any other Chamicore id as it is."""
    found = xname.parse(text)
    return found.id if found is not None else text


def _counts(states: collections.Counter) -> PcsTaskCounts:
    return PcsTaskCounts(total=sum(states.values()), new=states["pending"],
                         in_progress=states["sending"] + states["verifying"],
                         failed=states["failed"] + states["aborted"], succeeded=states["succeeded"])


def _task(task) -> PcsTask:
    state, detail = task["state"], task["detail"]
    if state == "failed":
        return PcsTask(task["node_id"], "failed", "Failed to achieve transition", error=detail or "failed")
    if state == "aborted":
        return PcsTask(task["node_id"], "failed", "Aborted", error=detail or "aborted")
    return PcsTask(task["node_id"], TASK_STATUS[state], detail or TASK_DESCRIPTION[state])


def _transition(row, states: collections.Counter, tasks=None) -> PcsTransition:
    return PcsTransition(
        transitionID=str(row["id"]), operation=PCS_NAMES[row["operation"]], createTime=row["created_at"],
        automaticExpirationTime=row["created_at"] + EXPIRATION, transitionStatus=row["state"],
        taskCounts=_counts(states), tasks=None if tasks is None else [_task(t) for t in tasks])


def _transition_key(request: Request) -> uuid.UUID:
    text = request.path_params["id"]
    try:
        return uuid.UUID(text)
    except ValueError:
        raise problem(400, f"transitionID {text[:64]!r} is not a UUID") from None


async def create_transition(request: Request) -> Response:
    body = json_object(await json_body(request))
    operation_name = key(body, "operation")
    operation = OPERATIONS.get(operation_name.lower()) if isinstance(operation_name, str) else None
    if operation is None:
        raise problem(400, f"invalid Operation type {operation_name if isinstance(operation_name, str) else ''}")
    deadline = key(body, "taskDeadlineMinutes")
    if deadline is not None and (not isinstance(deadline, int) or isinstance(deadline, bool)):
        raise problem(400, "taskDeadlineMinutes must be a whole number of minutes, or null")
    location = key(body, "location")
    if not isinstance(location, list | None):
        raise problem(400, "location must be a list of {\"xname\": ...}")
    node_ids = []
    for index, entry in enumerate(location or ()):
        if not isinstance(entry, dict) or not isinstance(key(entry, "xname"), str):
            raise problem(400, f"location[{index}] must be an object with an xname")
        if not isinstance(key(entry, "deputyKey", ""), str):
            raise problem(400, f"location[{index}].deputyKey must be a string")
        node_ids.append(_component_id(key(entry, "xname")))
    targets = convert({"nodes": node_ids}, native.Targets)  # the native id rules (422 naming the bad one)
    transition, _tasks = await native.start(request, operation, targets)
    return json_response(PcsTransitionCreated(transitionID=str(transition["id"]), operation=PCS_NAMES[operation]),
                         200, {"Location": f"../transitions/{transition['id']}"})


async def list_transitions(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        _total, rows, counts = await native.transitions_page(conn, [], None)
    return json_response(PcsTransitionList(transitions=[
        _transition(row, collections.Counter({k: v for k, v in counts[row["id"]].items() if k != "total"}))
        for row in rows]))


async def get_transition(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        row = await native.load(conn, _transition_key(request))
        tasks = await native.tasks_of(conn, row["id"])
    return json_response(_transition(row, collections.Counter(t["state"] for t in tasks), tasks))


async def abort_transition(request: Request) -> Response:
    """As PCS: a finished transition cannot be aborted (400); one aborted already, or being aborted, is 202."""
    async with request.app.state.pool.acquire() as conn:
        before, _row, _tasks = await native.abort(conn, _transition_key(request))
    if before == "completed":
        raise problem(400, "Transition is already finished and cannot be aborted.")
    return json_response(PcsAbort(abortStatus="Accepted - abort initiated"), 202)


# -- power status --------------------------------------------------------------------------------------------

async def power_status_query(request: Request) -> Response:
    return await _power_status(request, compat.query_values(request, "xname"),
                               compat.query_value(request, "powerStateFilter") or "",
                               compat.query_value(request, "managementStateFilter") or "")


async def power_status_body(request: Request) -> Response:
    body = json_object(await json_body(request))
    # null reads as empty, as Go's decoder has it
    names, power_filter, management_filter = (key(body, name) for name in (
        "xname", "powerStateFilter", "managementStateFilter"))
    if not isinstance(names, list | None) or not all(isinstance(n, str) for n in names or ()):
        raise problem(400, "xname must be a list of component names")
    if not isinstance(power_filter, str | None) or not isinstance(management_filter, str | None):
        raise problem(400, "powerStateFilter and managementStateFilter must be strings")
    return await _power_status(request, names or [], power_filter or "", management_filter or "")


async def _power_status(request: Request, names: list[str], power_filter: str, management_filter: str) -> Response:
    """The native power status of the nodes named (every node when none), in the order named; a name that is no
    node still answers, with why."""
    power_filter, management_filter = power_filter.lower(), management_filter.lower()
    if power_filter and power_filter not in native.POWER_STATES:
        raise problem(400, f"invalid powerStateFilter type: {power_filter[:40]}")
    if management_filter and management_filter not in MANAGEMENT_STATES:
        raise problem(400, f"invalid ManagementStateFilter type: {management_filter[:40]}")
    node_ids = list(dict.fromkeys(_component_id(n) for n in names))
    if bad := [n for n in node_ids if not is_valid_id(n)]:
        raise problem(400, "invalid xnames detected: " + " ".join(n[:64] for n in bad[:10]))
    async with request.app.state.pool.acquire() as conn:
        _total, found = await native.power_states(conn, node_ids, [], [power_filter] if power_filter else [],
                                                  [management_filter] if management_filter else [])
        by_id = {status.node_id: status for status in found}
        targets = {r["id"]: r for r in await power_targets.fetch(conn, node_ids or list(by_id))}
    answer = []
    for node_id in node_ids or list(by_id):
        status = by_id.get(node_id)
        if status is not None:
            reachable = target_problem(targets[node_id]) is None
            answer.append(PcsPowerStatus(xname=node_id, powerState=status.power_state,
                                         managementState=status.management_state, error=status.error or "",
                                         supportedPowerTransitions=SUPPORTED if reachable else [],
                                         lastUpdated=status.updated_at or ""))
        elif targets[node_id]["type"] is None:
            answer.append(_undefined(node_id, NOT_FOUND))
        elif targets[node_id]["type"] != "Node":
            answer.append(_undefined(node_id, target_problem(targets[node_id]) or ""))
        # else: a node the filters left out
    return json_response(PcsPowerStatusList(status=answer))


def _undefined(node_id: str, error: str) -> PcsPowerStatus:
    return PcsPowerStatus(xname=node_id, powerState="undefined", managementState="undefined", error=error,
                          supportedPowerTransitions=[], lastUpdated="")


# -- routes, at the root and under /v1 -----------------------------------------------------------------------

for _base in BASES:
    router.get(f"{_base}/liveness", scope=None, summary="PCS liveness: 204", status=204, fold_query=True)(liveness)
    router.get(f"{_base}/readiness", scope=None, summary="PCS readiness: 204 when the database answers",
               status=204, fold_query=True)(readiness)
    router.get(f"{_base}/health", scope=None, summary="PCS health of its parts", response=PcsHealth,
               fold_query=True)(health)
    router.post(f"{_base}/transitions", scope="write:power", summary="Start a power transition (PCS)",
                request=PcsTransitionRequest, response=PcsTransitionCreated, status=200, content_types=BODY_TYPES,
                fold_query=True)(create_transition)
    router.get(f"{_base}/transitions", scope="read:power", summary="Power transitions, without their tasks (PCS)",
               response=PcsTransitionList, fold_query=True)(list_transitions)
    router.get(f"{_base}/transitions/{{id}}", scope="read:power", summary="A power transition with its tasks (PCS)",
               response=PcsTransition, fold_query=True)(get_transition)
    router.delete(f"{_base}/transitions/{{id}}", scope="write:power", summary="Abort a power transition (PCS)",
                  response=PcsAbort, status=202, fold_query=True)(abort_transition)
    router.get(f"{_base}/power-status", scope="read:power", summary="Power state of nodes (PCS)",
               response=PcsPowerStatusList, fold_query=True,
               params=(Param("xname", "node names, repeated or comma-separated; none: every node"),
                       Param("powerstatefilter", "on, off or undefined"),
                       Param("managementstatefilter", "available or unavailable")))(power_status_query)
    router.post(f"{_base}/power-status", scope="read:power", summary="Power state of nodes, asked in a body (PCS)",
                request=PcsPowerStatusRequest, response=PcsPowerStatusList, status=200, content_types=BODY_TYPES,
                audited=False, fold_query=True)(power_status_body)  # a read, asked with a body
