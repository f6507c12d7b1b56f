"""OpenTelemetry traces, exported by OTLP/HTTP when CHAMICORE_OTEL_ENDPOINT is set.

    configure(config, "admin")    # once, at a service's start; False (and nothing done) when unset
    with span("power task", attributes={...}):
        ...
    shutdown()                    # at the service's stop: exports what is buffered

Unset, nothing is installed or even imported: no tracer provider, no library
instrumentation, and every helper here returns at its first test, so a
service pays nothing for tracing it does not use.

A change is followed across processes by its W3C `traceparent`: pool
connections carry it in the `chamicore.traceparent` setting, which the
change-feed trigger copies into its NOTIFY payload (migration 0020) for the
boot path's feed; outbox rows carry it in a column, which the relay puts in
the NATS message headers.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg
    from opentelemetry.trace import Span, SpanKind

    from core.config import Config
    from core.traceexport import ServiceTracerProvider

TRACES_PATH = "/v1/traces"
SETTING = "chamicore.traceparent"  # read by the change-feed trigger (core/migrations/0020_trace_context.sql)

# The service a task's spans belong to, where one process runs several (the sync daemons, one per job).
SERVICE: ContextVar[str | None] = ContextVar("chamicore_trace_service", default=None)

# False while an operation only reads (an admin GET): its connections write nothing the change feed sees,
# so they skip the round trip that hands them the trace.
CARRY: ContextVar[bool] = ContextVar("chamicore_trace_carry", default=True)

_provider: ServiceTracerProvider | None = None  # tracing is on exactly when this is set


def enabled() -> bool:
    return _provider is not None


def configure(config: Config, service: str) -> bool:
    """Install the tracer provider and the asyncpg and aiohttp instrumentation when CHAMICORE_OTEL_ENDPOINT
    is set; `service` names the process's spans (`admin`: chamicore-admin).  Whether tracing is on."""
    global _provider
    if not config.otel_endpoint or _provider is not None:
        return _provider is not None
    from opentelemetry import trace
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    from core.traceexport import ServiceTracerProvider

    provider = ServiceTracerProvider(config.otel_endpoint + TRACES_PATH, service, SERVICE.get)
    trace.set_tracer_provider(provider)
    # Statements are recorded, their parameters never (they carry password hashes, tokens, keys).
    AsyncPGInstrumentor(capture_parameters=False).instrument(tracer_provider=provider)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    _provider = provider
    return True


def shutdown() -> None:
    """Export what is buffered and stop the exporters: the service is stopping."""
    if _provider is not None:
        _provider.shutdown()


def service_context(name: str) -> contextvars.Context:
    """A context for a task (`asyncio.create_task(..., context=)`) whose spans, and those of the tasks it
    creates, belong to `chamicore-<name>`."""
    context = contextvars.copy_context()
    context.run(SERVICE.set, name)
    return context


@contextlib.contextmanager
def span(name: str, *, kind: SpanKind | None = None, attributes: Mapping[str, Any] | None = None,
         parent: str | None = None, links: Sequence[str] = ()) -> Iterator[Span | None]:
    """A span for one operation of ours, current inside the block; None, and no work, when tracing is off.

    `parent` is a W3C traceparent from elsewhere (a NOTIFY payload, an outbox row), `links` more of them."""
    if _provider is None:
        yield None
        return
    from opentelemetry import trace

    context = _extract(parent) if parent else None
    linked = [trace.Link(c) for c in map(_span_context, links) if c is not None]
    tracer = trace.get_tracer("chamicore")
    with tracer.start_as_current_span(name, context=context, kind=kind or trace.SpanKind.INTERNAL,
                                      attributes=dict(attributes or {}), links=linked) as current:
        yield current


@contextlib.contextmanager
def publishing(subject: str, parent: str | None, headers: dict[str, str]) -> Iterator[None]:
    """A producer span for one message sent on `subject`, in the trace `parent` (the change it announces);
    its traceparent goes into `headers`.  Off, `parent` goes into them as it is: the trace still travels."""
    if _provider is None:
        if parent:
            headers["traceparent"] = parent
        yield
        return
    from opentelemetry.trace import SpanKind

    with span(f"publish {subject}", kind=SpanKind.PRODUCER, parent=parent,
              attributes={"messaging.system": "nats", "messaging.destination.name": subject}):
        _propagator().inject(headers)
        yield


@contextlib.asynccontextmanager
async def async_span(name: str, **options: Any) -> AsyncIterator[Span | None]:
    """span() for an `async with` line (beside a semaphore, say)."""
    with span(name, **options) as current:
        yield current


def traceparent() -> str | None:
    """The W3C traceparent of the current span; None when tracing is off or no span is current."""
    if _provider is None:
        return None
    carrier: dict[str, str] = {}
    _propagator().inject(carrier)
    return carrier.get("traceparent")


def ids() -> tuple[str, str] | None:
    """(trace id, span id), in hex, of the current span for a log line; None when there is none."""
    if _provider is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


async def carry_to_database(conn: asyncpg.Connection) -> None:
    """Pool `setup`: hand the current trace to the connection, for the change-feed trigger.

    Set for the session and undone by the reset asyncpg runs when the connection goes
    back to the pool (RESET ALL); nothing is sent when no span is current, or the operation only reads."""
    current = traceparent() if CARRY.get() else None
    if current is None:
        return
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():  # plumbing, not a query of the operation
        await conn.execute("SELECT set_config($1, $2, false)", SETTING, current)


def _propagator():
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def _extract(traceparent: str):
    return _propagator().extract({"traceparent": traceparent})


def _span_context(traceparent: str):
    from opentelemetry import trace

    context = trace.get_current_span(_extract(traceparent)).get_span_context()
    return context if context.is_valid else None
