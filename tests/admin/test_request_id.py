"""X-Request-ID: on every admin response, kept from a trusted proxy only, the same id in the audit entries of
the request (and of the REST operations an MCP tool or a console page runs inside it)."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from admin_api.auth.guard import FACE_PRINCIPAL
from admin_api.inprocess import Caller, Native
from admin_api.requestid import trace_id
from core.config import load_config
from core.logs import REQUEST_ID
from tests.helpers.api import NODE, create
from tests.helpers.keys import SECRETS

GENERATED = re.compile(r"[0-9a-f]{32}")
BASE = "/hsm/v2/State/Components"


@pytest.fixture
async def behind_proxy(dsn):
    """The admin API with 127.0.0.1 (httpx's in-process client address) as a trusted proxy."""
    from admin_api.app import create_app

    app = create_app(load_config({"CHAMICORE_DATABASE_URL": dsn, **SECRETS,
                                  "CHAMICORE_TRUSTED_PROXIES": "127.0.0.1/32"}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as client:
            yield client


async def audit_entries(api, action: str) -> list[dict]:
    return (await api.get("/auth/v1/audit", params={"action": action})).json()


async def test_every_response_has_one(api, anonymous):
    answers = [
        await api.get("/health"),
        await anonymous.get(BASE),  # 401
        await api.get(f"{BASE}/no-such-node"),  # 404
        await api.get("/no/such/route"),  # 404 from the router
        await api.post(BASE, json={"spec": {"type": "Bad"}}),  # 422
        await anonymous.get("/ui/login"),  # a console page
        await anonymous.post("/mcp", json={}),  # the MCP endpoint, refused
    ]
    assert [a.status_code for a in answers][:5] == [200, 401, 404, 404, 422]
    assert answers[5].status_code == 200 and "<form" in answers[5].text
    ids = [a.headers.get("x-request-id") for a in answers]
    assert all(i is not None and GENERATED.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)  # one each


async def test_a_500_has_one(admin_app, api):
    async def crash(request):
        raise RuntimeError("boom")

    from starlette.routing import Route

    admin_app.router.routes.append(Route("/test/crash", crash))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=admin_app, raise_app_exceptions=False),
                                 base_url="http://admin") as client:
        response = await client.get("/test/crash")
    assert response.status_code == 500
    assert GENERATED.fullmatch(response.headers["x-request-id"])


async def test_a_given_id_is_ignored_from_an_untrusted_peer(anonymous):
    response = await anonymous.get("/health", headers={"X-Request-ID": "from-the-client"})
    assert response.headers["x-request-id"] != "from-the-client"
    assert GENERATED.fullmatch(response.headers["x-request-id"])


async def test_a_given_id_is_kept_from_a_trusted_proxy(behind_proxy):
    response = await behind_proxy.get("/health", headers={"X-Request-ID": "edge.proxy-42_A"})
    assert response.headers["x-request-id"] == "edge.proxy-42_A"
    refused = await behind_proxy.get(BASE, headers={"X-Request-ID": "edge-401"})  # errors too
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "edge-401"


@pytest.mark.parametrize("value", ["x" * 129, "a b", "a\tb", "id;drop", "é", ""])
async def test_an_insane_id_is_replaced_even_from_a_trusted_proxy(behind_proxy, value):
    response = await behind_proxy.get("/health", headers={"X-Request-ID": value.encode()})
    assert GENERATED.fullmatch(response.headers["x-request-id"]), response.headers["x-request-id"]


async def test_an_id_with_a_line_break_is_replaced(behind_proxy):
    # httpx refuses CR/LF in a header value; the raw ASGI scope does not.
    app = behind_proxy._transport.app  # type: ignore[attr-defined]
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
               "path": "/health", "raw_path": b"/health", "root_path": "", "query_string": b"",
               "headers": [(b"host", b"admin"), (b"x-request-id", b"abc\r\nSet-Cookie: x=1")],
               "client": ("127.0.0.1", 5000), "server": ("admin", 80)}, receive, send)
    headers = dict(sent[0]["headers"])
    assert GENERATED.fullmatch(headers[b"x-request-id"].decode())


def test_trace_ids_come_from_a_well_formed_traceparent_only():
    assert trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == "4bf92f3577b34da6a3ce929d0e0e4736"
    for bad in (None, "", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n", "00-4bf92f-00f067aa0ba902b7-01"):
        assert trace_id(bad) is None, bad


async def test_the_audit_entry_of_a_patch_has_the_responses_id(api):
    await create(api, BASE, NODE)
    response = await api.patch(f"{BASE}/node-1", json={"spec": {"role": None}},
                               headers={"Content-Type": "application/merge-patch+json"})
    assert response.status_code == 200, response.text
    entries = await audit_entries(api, "PATCH /hsm/v2/State/Components/{id}")
    assert [e["requestId"] for e in entries] == [response.headers["x-request-id"]]
    created = await audit_entries(api, "POST /hsm/v2/State/Components")
    assert created[0]["requestId"] != response.headers["x-request-id"]
    # The audit of one request, by its id.
    found = (await api.get("/auth/v1/audit", params={"requestId": response.headers["x-request-id"]})).json()
    assert [e["action"] for e in found] == ["PATCH /hsm/v2/State/Components/{id}"]


async def test_the_audit_of_a_refused_console_login_has_the_responses_id(anonymous, api):
    response = await anonymous.post("/ui/login", data={"username": "nobody", "password": "wrong"})
    assert response.status_code == 401
    entries = await audit_entries(api, "console.login-refused")
    assert [e["requestId"] for e in entries] == [response.headers["x-request-id"]]


async def test_an_mcp_calls_audit_entry_has_the_outer_requests_id(api):
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "smd.components.list", "arguments": {}}}
    response = await api.post("/mcp", json=call, headers={"Accept": "application/json, text/event-stream"})
    assert response.status_code == 200, response.text
    events = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
    assert events and events[-1]["result"]["isError"] is False, events
    entries = await audit_entries(api, "MCP smd.components.list")
    assert [e["requestId"] for e in entries] == [response.headers["x-request-id"]]
    assert entries[0]["detail"]["operations"] == ["GET /hsm/v2/State/Components"]


async def test_an_in_process_operation_carries_its_parents_id(admin_app, api):
    """A face's REST operation (as a console page runs one) is audited under the id of the request that ran it."""
    await create(api, BASE, NODE)
    principal = {"sub": "alice", "scope": "write:smd read:smd"}
    native = Native(admin_app, Caller(authorization=None, claims=principal, client=("127.0.0.1", 1), transport="console",
                                      scope_keys={FACE_PRINCIPAL: principal}))
    token = REQUEST_ID.set("parent-request-7")
    try:
        answer = await native.request("PATCH", f"{BASE}/node-1", body={"spec": {"role": None}},
                                      content_type="application/merge-patch+json")
    finally:
        REQUEST_ID.reset(token)
    assert answer.status == 200
    assert answer.headers["x-request-id"] == "parent-request-7"
    entries = await audit_entries(api, "PATCH /hsm/v2/State/Components/{id}")
    assert [(e["actor"], e["requestId"]) for e in entries] == [("alice", "parent-request-7")]
