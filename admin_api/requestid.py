"""X-Request-ID: one id per admin request, in its log lines, its audit entries and its response.

The id comes from the request only when the peer is a trusted proxy
(CHAMICORE_TRUSTED_PROXIES) and the value is a plain token; otherwise the
admin API makes one.  A request a face makes in-process into the app (an MCP
tool, a console page) carries its parent's id in the ASGI scope, which no
network client can set: the whole call is one id.

A W3C `traceparent` header, well formed, gives the trace id of the log lines.
"""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.config import in_networks
from core.logs import REQUEST_ID, TRACE_ID

REQUEST_ID_SCOPE = "chamicore.request_id"  # the request's id, in its ASGI scope (and a sub-request's)
HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_NO_TRACE = "0" * 32  # the spec's invalid trace id


def new_request_id() -> str:
    return uuid.uuid4().hex


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a well-formed version-00 traceparent; None for anything else."""
    match = _TRACEPARENT.fullmatch(traceparent or "")
    if match is None or match[1] == _NO_TRACE or match[2] == "0" * 16:
        return None
    return match[1]


class RequestIdLayer:
    """ASGI middleware outside everything else (even Starlette's last-resort 500 handler), so that every
    response carries the id and every log line of the request reads it from core.logs.REQUEST_ID."""

    def __init__(self, app: ASGIApp, trusted_proxies: tuple) -> None:
        self.app = app
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, str] = {}
        for name, value in scope["headers"]:
            if name in (b"x-request-id", b"traceparent"):
                headers.setdefault(name, value.decode("latin-1"))
        request_id = scope.get(REQUEST_ID_SCOPE) or self.given(scope, headers.get(b"x-request-id")) \
            or new_request_id()
        scope[REQUEST_ID_SCOPE] = request_id
        tokens = REQUEST_ID.set(request_id), TRACE_ID.set(trace_id(headers.get(b"traceparent")) or TRACE_ID.get())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(tokens[0])
            TRACE_ID.reset(tokens[1])

    def given(self, scope: Scope, value: str | None) -> str | None:
        """The client's id, when a trusted proxy sent it and it is a plain token (it goes into logs and headers)."""
        if value is None or not self.trusted_proxies or not _SANE.fullmatch(value):
            return None
        client = scope.get("client")
        return value if client and in_networks(client[0], self.trusted_proxies) else None
