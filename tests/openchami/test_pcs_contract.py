"""The PCS face as ochami uses it: `pcs service status`, `pcs transition start|show|list|abort|monitor`,
`pcs status show|list`, request by request as ochami sends them (no Content-Type, its User-Agent, a token),
answers checked field by field as ochami and PCS define them (reference/openchami-api.md §6).

The transitions are Chamicore's own: one started here is the row /power/v1 shows, and the power engine
runs it against sushy-tools' Redfish emulator like any other.
"""

import asyncio
import datetime
import json
import uuid

import asyncpg
import httpx
import pytest

from sync.power.engine import PowerEngine
from tests.helpers.api import create, credential, problem_of
from tests.helpers.keys import box
from tests.helpers.redfish import RedfishEmulator, fake_system
from tests.helpers.tasks import running
from tests.helpers.tokens import token_for

AGENT = "ochami/0.5.0"
BMC, NODE, NODE2, ORPHAN = "x1000c1s7b0", "x1000c1s7b0n0", "x1000c1s7b0n1", "x1000c1s7b1n0"
SUPPORTED = ["On", "Force-Off", "Soft-Off", "Off", "Soft-Restart", "Init", "Hard-Restart"]
COUNT_KEYS = {"total", "new", "in-progress", "failed", "succeeded", "un-supported"}
SYSTEM = fake_system(1, "Off")


def counts(**nonzero) -> dict:
    return {key: 0 for key in COUNT_KEYS} | {key.replace("_", "-"): n for key, n in nonzero.items()}


def body(value) -> bytes:
    """What ochami puts on the wire: Go's encoding of its request struct, and no Content-Type header."""
    return json.dumps(value, separators=(",", ":")).encode()


def rfc3339(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.tzinfo is not None, text
    return moment


async def client(admin_app, token: str | None) -> httpx.AsyncClient:
    headers = {"User-Agent": AGENT} | ({"Authorization": f"Bearer {token}"} if token else {})
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=admin_app), base_url="http://admin/openchami",
                             headers=headers)


@pytest.fixture
async def ochami(admin_app, anonymous, dsn):
    """ochami pointed at `cluster.uri: http://admin/openchami`, holding an operator's token."""
    async with await client(admin_app, await token_for(anonymous, dsn, "pcs-operator", ["operator"])) as c:
        yield c


async def inventory(api, address="http://127.0.0.1:9", systems=()):
    """A BMC with a credential and two nodes behind it, and a node with no BMC at all (written natively)."""
    await credential(api)
    await create(api, "/hsm/v2/State/Components", {"metadata": {"id": BMC}, "spec": {"type": "BMC"}})
    for node, parent in ((NODE, BMC), (NODE2, BMC), (ORPHAN, None)):
        await create(api, "/hsm/v2/State/Components", {"metadata": {"id": node}, "spec": {
            "type": "Node", "state": "Populated", **({"parentId": parent} if parent else {})}})
    await create(api, "/hsm/v2/Inventory/RedfishEndpoints", {"metadata": {"id": BMC}, "spec": {
        "address": address, "credentialId": "bmc-cred", "systems": list(systems)}})


def engine(dsn):
    return PowerEngine(dsn, box(), verify_s=25, poll_s=3600)


