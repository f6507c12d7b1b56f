"""Traces: one admin PATCH followed from the request through its SQL and outbox row to the boot path's feed
and the NATS message, and a power transition's request to its tasks in the sync daemon (real servers, a real
NATS, OpenIPMI's ipmi_sim, an OTLP/HTTP receiver in the test); an operator's OTEL_TRACES_SAMPLER honoured;
and nothing at all when CHAMICORE_OTEL_ENDPOINT is unset."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import httpx
import nats
import nats.js.errors
import pytest
from opentelemetry.trace import SpanKind

from core import db
from core.traceexport import sdk_provider
from sync.outbox import STREAM
from tests.helpers.api import create, credential, wait_transition
from tests.helpers.ipmisim import PASSWORD, IpmiSim
from tests.helpers.keys import CREDENTIALS_KEY
from tests.helpers.otlp import OtlpReceiver
from tests.helpers.paths import ROOT
from tests.helpers.polling import wait_until
from tests.helpers.seed import add_node
from tests.helpers.tokens import token_for
from tests.reliability.test_outbox_faults import nats_server, stream_messages  # noqa: F401 - a fixture

# Batches leave a traced process within 50 ms instead of the SDK's 5 s (the SDK's own variable).
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "50"}
PARAMS = {"metadata": {"id": "bp-node-1"},
          "spec": {"componentId": "node-1", "kernel": "http://images.example/vmlinuz", "cmdline": "console=ttyS0"}}


@pytest.fixture
def receiver():
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


def sync_daemons(dsn: str, **env: str) -> subprocess.Popen:
    env = dict(os.environ, CHAMICORE_DATABASE_URL=dsn, CHAMICORE_CREDENTIALS_KEY=CREDENTIALS_KEY,
               CHAMICORE_POWER_POLL_S="3600", CHAMICORE_LOG_LEVEL="warning", **env)
    return subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "sync"], cwd=ROOT, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def descendants(spans, root) -> list:
    """Every span under `root` in its trace, however deep."""
    found, frontier = [], {root.span_id}
    while frontier:
        children = [s for s in spans if s.parent_id in frontier]
        found += children
        frontier = {s.span_id for s in children}
    return found


async def patch_boot_params(url: str, token: str) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as api:
        created = await api.post("/boot/v1/bootparams", json=PARAMS)
        assert created.status_code == 201, created.text
        patched = await api.patch("/boot/v1/bootparams/bp-node-1", json={"spec": {"cmdline": "console=ttyS1"}})
        assert patched.status_code == 200, patched.text


def seed_node(dsn: str) -> None:
    async def seed() -> None:
        conn = await db.connect(dsn)
        try:
            await add_node(conn, "node-1", ["52:54:00:00:00:01"], nid=1)
        finally:
            await conn.close()

    asyncio.run(seed())


def relayed(url: str, count: int) -> list | None:
    """The stream's messages once it holds `count` of them, else None."""
    async def held() -> int:
        nc = await nats.connect(url)
        try:
            return (await nc.jetstream().stream_info(STREAM)).state.messages
        except nats.js.errors.NotFoundError:
            return 0  # the relay has not made its stream yet
        finally:
            await nc.close()

    return asyncio.run(stream_messages(url)) if asyncio.run(held()) >= count else None


