"""What core.tracing installs when tracing is on: an SDK tracer provider per service, exporting by OTLP/HTTP.

Imported only then: the OpenTelemetry SDK costs a process about 0.15 s to load.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.environment_variables import OTEL_TRACES_SAMPLER
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.util._decorator import _agnosticcontextmanager

SERVICE_PREFIX = "chamicore-"


class NoOrphanClientSpans(Sampler):
    """Root spans are kept, except a client call (a query, an HTTP request) started outside any operation
    of ours: a relay's poll or a listener's query every few seconds is noise, not a trace."""

    def should_sample(self, parent_context, trace_id: int, name: str, kind: trace.SpanKind | None = None,
                      attributes: Mapping[str, Any] | None = None, links: Sequence[trace.Link] | None = None,
                      trace_state: trace.TraceState | None = None) -> SamplingResult:
        if kind is trace.SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "NoOrphanClientSpans"


def sdk_provider(service: str, endpoint: str) -> TracerProvider:
    # An operator's OTEL_TRACES_SAMPLER (and OTEL_TRACES_SAMPLER_ARG), say `parentbased_traceidratio` for a
    # busy site, replaces ours: the SDK reads them itself when given no sampler.
    sampler = None if os.environ.get(OTEL_TRACES_SAMPLER) else ParentBased(root=NoOrphanClientSpans())
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: SERVICE_PREFIX + service}), sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


class ServiceTracerProvider(trace.TracerProvider):
    """The process's tracer provider: one SDK provider per service name, chosen when a span starts by
    `service()` (a context variable that tasks inherit), else `default`.

    A sync process runs several jobs and each reports as its own service (chamicore-sync-power, ...);
    the libraries' instrumentation holds one tracer, and its spans land in the job they run for."""

    def __init__(self, endpoint: str, default: str, service: Any) -> None:
        self.endpoint = endpoint
        self.default = default
        self._service = service  # a callable answering the current service name, or None
        self._providers: dict[str, TracerProvider] = {}
        self._lock = threading.Lock()

    def provider(self) -> TracerProvider:
        name = self._service() or self.default
        provider = self._providers.get(name)
        if provider is None:
            with self._lock:
                provider = self._providers.get(name) or self._providers.setdefault(
                    name, sdk_provider(name, self.endpoint))
        return provider

    def get_tracer(self, instrumenting_module_name: str, instrumenting_library_version: str | None = None,
                   schema_url: str | None = None, attributes: Any = None) -> trace.Tracer:
        return ServiceTracer(self, (instrumenting_module_name, instrumenting_library_version, schema_url,
                                    attributes))

    def shutdown(self) -> None:
        """Flush and stop every exporter; each waits for its last batch (bounded by the SDK's export timeout)."""
        with self._lock:
            providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            provider.shutdown()


class ServiceTracer(trace.Tracer):
    def __init__(self, services: ServiceTracerProvider, args: tuple) -> None:
        self._services = services
        self._args = args
        self._tracers: dict[int, trace.Tracer] = {}

    def _tracer(self) -> trace.Tracer:
        provider = self._services.provider()
        tracer = self._tracers.get(id(provider))
        if tracer is None:
            tracer = self._tracers[id(provider)] = provider.get_tracer(*self._args)
        return tracer

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._tracer().start_span(*args, **kwargs)

    @_agnosticcontextmanager
    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Iterator[trace.Span]:
        with self._tracer().start_as_current_span(*args, **kwargs) as span:
            yield span
