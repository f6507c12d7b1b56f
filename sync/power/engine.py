"""The power engine: drives each transition's per-node tasks to a verified end.

Every change of a task is written before the engine acts on it, so a
replica that takes over (after a SIGKILL, say) continues from the database:

- `pending`: look at the node first; a node already in the step's wanted
  state is not sent anything.  Otherwise write `sending`, then POST.
- `sending` found on resume, or a POST whose outcome is unknown (no answer
  in time, the connection lost once the request was out, a 500/502/504):
  the request may or may not have been acted on.  The task is verified
  first (`unconfirmed`); only if the node does not get there within a
  short window is the request sent again.  An Nmi, which cannot be
  verified, is never sent twice: it fails with a note instead.  A request
  that certainly did not leave (no connection) or that the BMC refused is
  retried as any other.
- `verifying`: poll the node until it reaches the wanted state or the
  deadline passes (BMCs apply changes seconds later, on their own time).

The protocol is the BMC's: a Redfish endpoint's node is a ComputerSystem
(`RedfishSystem`: POST a ResetType, read PowerState), an IPMI endpoint's
(`ipmi://`) is its chassis (`IpmiChassis`: chassis control, read chassis
status).  Both tell whether a failed request may have been acted on, so the
steps above are the same for either.

Limits: a global one on requests in flight and one per BMC, held only
around a request, never while waiting.  Retryable failures (no answer,
5xx, 429) back off with jitter; the others fail the task with what to do.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import math
import random
import time

import aiohttp
import asyncpg

from core import backoff, db, events, inventory, power_targets, tracing
from core.crypto import SecretBox
from core.ipmi import SCHEME as IPMI_SCHEME
from core.ipmi import IpmiClient, IpmiError
from core.power import ACTIVE_TASK_STATES_SQL, STEPS, Operation, Step
from core.power_targets import target_problem
from sync.redfish import RedfishClient, RedfishError
from sync.service import Job

log = logging.getLogger("chamicore.sync.power")

POLL_S = 1.0            # between verification reads of one node
UNCONFIRMED_S = 30.0    # how long a resumed `sending` task is verified before the request is sent again
TaskKey = tuple[str, str]  # (transition id, node id)


class TaskFailed(Exception):
    pass


BmcError = RedfishError | IpmiError  # both say `retryable` and `may_have_acted`
BMC_ERRORS = (RedfishError, IpmiError)


class RedfishSystem:
    """A node as a Redfish BMC addresses it: one ComputerSystem."""

    def __init__(self, client: RedfishClient, path: str) -> None:
        self.client, self.path, self.bmc_id = client, path, client.bmc_id

    async def power_state(self) -> str | None:
        return (await self.client.get(self.path)).get("PowerState")

    async def reset(self, reset_type: str) -> None:
        await self.client.post(self.path + "/Actions/ComputerSystem.Reset", {"ResetType": reset_type})


class IpmiChassis:
    """A node as an IPMI BMC addresses it: its chassis (chassis control, verified by chassis status)."""

    def __init__(self, client: IpmiClient) -> None:
        self.client, self.bmc_id = client, client.bmc_id

    async def power_state(self) -> str | None:
        return await self.client.power_state()

    async def reset(self, reset_type: str) -> None:
        await self.client.set_power(reset_type)


Node = RedfishSystem | IpmiChassis


class NotActive(RuntimeError):
    """A task used the engine's pool or HTTP session after deactivate() (a bug: deactivate cancels them first)."""