def test_one_patch_is_one_trace_from_the_request_to_the_feed_and_the_nats_message(
        dsn, receiver, boot_server, admin_server, nats_server):  # noqa: F811 - the imported fixture
    seed_node(dsn)
    traced = {"CHAMICORE_OTEL_ENDPOINT": receiver.url, **FAST_EXPORT}
    boot = boot_server(**traced)
    admin = admin_server(**traced)
    relay = sync_daemons(dsn, CHAMICORE_NATS_URL=nats_server.url, **traced)
    try:
        token = asyncio.run(token_for(admin.url, dsn, "trace-admin", ["admin"]))
        asyncio.run(patch_boot_params(admin.url, token))
        assert boot.get("/boot/v1/bootscript?mac=52:54:00:00:00:01")[0] == 200  # a boot request, not traced

        request = wait_until(lambda: receiver.named("PATCH /boot/v1/bootparams/{id}", "chamicore-admin"), 10)[0]
        feed = wait_until(lambda: [s for s in receiver.trace(request.trace_id) if s.name == "feed apply"], 10)[0]
        publish = wait_until(lambda: [s for s in receiver.trace(request.trace_id)
                                      if s.name == "publish chamicore.bss.bootparams.updated"], 20)[0]
        messages = wait_until(lambda: relayed(nats_server.url, 2), 20)
    finally:
        stop(relay)
    boot.stop()  # flushes whatever the boot path still held

    # The request span: route template, status, the principal's name.
    assert request.kind == "server" and request.parent_id == ""
    assert request.attributes["http.route"] == "/boot/v1/bootparams/{id}"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["enduser.id"] == "trace-admin"
    # Its SQL, as descendants: the statements, never their parameters; the outbox insert among them.
    trace = receiver.trace(request.trace_id)
    sql = [s for s in descendants(trace, request) if s.service == "chamicore-admin"]
    statements = [s.attributes.get("db.statement") or s.attributes.get("db.query.text") or "" for s in sql]
    assert sql and all(s.kind == "client" for s in sql)
    assert any(text.startswith("UPDATE bss.boot_params") for text in statements), statements
    assert any(text.startswith("INSERT INTO events.outbox") for text in statements), statements
    assert not any(key.startswith("db.statement.parameters") for s in sql for key in s.attributes)
    everything = json.dumps([s.attributes for s in receiver.spans])
    assert token not in everything and "Bearer" not in everything and "console=ttyS1" not in everything
    # The boot path applied the change in a span of the same trace, a child of the request that made it,
    # with its re-read of the touched node under it.
    assert feed.service == "chamicore-boot" and feed.parent_id == request.span_id
    assert any(s.kind == "client" for s in descendants(trace, feed))
    # The relay published the event in the same trace, and the message names it in its headers.
    assert publish.service == "chamicore-sync-outbox" and publish.kind == "producer"
    updated = [m for m in messages if m.subject == "chamicore.bss.bootparams.updated"][0]
    version, trace_id, parent_id, flags = updated.headers["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", request.trace_id, publish.span_id) and int(flags, 16) & 1
    # The boot path's spans are its feed's batches and their queries: never a boot request.
    boot_spans = [s for s in receiver.spans if s.service == "chamicore-boot"]
    assert boot_spans and all(s.name == "feed apply" or s.kind == "client" for s in boot_spans), boot_spans


async def power_on(url: str, dsn: str, bmc: IpmiSim) -> str:
    """A node behind an IPMI BMC, switched on; the transition's id."""
    token = await token_for(url, dsn, "trace-admin", ["admin"])
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as api:
        await credential(api, secret=PASSWORD, credential_id="ipmi-cred")
        await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "bmc-t"}, "spec": {"type": "BMC"}})
        await create(api, "/hsm/v2/State/Components", {"metadata": {"id": "node-t"}, "spec": {
            "type": "Node", "parentId": "bmc-t"}})
        conn = await db.connect(dsn)
        try:
            await conn.execute("INSERT INTO smd.redfish_endpoints (id, address, credential_id) VALUES "
                               "('bmc-t', $1, 'ipmi-cred')", f"ipmi://{bmc.address}")
        finally:
            await conn.close()
        started = await create(api, "/power/v1/transitions", {"operation": "On", "nodes": ["node-t"]})
        done = await wait_transition(api, started["id"])
        assert done["counts"] == {"total": 1, "succeeded": 1}, done
        return started["id"]


def test_a_transitions_tasks_join_the_trace_of_the_request_that_asked_for_it(dsn, receiver, admin_server):
    """The power engine drives a task later, in the sync daemon; its span is still under the POST's."""
    traced = {"CHAMICORE_OTEL_ENDPOINT": receiver.url, **FAST_EXPORT}
    bmc = IpmiSim(guid="5eed0000000000000000000000000001", mac="02:00:00:00:20:01", power=0, name="traced").start()
    admin = admin_server(**traced)
    daemons = sync_daemons(dsn, **traced)
    try:
        transition_id = asyncio.run(power_on(admin.url, dsn, bmc))
        request = wait_until(lambda: receiver.named("POST /power/v1/transitions", "chamicore-admin"), 10)[0]
        task = wait_until(lambda: [s for s in receiver.trace(request.trace_id) if s.name == "power task"], 20)[0]
        assert bmc.power_state() == "on"
    finally:
        stop(daemons)
        bmc.close()
    assert task.service == "chamicore-sync-power"
    assert task in descendants(receiver.trace(request.trace_id), request)
    assert task.attributes["chamicore.transition.id"] == transition_id
    assert task.attributes["chamicore.node.id"] == "node-t"
    assert PASSWORD not in json.dumps([s.attributes for s in receiver.spans])


