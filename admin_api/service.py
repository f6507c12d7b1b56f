"""Service endpoints: health, readiness, version, metrics, the OpenAPI document and its docs page."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import time
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from admin_api import statemetrics
from admin_api.http import json_response
from admin_api.routing import Router
from core import migrate

router = Router("service")
log = logging.getLogger("chamicore.admin.metrics")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Methods counted under their own name; any other (a client may send any token, 8 KB long) is OTHER, so
# the label set stays bounded.
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
# The reasons a token request is refused (the OAuth error codes it answers), so the label set stays bounded.
REFUSALS = frozenset(("invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                      "unsupported_grant_type", "invalid_scope", "invalid_target", "throttled"))
# A `_created` series per label set would double the exposition for a timestamp no rule or dashboard reads.
disable_created_metrics()


def version() -> str:
    try:
        return importlib.metadata.version("chamicore")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class Metrics:
    """Requests by route template, method and status, their latency, and refused token requests
    (prometheus_client).

    With several workers, `chamicore serve admin` sets PROMETHEUS_MULTIPROC_DIR before they start:
    prometheus_client then keeps each worker's values in files there, and a scrape of any worker reads all
    of them (its multiprocess mode).  The counts a worker kept stay after it exits; the admin API has no
    gauge of its own that a dead worker would leave behind (the state series are read at scrape time).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("chamicore_admin_requests", "Admin API requests by route template, method and "
                                "status.", ("route", "method", "status"), registry=self.registry)
        self.latency = Histogram("chamicore_admin_request_seconds", "Time to answer one admin API request.",
                                 ("route", "method"), buckets=BUCKETS, registry=self.registry)
        self.token_refusals = Counter("chamicore_auth_token_refusals", "Token requests refused, by reason.",
                                      ("reason",), registry=self.registry)
        self.directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def refused_token(self, reason: str) -> None:
        self.token_refusals.labels(reason if reason in REFUSALS else "other").inc()

    def source(self) -> Collector:
        """This process's metrics, or every worker's."""
        if self.directory is None:
            return self.registry
        workers = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(workers, self.directory)
        return workers


class Scrape(Collector):
    """What one /metrics answer shows: the request metrics, then the families read from the database."""

    def __init__(self, source: Collector, families: list[Metric]) -> None:
        self.source = source
        self.families = families

    def collect(self) -> Iterable[Metric]:
        yield from self.source.collect()
        yield from self.families


class MetricsMiddleware:
    """Counts every request under its route template, not its raw path, and a known method or OTHER
    (bounded label set)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            self.metrics.observe(template, method, status[0], time.perf_counter() - started)


@router.get("/health", scope=None, summary="Liveness")
async def health(request: Request) -> Response:
    body = {"status": "ok", "service": "admin"}
    if request.app.state.auth.dev_mode:
        body["warning"] = "CHAMICORE_DEV_MODE is on: authentication is OFF; never run like this in production"
    return json_response(body)


@router.get("/readiness", scope=None, summary="Ready when the database answers and the schema is current")
async def readiness(request: Request) -> Response:
    try:
        async with request.app.state.pool.acquire(timeout=2) as conn:
            states = await migrate.status(conn)
    except Exception as exc:  # any failure means "not ready", with the reason
        return json_response({"status": "unavailable", "detail": f"{type(exc).__name__}: {exc}"}, 503)
    pending = [s.migration.filename for s in states if not s.applied]
    if pending:
        return json_response({"status": "unavailable", "detail": f"migrations pending: {', '.join(pending)}",
                              "hint": "run `chamicore db migrate`"}, 503)
    return json_response({"status": "ready", "schemaVersion": states[-1].migration.version if states else 0})


@router.get("/version", scope=None, summary="Version of Chamicore and of its schema")
async def version_info(request: Request) -> Response:
    bundled = migrate.bundled_migrations()
    return json_response({"version": version(), "schemaVersion": bundled[-1].version if bundled else 0})


@router.get("/metrics", scope=None, summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    """Requests counted by this service's workers, then the state read from the database now (statemetrics);
    `chamicore_admin_database_up` says whether that read worked."""
    try:
        async with request.app.state.pool.acquire(timeout=2) as conn:
            families, up = await statemetrics.read(conn), 1
    except Exception:  # noqa: BLE001 - the request counts are still worth serving
        log.warning("metrics: could not read the database", exc_info=True)
        families, up = [], 0
    families.append(GaugeMetricFamily("chamicore_admin_database_up", "Whether this scrape could read the database.",
                                      value=up))
    scrape = Scrape(request.app.state.metrics.source(), families)
    return Response(generate_latest(scrape), media_type=CONTENT_TYPE_PLAIN_0_0_4)


@router.get("/api/openapi.json", scope=None, summary="This API, as OpenAPI 3.1")
async def openapi(request: Request) -> Response:
    return Response(request.app.state.openapi, media_type="application/json")


DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Chamicore admin API</title>
<link rel="stylesheet" href="/api/docs/assets/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/api/docs/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#ui"});</script>
</body></html>"""


@router.get("/api/docs", scope=None, summary="Interactive API documentation (served locally, no CDN)")
async def docs(request: Request) -> Response:
    return HTMLResponse(DOCS_PAGE)
