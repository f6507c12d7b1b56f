"""Service endpoints: health, readiness, version, metrics, the OpenAPI document and its docs page."""

from __future__ import annotations

import bisect
import importlib.metadata
import logging
import time

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


def version() -> str:
    try:
        return importlib.metadata.version("chamicore")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class Metrics:
    """Requests by route template, method and status, and a latency histogram."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.total_seconds = 0.0
        self.count = 0

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total_seconds += seconds
        self.count += 1

    def render(self) -> bytes:
        lines = ["# TYPE chamicore_admin_requests_total counter"]
        for (route, method, status), count in sorted(self.requests.items()):
            lines.append(f'chamicore_admin_requests_total{{route="{route}",method="{method}",status="{status}"}} '
                         f"{count}")
        lines.append("# TYPE chamicore_admin_request_seconds histogram")
        cumulative = 0
        for bound, count in zip(BUCKETS, self.buckets, strict=False):
            cumulative += count
            lines.append(f'chamicore_admin_request_seconds_bucket{{le="{bound}"}} {cumulative}')
        lines.append(f'chamicore_admin_request_seconds_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"chamicore_admin_request_seconds_sum {self.total_seconds:.6f}")
        lines.append(f"chamicore_admin_request_seconds_count {self.count}")
        return ("\n".join(lines) + "\n").encode()


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
    """Requests counted in this process, then the state read from the database now (statemetrics);
    `chamicore_admin_database_up` says whether that read worked."""
    try:
        async with request.app.state.pool.acquire(timeout=2) as conn:
            lines, up = await statemetrics.render(conn), 1
    except Exception:  # noqa: BLE001 - the request counts are still worth serving
        log.warning("metrics: could not read the database", exc_info=True)
        lines, up = [], 0
    lines += ["# HELP chamicore_admin_database_up Whether this scrape could read the database.",
              "# TYPE chamicore_admin_database_up gauge", f"chamicore_admin_database_up {up}"]
    return Response(request.app.state.metrics.render() + ("\n".join(lines) + "\n").encode(),
                    media_type="text/plain; version=0.0.4")


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