def test_an_operators_sampler_replaces_ours(monkeypatch):
    """Ours keeps every operation and drops orphan client calls (a poll's query); OTEL_TRACES_SAMPLER, with its
    argument, replaces it (here: sample nothing)."""
    ours = sdk_provider("sampled", "http://127.0.0.1:9/v1/traces").get_tracer("test")
    assert ours.start_span("operation").is_recording()
    assert not ours.start_span("poll query", kind=SpanKind.CLIENT).is_recording()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    theirs = sdk_provider("sampled", "http://127.0.0.1:9/v1/traces").get_tracer("test")
    assert not theirs.start_span("operation").is_recording()


def test_unset_nothing_is_sent(dsn, receiver, boot_server, admin_server, nats_server):  # noqa: F811
    """Without CHAMICORE_OTEL_ENDPOINT no process sends a span, even with OpenTelemetry's own variable set;
    the change still reaches the boot path and NATS, and the NATS message has no traceparent."""
    seed_node(dsn)
    untraced = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, **FAST_EXPORT}
    boot = boot_server(**untraced)
    admin = admin_server(**untraced)
    relay = sync_daemons(dsn, CHAMICORE_NATS_URL=nats_server.url, **untraced)
    try:
        token = asyncio.run(token_for(admin.url, dsn, "trace-admin", ["admin"]))
        asyncio.run(patch_boot_params(admin.url, token))
        # The patched answer is served (the feed may apply both edits in one batch: counting batches would race).
        wait_until(lambda: b"console=ttyS1" in boot.get("/boot/v1/bootscript?mac=52:54:00:00:00:01")[2], 10)
        messages = wait_until(lambda: relayed(nats_server.url, 2), 20)
    finally:
        stop(relay)
    admin.stop()
    boot.stop()  # a stopping service flushes what it buffered: had it traced, it would have sent by now
    assert receiver.exports == 0 and receiver.spans == []
    assert all("traceparent" not in (m.headers or {}) for m in messages)


def test_off_the_admin_request_path_does_no_span_work(dsn):
    """Unset, the admin app has no tracing layer, no tracer provider is installed, no library is instrumented,
    no span is started while it serves (not even a no-op one), and writes leave no trace context behind."""
    script = f"""
import asyncio, sys
import asyncpg, httpx
from opentelemetry import trace  # the MCP SDK imports the API anyway; its tracers are counted here too
from admin_api.app import create_app
from core import tracing
from core.config import load_config
from tests.helpers.keys import SECRETS
from tests.helpers.tokens import token_for

started = []
for kind in (trace.ProxyTracer, trace.NoOpTracer):
    for method in ("start_span", "start_as_current_span"):
        def counted(self, *args, _original=getattr(kind, method), **kwargs):
            started.append(args[0] if args else kwargs.get("name"))
            return _original(self, *args, **kwargs)
        setattr(kind, method, counted)

async def main():
    app = create_app(load_config({{"CHAMICORE_DATABASE_URL": {dsn!r}, **SECRETS}}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as anonymous:
            token = await token_for(anonymous, {dsn!r}, "off-admin")
        async with httpx.AsyncClient(transport=transport, base_url="http://admin",
                                     headers={{"Authorization": "Bearer " + token}}) as api:
            assert (await api.post("/boot/v1/bootparams", json={PARAMS!r})).status_code == 201
            assert (await api.get("/boot/v1/bootparams/bp-node-1")).status_code == 200
        stack, layers = app.middleware_stack, []
        while stack is not None:
            layers.append(type(stack).__name__)
            stack = getattr(stack, "app", None)
    assert not tracing.enabled() and trace._TRACER_PROVIDER is None
    assert "TracingLayer" not in layers and "RequestIdLayer" in layers, layers
    assert not [m for m in sys.modules if m.startswith("opentelemetry.instrumentation")]
    assert not hasattr(asyncpg.Connection.execute, "__wrapped__")
    assert started == [], started

asyncio.run(main())
"""
    seed_node(dsn)
    env = {k: v for k, v in os.environ.items() if k != "CHAMICORE_OTEL_ENDPOINT"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]

    async def outbox_traces() -> list:
        conn = await db.connect(dsn)
        try:
            return await conn.fetch("SELECT traceparent FROM events.outbox")
        finally:
            await conn.close()

    rows = asyncio.run(outbox_traces())
    assert rows and all(row["traceparent"] is None for row in rows)
