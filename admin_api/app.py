"""The admin API application: routes, error handling, metrics, lifecycle.

    granian --interface asgi --factory admin_api.app:create_app
    chamicore serve admin
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from admin_api import agents, console, openapi, serialconsole, service, syncstatus
from admin_api.auth import accounts, audit, credentials, tokens, users
from admin_api.auth.guard import Authenticator
from admin_api.auth.throttle import TokenThrottle
from admin_api.bss import bootparams, profiles, stages, telemetry
from admin_api.bss import effective as boot_effective
from admin_api.cloudinit import effective as cloud_init_effective
from admin_api.cloudinit import payloads, seeds
from admin_api.discovery import hosts, scans, targets
from admin_api.http import problem_response
from admin_api.nodes import bulk, provision
from admin_api.openchami import ROUTERS as OPENCHAMI_ROUTERS
from admin_api.power import tasks, transitions
from admin_api.requestid import RequestIdLayer
from admin_api.routing import Router, starlette_routes
from admin_api.smd import components, groups, hardware, interfaces, redfish, summary
from core import db, sdnotify, tracing
from core.bounded import bound_log_records, clip
from core.config import Config, load_config
from core.crypto import device_credentials_box
from core.logs import configure as configure_logs
from core.problems import Problem, ProblemError, title_for

log = logging.getLogger("chamicore.admin")
E = TypeVar("E", bound=Exception)

ROUTERS: list[Router] = [
    service.router,
    components.router,
    summary.router,
    interfaces.router,
    groups.groups_router,
    groups.partitions_router,
    bootparams.router,
    payloads.router,
    seeds.router,
    bulk.router,
    provision.router,
    telemetry.router,
    stages.router,
    boot_effective.router,
    profiles.router,
    cloud_init_effective.router,
    tokens.router,
    accounts.router,
    users.router,
    credentials.router,
    audit.router,
    syncstatus.router,
    redfish.router,
    hardware.router,
    targets.router,
    scans.router,
    hosts.router,
    transitions.router,
    tasks.router,
    *OPENCHAMI_ROUTERS,
]


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return problem_response(Problem(title=title_for(status), status=status, detail=detail), headers)


def handler_for(kind: type[E], handle: Callable[[Request, E], Awaitable[Response]],
                ) -> Callable[[Request, Exception], Awaitable[Response]]:
    """`handle` as Starlette types exception handlers (taking any Exception); it is registered for `kind` only."""
    async def handler(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, kind):
            raise TypeError(f"{handle.__name__} handles {kind.__name__}, not {type(exc).__name__}") from exc
        return await handle(request, exc)

    return handler


async def on_problem(request: Request, exc: ProblemError) -> Response:
    return problem_response(exc.problem, exc.headers or None)


async def on_http_error(request: Request, exc: HTTPException) -> Response:
    detail = exc.detail if exc.status_code != 404 else f"no such resource: {request.url.path[:200]}"
    return _problem(exc.status_code, detail, dict(exc.headers or {}))


async def on_database_error(request: Request, exc: asyncpg.PostgresError) -> Response:
    # Routes check what they can and answer precisely; this is the safety net
    # for races (two writers at once) and anything they did not foresee.
    detail = getattr(exc, "detail", None) or str(exc)
    if isinstance(exc, asyncpg.UniqueViolationError):
        return _problem(409, f"conflicts with an existing entry: {detail}")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return _problem(409, f"conflicts with related data: {detail}")
    if isinstance(exc, asyncpg.CheckViolationError | asyncpg.DataError):
        return _problem(422, f"the database refused a value: {exc}")
    if isinstance(exc, asyncpg.SerializationError | asyncpg.DeadlockDetectedError):
        return _problem(503, "a concurrent change got in the way; retry", {"Retry-After": "1"})
    if isinstance(exc, asyncpg.TooManyConnectionsError | asyncpg.CannotConnectNowError):
        return _problem(503, "the database is busy or starting; retry", {"Retry-After": "2"})
    # The server went away under the query (a crash, a failover): a connection cut, an admin or crash shutdown,
    # or a write that reached a server that is now a read-only standby.
    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.AdminShutdownError | asyncpg.CrashShutdownError
                  | asyncpg.ReadOnlySQLTransactionError):
        return _problem(503, f"the database is unreachable or failing over ({type(exc).__name__}); retry",
                        {"Retry-After": "2"})
    log.exception("database error on %s %s", clip(request.method), clip(request.url.path))
    return _problem(500, "the database failed unexpectedly; see the admin API log")


async def on_unavailable(request: Request, exc: Exception) -> Response:
    return _problem(503, f"the database is unreachable ({type(exc).__name__}); retry", {"Retry-After": "2"})


async def on_crash(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", clip(request.method), clip(request.url.path))
    return _problem(500, "an unexpected error; it is logged on the admin API")


class AdminApp(Starlette):
    """Starlette with the request id outside even its last-resort error handler: a 500 carries X-Request-ID too."""

    def __init__(self, *, trusted_proxies: tuple, **options) -> None:
        super().__init__(**options)
        self.trusted_proxies = trusted_proxies

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        if tracing.enabled():  # a span per request; off, the stack has no tracing layer (nor OpenTelemetry) at all
            from admin_api.tracing import TracingLayer

            app = TracingLayer(app)
        return RequestIdLayer(app, self.trusted_proxies)


def create_app(config: Config | None = None) -> Starlette:
    """Factory for granian (`--factory`) and tests: reads CHAMICORE_* settings unless given a Config.

    Only the server's factory call (no Config) sets up the process's logging; a test keeps its own."""
    if config is None:
        config = load_config()
        configure_logs(config, "admin")
        tracing.configure(config, "admin")
    bound_log_records()
    dsn = config.database_url
    if not dsn:
        raise ValueError("the admin API needs CHAMICORE_DATABASE_URL (chamicore up sets it)")
    metrics = service.Metrics()
    auth = Authenticator(config)  # refuses to start without a signing secret, unless in dev mode

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        app.state.pool = await db.create_pool(dsn, min_size=1, max_size=20,
                                              server_settings={"application_name": "chamicore-admin"})
        try:
            await auth.start(app.state.pool)
            async with app.state.agents.running(), app.state.console_live.running():  # MCP tasks, console LISTEN
                sdnotify.notify("READY=1")  # Type=notify units: the pool and the signing keys are up
                yield
        finally:
            await auth.stop()
            await app.state.pool.close()
            tracing.shutdown()

    routes = [*starlette_routes(ROUTERS), agents.route(), *console.routes(), serialconsole.route()]
    try:
        import swagger_ui_bundle

        routes.append(Mount("/api/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path)))
    except ImportError:  # the docs page degrades; the API itself does not need it
        log.warning("swagger-ui-bundle is not installed: /api/docs will not render")

    app = AdminApp(
        trusted_proxies=config.trusted_proxies,
        routes=routes,
        lifespan=lifespan,
        # The audit sits inside the metrics and outside the exception handlers: it sees the status they send.
        middleware=[Middleware(service.MetricsMiddleware, metrics=metrics), Middleware(audit.AuditLayer)],
        exception_handlers={
            ProblemError: handler_for(ProblemError, on_problem),
            HTTPException: handler_for(HTTPException, on_http_error),
            asyncpg.PostgresError: handler_for(asyncpg.PostgresError, on_database_error),
            asyncpg.InterfaceError: on_unavailable,
            OSError: on_unavailable,
            TimeoutError: on_unavailable,
            Exception: on_crash,
        },
    )
    app.state.config = config
    app.state.metrics = metrics
    app.state.auth = auth
    app.state.credentials_box = device_credentials_box(config)
    app.state.outside_issuers = tokens.OutsideIssuers(config.trusted_issuers)
    app.state.token_throttle = TokenThrottle(config)
    app.state.known_scopes = {op.scope for r in ROUTERS for op in r.operations if op.scope} | {serialconsole.SCOPE}
    app.state.openapi = msgspec.json.encode(openapi.build(ROUTERS, service.version()))
    app.state.console_live = console.LiveHub(dsn)
    app.state.agents = agents.face(app, config, ROUTERS, auth.dev_mode)  # /mcp; refuses a mode not allowed
    return app