class PowerEngine(Job):
    name = "power"
    channel = "chamicore_power"
    period_s = 2.0

    def __init__(self, dsn: str, box: SecretBox | None, *, concurrency: int = 256, bmc_concurrency: int = 4,
                 timeout_s: float = 10.0, verify_s: float = 120.0, max_attempts: int = 5,
                 poll_s: float = 60.0, unconfirmed_s: float = UNCONFIRMED_S) -> None:
        super().__init__(dsn)
        self.box = box
        self.timeout_s = timeout_s
        self.verify_s = verify_s
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self.unconfirmed_s = unconfirmed_s
        self.limit = asyncio.Semaphore(concurrency)
        self.bmc_concurrency = bmc_concurrency
        self.bmc_limits: dict[str | None, asyncio.Semaphore] = {}  # by the node's BMC id
        self.running: dict[TaskKey, asyncio.Task] = {}
        self.pool: asyncpg.Pool | None = None
        self.session: aiohttp.ClientSession | None = None
        self.refresher: asyncio.Task | None = None
        self.last_refresh = -math.inf  # the first pass refreshes (monotonic() is small on a freshly booted host)
        self.sent = 0
        self.tasks_done = 0
        self.tasks_failed = 0

    def counts(self) -> dict:
        return {"passes": self.passes, "inFlight": len(self.running), "sent": self.sent, "tasksDone": self.tasks_done,
                "tasksFailed": self.tasks_failed}

    @property
    def active_pool(self) -> asyncpg.Pool:
        """The pool of the active replica: made by activate(), gone at deactivate()."""
        if self.pool is None:
            raise NotActive("the power engine has no database pool: it is not the active replica")
        return self.pool

    @property
    def active_session(self) -> aiohttp.ClientSession:
        if self.session is None:
            raise NotActive("the power engine has no HTTP session: it is not the active replica")
        return self.session

    # -- the job's pass --------------------------------------------------------------------------------------

    async def activate(self) -> None:
        self.pool = await db.create_pool(self.dsn, min_size=1, max_size=8,
                                         server_settings={"application_name": "chamicore-sync-power"})
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def work_once(self, conn: asyncpg.Connection) -> bool:
        await self._abort_signaled(conn)
        await conn.execute("UPDATE power.transitions SET state = 'in-progress', updated_at = now() "
                           "WHERE state = 'new'")
        active = await conn.fetch(
            "SELECT t.transition_id, t.node_id FROM power.tasks t JOIN power.transitions r ON r.id = t.transition_id "
            f"WHERE t.state IN {ACTIVE_TASK_STATES_SQL} AND r.state = 'in-progress'")
        for row in active:
            key = (str(row["transition_id"]), row["node_id"])
            if key not in self.running:
                task = asyncio.create_task(self._drive(key), name=f"power-{key[0][:8]}-{key[1]}")
                self.running[key] = task
                task.add_done_callback(functools.partial(self._done, key))
        await self._finish_transitions(conn)
        if self.poll_s and time.monotonic() - self.last_refresh >= self.poll_s and (
                self.refresher is None or self.refresher.done()):
            self.last_refresh = time.monotonic()
            self.refresher = asyncio.create_task(self._refresh_status())
        return False

    def _done(self, key: TaskKey, _task: asyncio.Task) -> None:
        self.running.pop(key, None)
        self.tasks_done += 1
        self._wake.set()  # finish the transition promptly

    async def deactivate(self) -> None:
        """Leadership is gone: stop acting at once (another replica may already be)."""
        tasks = list(self.running.values()) + ([self.refresher] if self.refresher else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.running.clear()
        if self.session is not None:
            await self.session.close()
            self.session = None
        if self.pool is not None:
            self.pool.terminate()
            self.pool = None

    async def _abort_signaled(self, conn: asyncpg.Connection) -> None:
        for row in await conn.fetch("SELECT id FROM power.transitions WHERE state = 'abort-signaled'"):
            transition_id = str(row["id"])
            for key, task in list(self.running.items()):
                if key[0] == transition_id:
                    task.cancel()
            async with conn.transaction():
                await conn.execute(
                    "UPDATE power.tasks SET state = 'aborted', updated_at = now(), detail = CASE WHEN state = "
                    "'sending' THEN 'aborted; the last request may have reached the BMC' ELSE 'aborted' END "
                    f"WHERE transition_id = $1 AND state IN {ACTIVE_TASK_STATES_SQL}", row["id"])
                await conn.execute("UPDATE power.transitions SET state = 'aborted', finished_at = now(), "
                                   "updated_at = now() WHERE id = $1", row["id"])
                await events.emit(conn, "power", "transitions", "aborted", transition_id)

    async def _finish_transitions(self, conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            finished = await conn.fetch(
                "UPDATE power.transitions r SET state = 'completed', finished_at = now(), updated_at = now() "
                "WHERE state = 'in-progress' AND NOT EXISTS (SELECT 1 FROM power.tasks t WHERE t.transition_id = r.id "
                f"AND t.state IN {ACTIVE_TASK_STATES_SQL}) RETURNING id")
            for row in finished:
                counts = {state: n for state, n in await conn.fetch(
                    "SELECT state, count(*) FROM power.tasks WHERE transition_id = $1 GROUP BY state", row["id"])}
                await events.emit(conn, "power", "transitions", "completed", str(row["id"]), {"counts": counts})
                log.info("power: transition %s completed %s", row["id"], counts)

    # -- one node's task -------------------------------------------------------------------------------------

    async def _load(self, key: TaskKey):
        return await self.active_pool.fetchrow(
            "SELECT t.*, r.operation, r.state AS transition_state FROM power.tasks t "
            "JOIN power.transitions r ON r.id = t.transition_id WHERE t.transition_id = $1 AND t.node_id = $2",
            key[0], key[1])

    async def _set(self, key: TaskKey, expected: str, state: str, **fields) -> bool:
        """Move the task from `expected` to `state`; False if someone else (an abort) moved it first."""
        names = list(fields)
        sets = "".join(f", {name} = ${i + 5}" for i, name in enumerate(names))
        done = await self.active_pool.fetchval(
            f"UPDATE power.tasks SET state = $4, updated_at = now(){sets} WHERE transition_id = $1 AND node_id = $2 "
            f"AND state = $3 RETURNING true", key[0], key[1], expected, state, *fields.values())
        return bool(done)

    async def _drive(self, key: TaskKey) -> None:
        try:
            # In the trace of the request that asked for the transition, when that one was traced.
            parent = await self.active_pool.fetchval("SELECT traceparent FROM power.transitions WHERE id = $1",
                                                     key[0]) if tracing.enabled() else None
            with tracing.span("power task", parent=parent,
                              attributes={"chamicore.transition.id": key[0], "chamicore.node.id": key[1]}):
                await self._steps(key)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the database went away, say: the next pass picks the task up again
            log.exception("power: task %s on %s stopped; it resumes on the next pass", key[0][:8], key[1])

    async def _steps(self, key: TaskKey) -> None:
        node: Node | None = None
        while True:
            task = await self._load(key)
            if task is None or task["state"] not in ("pending", "sending", "verifying") \
                    or task["transition_state"] != "in-progress":
                return
            step = STEPS[Operation(task["operation"])][task["step"]]
            try:
                if node is None:
                    node = await self._target(key[1])
                wait = task["next_attempt_at"].timestamp() - time.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                elif task["state"] == "verifying":
                    await self._verify(key, task, step, node)
                else:
                    await self._send(key, task, step, node)
            except TaskFailed as exc:
                await self._fail(key, task["state"], str(exc))
                return
            except BMC_ERRORS as exc:
                await self._retry_or_fail(key, task["state"], task["attempts"] + 1, exc)

    async def _retry_or_fail(self, key: TaskKey, current: str, attempts: int, exc: BmcError) -> None:
        if not exc.retryable:
            await self._fail(key, current, str(exc), attempts=attempts)
        elif attempts >= self.max_attempts:
            await self._fail(key, current, f"{exc} (gave up after {attempts} tries)", attempts=attempts)
        else:
            wait = backoff.delay(attempts, base=0.5, cap=30.0, jitter=(0.5, 1.5))
            await self._set(key, current, "pending" if current == "sending" else current, attempts=attempts,
                            detail=str(exc)[:1000], next_attempt_at=_after(wait))

    async def _request(self, bmc_id: str | None, call):
        bmc_limit = self.bmc_limits.setdefault(bmc_id, asyncio.Semaphore(self.bmc_concurrency))
        async with self.limit, bmc_limit:
            return await call

    async def _power_state(self, node: Node) -> str | None:
        return await self._request(node.bmc_id, node.power_state())

    async def _send(self, key: TaskKey, task, step: Step, node: Node) -> None:
        if task["state"] == "sending":  # found so on resume: it may have been sent already
            if step.wanted is None:
                raise TaskFailed(f"interrupted while sending {step.reset_type}; not sent again so that it cannot run "
                                 "twice: check the node")
            await self._set(key, "sending", "verifying", unconfirmed=True, verify_until=_after(self.unconfirmed_s))
            return
        if step.wanted is not None and await self._power_state(node) == step.wanted:
            await self._advance(key, task, step, "pending", f"already {step.wanted}")
            return
        attempts = task["attempts"] + 1
        if not await self._set(key, "pending", "sending", attempts=attempts):
            return
        try:
            await self._request(node.bmc_id, node.reset(step.reset_type))
        except BMC_ERRORS as exc:
            if exc.may_have_acted:
                await self._outcome_unknown(key, task, step, attempts, exc)
            else:
                await self._retry_or_fail(key, "sending", attempts, exc)
            return
        self.sent += 1
        if step.wanted is None:
            await self._set(key, "sending", "sending", sends=task["sends"] + 1)
            await self._advance(key, task, step, "sending", f"{step.reset_type} sent")
            return
        await self._set(key, "sending", "verifying", sends=task["sends"] + 1, unconfirmed=False, attempts=0,
                        verify_until=_after(self.verify_s), detail=f"{step.reset_type} sent; waiting for {step.wanted}")

    async def _outcome_unknown(self, key: TaskKey, task, step: Step, attempts: int, exc: BmcError) -> None:
        """The request may have reached the BMC and been acted on, though no answer says so."""
        sends = task["sends"] + 1
        if step.wanted is None:
            await self._fail(key, "sending", f"{step.reset_type} may have reached the BMC ({exc}) and cannot be "
                             "verified: not sent again, so that it cannot run twice; check the node",
                             attempts=attempts, sends=sends)
        elif attempts >= self.max_attempts:
            await self._fail(key, "sending", f"{exc} (gave up after {attempts} tries)", attempts=attempts, sends=sends)
        else:
            await self._set(key, "sending", "verifying", attempts=attempts, sends=sends, unconfirmed=True,
                            verify_until=_after(self.unconfirmed_s),
                            detail=f"{exc}; checking for {step.wanted} before sending {step.reset_type} again"[:1000])

    async def _verify(self, key: TaskKey, task, step: Step, node: Node) -> None:
        state = await self._power_state(node)
        if state == step.wanted:
            await self._advance(key, task, step, "verifying", f"reached {state}")
            return
        if time.time() < task["verify_until"].timestamp():
            await asyncio.sleep(POLL_S * random.uniform(0.8, 1.2))
            return
        if task["unconfirmed"]:
            # The interrupted or unanswered request never took effect: send it (once more) now.
            await self._set(key, "verifying", "pending", unconfirmed=False,
                            detail=f"not {step.wanted} within {self.unconfirmed_s:g} s of a request that may not "
                                   f"have reached the BMC; sending {step.reset_type} again")
            return
        raise TaskFailed(f"did not reach {step.wanted} within {self.verify_s:g} s after {step.reset_type} "
                         f"(last seen: {state or 'unknown'})")

    async def _advance(self, key: TaskKey, task, step: Step, expected: str, detail: str) -> None:
        steps = STEPS[Operation(task["operation"])]
        if task["step"] + 1 < len(steps):
            await self._set(key, expected, "pending", step=task["step"] + 1, attempts=0, unconfirmed=False,
                            detail=detail)
            return
        async with self.active_pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(
                "UPDATE power.tasks SET state = 'succeeded', detail = $4, unconfirmed = false, updated_at = now() "
                "WHERE transition_id = $1 AND node_id = $2 AND state = $3 RETURNING true", key[0], key[1], expected,
                detail)
            if done and step.wanted is not None:
                await _record_power(conn, key[1], step.wanted)
                await events.emit(conn, "power", "nodes", step.wanted.lower(), key[1], {"transition": key[0]})

    async def _fail(self, key: TaskKey, expected: str, detail: str, **fields) -> None:
        log.warning("power: %s on %s failed: %s", key[0][:8], key[1], detail)
        self.tasks_failed += 1  # the admin API's /metrics reads it from sync.status
        await self._set(key, expected, "failed", detail=detail[:2000], **fields)

    async def _target(self, node_id: str) -> Node:
        return await self._node((await power_targets.fetch(self.active_pool, [node_id]))[0])

    async def _node(self, row, clients: dict[str, RedfishClient | IpmiClient] | None = None) -> Node:
        """How to reach the node of this power_targets row; `clients` shares one client per BMC."""
        if problem := target_problem(row):
            raise TaskFailed(problem)
        client = clients.get(row["bmc_id"]) if clients is not None else None
        if client is None:
            client = await self._client(row)
            if clients is not None:
                clients[row["bmc_id"]] = client
        if isinstance(client, IpmiClient):
            return IpmiChassis(client)  # an IPMI BMC controls one system: its chassis
        return RedfishSystem(client, row["path"] or await self._only_system(client, row["bmc_id"], row["id"]))

    async def _client(self, row) -> RedfishClient | IpmiClient:
        if self.box is None:
            raise TaskFailed("the sync daemon has no CHAMICORE_CREDENTIALS_KEY (or _FILE) to open BMC credentials")
        secret = await self.active_pool.fetchrow("SELECT username, secret_enc FROM auth.credentials WHERE id = $1",
                                                 row["credential_id"])
        if secret is None:
            raise TaskFailed(f"credential {row['credential_id']!r} of BMC {row['bmc_id']!r} no longer exists")
        try:
            password = self.box.open(bytes(secret["secret_enc"]), row["credential_id"]).decode()
        except ValueError:
            raise TaskFailed(f"credential {row['credential_id']!r} cannot be decrypted: the sync daemon's "
                             "CHAMICORE_CREDENTIALS_KEY is not the admin API's") from None
        if row["address"].startswith(IPMI_SCHEME):
            return IpmiClient(row["address"], secret["username"], password, timeout_s=self.timeout_s,
                              credential_id=row["credential_id"], bmc_id=row["bmc_id"])
        return RedfishClient(self.active_session, row["address"], secret["username"], password, insecure=row["insecure"],
                             timeout_s=self.timeout_s, credential_id=row["credential_id"], bmc_id=row["bmc_id"])

    async def _only_system(self, client: RedfishClient, bmc_id: str, node_id: str) -> str:
        members = await self._request(bmc_id, client.members("/redfish/v1/Systems"))
        if len(members) != 1:
            raise TaskFailed(f"BMC {bmc_id!r} manages {len(members)} systems and node {node_id!r} is not mapped to "
                             "one: run discovery on the BMC, or list it in the endpoint's systems")
        return members[0]

    # -- power status ----------------------------------------------------------------------------------------

    async def _refresh_status(self) -> None:
        """Every mapped node's power state into power.status (what GET /power/v1/power-status shows)."""
        pool = self.active_pool
        rows = await power_targets.fetch(pool, [r["id"] for r in await pool.fetch(
            "SELECT id FROM smd.components WHERE type = 'Node' AND (id IN (SELECT component_id FROM smd.redfish_systems)"
            " OR parent_id IN (SELECT id FROM smd.redfish_endpoints))")])
        clients: dict[str, RedfishClient | IpmiClient] = {}

        async def one(row) -> None:
            try:
                state = await self._power_state(await self._node(row, clients))
                async with pool.acquire() as conn, conn.transaction():  # status and inventory state together
                    await _record_power(conn, row["id"], state if state in ("On", "Off") else None)
            except (TaskFailed, *BMC_ERRORS) as exc:
                await pool.execute(
                    "INSERT INTO power.status (node_id, power_state, management_state, error) "
                    "VALUES ($1, 'undefined', 'unavailable', $2) ON CONFLICT (node_id) DO UPDATE SET "
                    "power_state = 'undefined', management_state = 'unavailable', error = $2, updated_at = now()",
                    row["id"], str(exc)[:1000])

        # Every node's outcome is awaited; one that failed does not leave its siblings unobserved.
        for row, outcome in zip(rows, await asyncio.gather(*(one(r) for r in rows), return_exceptions=True),
                                strict=True):
            if isinstance(outcome, asyncpg.ForeignKeyViolationError):
                continue  # the node was deleted meanwhile
            if isinstance(outcome, BaseException):
                log.warning("power status of %s: %s: %s", row["id"], type(outcome).__name__, outcome)


POWER = inventory.Origin("power")
_ON_FROM = ("Empty", "Populated", "Off")


async def _record_power(conn, node_id: str, state: str | None) -> None:
    """power.status, and the inventory state when it changed between On and Off."""
    await conn.execute(
        "INSERT INTO power.status (node_id, power_state, management_state) VALUES ($1, $2, 'available') "
        "ON CONFLICT (node_id) DO UPDATE SET power_state = excluded.power_state, management_state = 'available', "
        "error = NULL, updated_at = now()", node_id, state.lower() if state else "undefined")
    if state in ("On", "Off"):
        # Through the inventory's write layer (its event says `source: power`).  "On" does not overwrite Ready,
        # Standby or Halt: they say more than "powered".
        await inventory.set_state(conn, node_id, state, POWER, only_from=_ON_FROM if state == "On" else None)


def _after(seconds: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