async def monitor(ochami, transition_id, timeout=30.0):
    """`ochami pcs transition monitor`: poll until the transition is completed or aborted, nothing else."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await ochami.get(f"/transitions/{transition_id}")
        assert response.status_code == 200, response.text
        shown = response.json()
        if shown["transitionStatus"] in ("completed", "aborted"):
            return shown
        assert asyncio.get_running_loop().time() < deadline, shown
        await asyncio.sleep(0.2)


async def start(ochami, operation, *xnames, deadline=None):
    response = await ochami.post("/transitions", content=body({
        "operation": operation, "taskDeadlineMinutes": deadline, "location": [{"xname": x} for x in xnames]}))
    assert response.status_code == 200, response.text
    return response


# -- pcs service status ------------------------------------------------------------------------------------

async def test_service_status_is_204_without_a_token_at_the_root_and_under_v1(admin_app, conn):
    async with await client(admin_app, None) as anonymous:
        for base in ("", "/v1"):
            # ochami: GET /readiness, only 204 is "ready"; otherwise GET /liveness must be 204.
            for path in ("/readiness", "/liveness"):
                response = await anonymous.get(base + path)
                assert (response.status_code, response.content) == (204, b""), (path, response.text)
            health = await anonymous.get(base + "/health")
            assert health.status_code == 200 and health.headers["content-type"] == "application/json"
            assert health.json() == {"KvStore": "connected, responsive", "DistLocking": "connected, responsive",
                                     "StateManager": "connected, responsive", "Vault": "disabled",
                                     "TaskRunner": "not connected"}  # no power engine has ever run
        # An engine that said it was active, then nothing for minutes (killed): not responsive.
        await conn.execute("INSERT INTO sync.status (job, instance, state, updated_at) "
                           "VALUES ('power', 'gone:1', 'active', now() - interval '5 minutes')")
        assert (await anonymous.get("/health")).json()["TaskRunner"] == "connected, not responsive, local mode"

        # The database gone: not ready (503 problem), still live, health says so.
        pool = admin_app.state.pool
        admin_app.state.pool = dead = await asyncpg.create_pool("postgresql://nobody@127.0.0.1:9/none", min_size=0)
        try:
            problem_of(await anonymous.get("/readiness"), 503)
            assert (await anonymous.get("/v1/liveness")).status_code == 204
            health = (await anonymous.get("/health")).json()
        finally:
            admin_app.state.pool = pool
            await dead.close()
        assert health["KvStore"] == health["StateManager"] == "connected, not responsive", health
        assert (await anonymous.get("/readiness")).status_code == 204


# -- pcs transition start / show / list / abort --------------------------------------------------------------

async def test_transition_start_show_and_list_as_ochami(ochami, api, conn):
    await inventory(api)
    response = await start(ochami, "on", NODE, ORPHAN)
    started = response.json()
    assert set(started) == {"transitionID", "operation"} and started["operation"] == "On"
    transition_id = str(uuid.UUID(started["transitionID"]))
    assert response.headers["location"] == f"../transitions/{transition_id}"

    shown = (await ochami.get(f"/transitions/{transition_id}")).json()
    assert set(shown) == {"transitionID", "operation", "createTime", "automaticExpirationTime", "transitionStatus",
                          "taskCounts", "tasks"}
    assert (shown["transitionID"], shown["operation"], shown["transitionStatus"]) == (transition_id, "On", "new")
    created = rfc3339(shown["createTime"])
    assert abs(created - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(minutes=1)
    assert rfc3339(shown["automaticExpirationTime"]) - created == datetime.timedelta(days=1)
    # The node with no BMC failed at once, with what to do; the other waits for the engine.
    assert shown["taskCounts"] == counts(total=2, new=1, failed=1)
    waiting, failed = shown["tasks"]
    assert waiting == {"xname": NODE, "taskStatus": "new", "taskStatusDescription": "Waiting for the power engine"}
    assert (failed["xname"], failed["taskStatus"]) == (ORPHAN, "failed")
    assert failed["taskStatusDescription"] == "Failed to achieve transition" and "has no BMC" in failed["error"]

    # The same row the native API shows, announced as a native start is.
    native = (await api.get(f"/power/v1/transitions/{transition_id}")).json()
    assert (native["id"], native["operation"], native["state"], native["requestedBy"]) == (
        transition_id, "On", "new", "pcs-operator")
    assert {t["nodeId"]: t["state"] for t in native["tasks"]} == {NODE: "pending", ORPHAN: "failed"}
    assert await conn.fetchval("SELECT count(*) FROM events.outbox WHERE type = 'chamicore.power.transitions.created'"
                               " AND subject = $1", transition_id) == 1

    # pcs transition list: every transition, without tasks; /v1 answers the same.
    second = (await start(ochami, "force-off", NODE2)).json()["transitionID"]
    listed = (await ochami.get("/transitions")).json()
    assert set(listed) == {"transitions"}
    assert [t["transitionID"] for t in listed["transitions"]] == [second, transition_id]  # newest first
    assert listed["transitions"][1] == {k: v for k, v in shown.items() if k != "tasks"}
    assert listed["transitions"][0]["operation"] == "Force-Off"
    assert (await ochami.get("/v1/transitions")).json() == listed


@pytest.mark.parametrize(("sent", "native", "shown"), [
    ("on", "On", "On"),
    ("off", "GracefulShutdown", "Soft-Off"),
    ("soft-off", "GracefulShutdown", "Soft-Off"),
    ("force-off", "ForceOff", "Force-Off"),
    ("soft-restart", "GracefulRestart", "Soft-Restart"),
    ("Hard-Restart", "ForceRestart", "Hard-Restart"),
    ("init", "ForceRestart", "Hard-Restart"),
    ("REINIT", "ForceRestart", "Hard-Restart"),  # what ochami sends for `init`
])
async def test_every_pcs_operation_maps_onto_a_native_one(ochami, api, sent, native, shown):
    await inventory(api)
    started = (await start(ochami, sent, NODE, deadline=5)).json()
    assert started["operation"] == shown
    assert (await api.get(f"/power/v1/transitions/{started['transitionID']}")).json()["operation"] == native
    assert (await ochami.get(f"/v1/transitions/{started['transitionID']}")).json()["operation"] == shown


@pytest.mark.parametrize(("raw", "status", "detail"), [
    (body({"operation": "explode", "taskDeadlineMinutes": None, "location": [{"xname": NODE}]}), 400,
     "invalid Operation type explode"),
    (body({"taskDeadlineMinutes": None, "location": [{"xname": NODE}]}), 400, "invalid Operation type"),
    (body({"operation": 1, "location": [{"xname": NODE}]}), 400, "invalid Operation type"),
    (b'{"operation":"on",', 400, "error decoding JSON"),
    (b"", 400, "JSON object"),
    (body({"operation": "on", "taskDeadlineMinutes": "5", "location": [{"xname": NODE}]}), 400, "taskDeadlineMinutes"),
    (body({"operation": "on", "location": {"xname": NODE}}), 400, "location"),
    (body({"operation": "on", "location": [{"xname": NODE, "deputyKey": 7}]}), 400, "deputyKey"),
    (body({"operation": "on", "location": [NODE]}), 400, "location[0]"),
    (body({"operation": "on", "location": []}), 422, "at least one node"),
    (body({"operation": "on", "location": [{"xname": "x9999c0s0b0n0"}]}), 422, "no component 'x9999c0s0b0n0'"),
    (body({"operation": "on", "location": [{"xname": BMC}]}), 422, f"'{BMC}' is a BMC, not a Node"),
    (body({"operation": "on", "location": [{"xname": "bad id!"}]}), 422, "$.nodes[0]"),
])
async def test_bad_transitions_are_refused_and_create_nothing(ochami, api, conn, raw, status, detail):
    await inventory(api)
    problem = problem_of(await ochami.post("/transitions", content=raw), status)
    assert detail in problem["detail"], problem
    assert await conn.fetchval("SELECT count(*) FROM power.transitions") == 0
    assert await conn.fetchval("SELECT count(*) FROM events.outbox WHERE type LIKE 'chamicore.power.%'") == 0


async def test_an_xname_in_any_spelling_names_the_same_node(ochami, api):
    await inventory(api)
    started = (await start(ochami, "On", "X1000C01S7B0N0")).json()
    shown = (await ochami.get(f"/transitions/{started['transitionID']}")).json()
    assert [t["xname"] for t in shown["tasks"]] == [NODE]


async def test_abort_as_ochami_and_monitor_ends_on_aborted_or_completed(ochami, api, dsn):
    await inventory(api)
    transition_id = (await start(ochami, "soft-restart", NODE)).json()["transitionID"]
    response = await ochami.delete(f"/transitions/{transition_id}")
    assert (response.status_code, response.json()) == (202, {"abortStatus": "Accepted - abort initiated"})
    shown = (await ochami.get(f"/transitions/{transition_id}")).json()
    assert shown["transitionStatus"] == "abort-signaled"  # monitor keeps polling this
    assert shown["tasks"] == [{"xname": NODE, "taskStatus": "failed", "taskStatusDescription": "Aborted",
                               "error": "aborted"}]
    assert shown["taskCounts"] == counts(total=1, failed=1)
    assert (await ochami.delete(f"/v1/transitions/{transition_id}")).status_code == 202  # again: still accepted

    # A transition whose every task failed at once (no BMC) completes as soon as the engine looks at it.
    orphan_id = (await start(ochami, "on", ORPHAN)).json()["transitionID"]
    async with running(engine(dsn)):
        aborted = await monitor(ochami, transition_id)
        completed = await monitor(ochami, orphan_id)
    assert aborted["transitionStatus"] == "aborted"
    assert completed["transitionStatus"] == "completed" and completed["taskCounts"] == counts(total=1, failed=1)
    assert (await ochami.delete(f"/transitions/{transition_id}")).status_code == 202  # aborted: accepted
    problem = problem_of(await ochami.delete(f"/transitions/{orphan_id}"), 400)
    assert problem["detail"] == "Transition is already finished and cannot be aborted."
    assert (await api.get(f"/power/v1/transitions/{orphan_id}")).json()["state"] == "completed"

    unknown = "6f1c2a52-0000-4000-8000-000000000000"
    for method in ("GET", "DELETE"):
        problem_of(await ochami.request(method, f"/transitions/{unknown}"), 404)
        problem_of(await ochami.request(method, "/transitions/not-a-uuid"), 400)


# -- pcs status show / list ----------------------------------------------------------------------------------

async def test_power_status_as_ochami(ochami, api, conn):
    await inventory(api)
    await conn.execute("INSERT INTO power.status (node_id, power_state, management_state) VALUES ($1, 'on', "
                       "'available'), ($2, 'off', 'available')", NODE, NODE2)

    # pcs status show X: GET /power-status?xname=X, ochami prints status[0].
    shown = (await ochami.get("/power-status", params={"xname": NODE})).json()
    assert set(shown) == {"status"} and len(shown["status"]) == 1
    node = shown["status"][0]
    assert set(node) == {"xname", "powerState", "managementState", "error", "supportedPowerTransitions",
                         "lastUpdated"}
    assert (node["xname"], node["powerState"], node["managementState"], node["error"]) == (
        NODE, "on", "available", "")
    assert node["supportedPowerTransitions"] == SUPPORTED
    assert abs(rfc3339(node["lastUpdated"]) - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(minutes=1)

    # pcs status list: every node (not the BMC), by id; the one with no BMC can be asked nothing.
    listed = (await ochami.get("/power-status", params={"xname": [], "powerStateFilter": "",
                                                        "managementStateFilter": ""})).json()["status"]
    assert [(s["xname"], s["powerState"], s["managementState"]) for s in listed] == [
        (NODE, "on", "available"), (NODE2, "off", "available"), (ORPHAN, "undefined", "unavailable")]
    assert listed[2]["supportedPowerTransitions"] == [] and listed[2]["lastUpdated"] == ""
    assert listed[2]["error"] == "no power state known yet"
    # The native API reads the same.
    native = (await api.get("/power/v1/power-status")).json()["items"]
    assert [(s["nodeId"], s["powerState"]) for s in native] == [(s["xname"], s["powerState"]) for s in listed]

    # Named in the order asked, in any spelling; what is no node still answers, whatever the filters.
    asked = (await ochami.get("/v1/power-status?xname=x9999c0s0b0n0&XName=X1000C1S7B0N1,x1000c1s7b0n0"
                              f"&xname={BMC}&PowerStateFilter=Off")).json()["status"]
    assert [(s["xname"], s["powerState"], s["managementState"]) for s in asked] == [
        ("x9999c0s0b0n0", "undefined", "undefined"), (NODE2, "off", "available"), (BMC, "undefined", "undefined")]
    assert asked[0]["error"] == "Component not found in component map."
    assert asked[2]["error"] == f"'{BMC}' is a BMC, not a Node" and asked[2]["supportedPowerTransitions"] == []
    unavailable = (await ochami.get("/power-status", params={"managementStateFilter": "unavailable"})).json()
    assert [s["xname"] for s in unavailable["status"]] == [ORPHAN]

    # POST /power-status: the same question in a body (no Content-Type), not audited as a change.
    posted = await ochami.post("/power-status", content=body({"xname": [NODE2, NODE], "powerStateFilter": "on",
                                                              "managementStateFilter": ""}))
    assert posted.status_code == 200, posted.text
    assert [s["xname"] for s in posted.json()["status"]] == [NODE]

    for params in ({"powerStateFilter": "smoking"}, {"managementStateFilter": "undefined"}, {"xname": "bad id!"},
                   {"colour": "red"}):
        problem_of(await ochami.get("/power-status", params=params), 400)
    problem_of(await ochami.post("/power-status", content=body({"xname": NODE})), 400)
    problem_of(await ochami.post("/power-status", content=b""), 400)


# -- who may ------------------------------------------------------------------------------------------------

async def test_a_viewer_reads_but_cannot_start_or_abort_and_no_token_is_401(ochami, api, admin_app, anonymous,
                                                                           dsn, conn):
    await inventory(api)
    transition_id = (await start(ochami, "on", NODE)).json()["transitionID"]
    async with await client(admin_app, await token_for(anonymous, dsn, "pcs-viewer", ["viewer"])) as viewer:
        assert (await viewer.get("/transitions")).status_code == 200
        assert (await viewer.get(f"/transitions/{transition_id}")).status_code == 200
        assert (await viewer.get("/power-status")).status_code == 200
        problem_of(await viewer.post("/transitions", content=body({"operation": "on", "location": [
            {"xname": NODE2}]})), 403)
        problem_of(await viewer.delete(f"/transitions/{transition_id}"), 403)
    async with await client(admin_app, None) as nobody:
        for method, path in (("GET", "/transitions"), ("GET", "/power-status"), ("POST", "/transitions"),
                             ("DELETE", f"/transitions/{transition_id}")):
            problem_of(await nobody.request(method, path), 401)
    assert await conn.fetchval("SELECT count(*) FROM power.transitions") == 1
    assert (await ochami.get(f"/transitions/{transition_id}")).json()["transitionStatus"] == "new"


# -- a transition the engine runs against a Redfish BMC -----------------------------------------------------

@pytest.fixture
def emulator():
    server = RedfishEmulator([SYSTEM]).start()
    yield server
    server.close()


async def test_power_on_runs_against_the_bmc_and_monitor_sees_it_completed(ochami, api, dsn, emulator):
    await inventory(api, emulator.url, [{"componentId": NODE, "path": f"/redfish/v1/Systems/{SYSTEM['uuid']}"}])
    async with running(engine(dsn)) as job:
        transition_id = (await start(ochami, "on", NODE)).json()["transitionID"]
        done = await monitor(ochami, transition_id)
        health = (await ochami.get("/health")).json()
    assert job.sent == 1
    assert health["TaskRunner"] == "connected, responsive, local mode"
    assert done["transitionStatus"] == "completed" and done["operation"] == "On"
    assert done["taskCounts"] == counts(total=1, succeeded=1)
    assert done["tasks"] == [{"xname": NODE, "taskStatus": "succeeded", "taskStatusDescription": "reached On"}]
    assert emulator.power_state(SYSTEM["uuid"]) == "On"
    status = (await ochami.get("/power-status", params={"xname": NODE})).json()["status"][0]
    assert (status["powerState"], status["managementState"], status["error"]) == ("on", "available", "")
