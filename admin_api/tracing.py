"""A span per admin request, when tracing is on (core/tracing.py); the app leaves this layer out when it is off.

The span is named `METHOD /route/template` (the template, never the raw path:
ids are attributes of nothing here), and records the status and the name of
the principal the guard admitted, never its token.  A W3C `traceparent` from
the client makes the request part of the client's trace.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import tracing
from core.bounded import clip

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
READS = frozenset({"GET", "HEAD", "OPTIONS"})  # change nothing the boot path's feed sees
_PROPAGATOR = TraceContextTextMapPropagator()


class TracingLayer:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tracer = trace.get_tracer("chamicore.admin")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
                   if name == b"traceparent"}
        with self.tracer.start_as_current_span(method, context=_PROPAGATOR.extract(carrier), kind=SpanKind.SERVER,
                                               attributes={"http.request.method": method}) as span:
            status = 500  # nothing sent at all

            async def send_traced(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            carry = tracing.CARRY.set(method not in READS)
            try:
                await self.app(scope, receive, send_traced)
            finally:
                tracing.CARRY.reset(carry)
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                principal = (scope.get("state") or {}).get("principal")
                if principal and principal.get("sub"):
                    span.set_attribute("enduser.id", clip(str(principal["sub"])))
                if status >= 500:
                    span.set_status(StatusCode.ERROR)
