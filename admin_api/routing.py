"""Routes declared once, with what OpenAPI and auth need to know about them.

Each operation names its scope (`read:smd`, `write:bss`, ...), its body and
answer types: the same msgspec types the handler decodes and encodes, so
the OpenAPI document cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from core.problems import ProblemError

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclasses.dataclass(frozen=True, slots=True)
class Param:
    name: str
    description: str
    type: str = "string"
    location: str = "query"
    schema: dict | None = None  # JSON schema of the value, when more than its type

    def json_schema(self) -> dict:
        return self.schema or {"type": self.type}


def one_of(values) -> str:
    """Pattern of a comma-separated list drawn from `values` (filters, sort, fields)."""
    choice = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return f"^(({choice})(,({choice}))*)?$"  # empty: the filter is not applied


def sort_param(columns) -> Param:
    choice = "|".join(re.escape(v) for v in sorted(columns, key=len, reverse=True))
    return Param("sort", f"fields to sort by, `-` for descending ({', '.join(sorted(columns))})",
                 schema={"type": "string", "pattern": f"^([-+]?({choice})(,[-+]?({choice}))*)?$"})


LIMIT = Param("limit", "page size (1-10000, default 100)", "integer",
              schema={"type": "integer", "minimum": 1, "maximum": 10_000})
OFFSET = Param("offset", "items to skip", "integer", schema={"type": "integer", "minimum": 0})
PAGING = (LIMIT, OFFSET)


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    endpoint: Endpoint
    scope: str | None
    summary: str
    tag: str
    request: type | None = None
    response: type | None = None
    status: int = 200
    params: tuple[Param, ...] = ()
    content_types: tuple[str, ...] = ("application/json",)
    audited: bool = True  # mutations are recorded in auth.audit (the token endpoint audits itself)


class Router:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.operations: list[Operation] = []

    def route(self, method: str, path: str, *, scope: str | None, summary: str, request: type | None = None,
              response: type | None = None, status: int = 200, params: tuple[Param, ...] = (),
              content_types: tuple[str, ...] = ("application/json",),
              audited: bool = True) -> Callable[[Endpoint], Endpoint]:
        def register(endpoint: Endpoint) -> Endpoint:
            self.operations.append(Operation(method, path, endpoint, scope, summary, self.tag, request, response,
                                             status, params, content_types, audited))
            return endpoint

        return register

    def get(self, path: str, **kwargs):
        return self.route("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self.route("POST", path, status=kwargs.pop("status", 201), **kwargs)

    def put(self, path: str, **kwargs):
        return self.route("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs):
        return self.route("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs):
        return self.route("DELETE", path, status=kwargs.pop("status", 204), **kwargs)


def starlette_routes(routers: list[Router]) -> list[BaseRoute]:
    """One Starlette route per path, dispatching on the method, so that a 405
    names every method the path allows (Allow header)."""
    by_path: dict[str, dict[str, Operation]] = {}
    for router in routers:
        for op in router.operations:
            by_path.setdefault(op.path, {})[op.method] = op
    return [Route(path, _dispatcher(operations), methods=list(operations))
            for path, operations in by_path.items()]


MUTATING = frozenset(("POST", "PUT", "PATCH", "DELETE"))


def _check_query(request: Request, op: Operation) -> None:
    """A misspelt filter (`?tpye=Node`) must not silently list everything."""
    allowed = {p.name for p in op.params if p.location == "query"}
    for name in request.query_params:
        if name not in allowed:
            taken = ", ".join(sorted(allowed)) or "none"
            raise ProblemError(400, f"unknown query parameter {name[:40]!r}; this route takes: {taken}")


def _dispatcher(operations: dict[str, Operation]) -> Endpoint:
    """Checks the token against the operation's scope, runs it, and audits every mutation."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        op = operations[method]
        auth = request.app.state.auth
        audited = method in MUTATING and op.audited
        principal = None
        status = 500
        try:
            if op.scope is not None:
                principal = auth.authorize(request, op.scope)
            request.state.principal = principal
            _check_query(request, op)
            response = await op.endpoint(request)
            status = response.status_code
            return response
        except ProblemError as exc:
            status = exc.problem.status
            raise
        finally:
            if audited:
                actor = principal["sub"] if principal else "anonymous"
                await auth.audit(request, f"{method} {op.path}", request.url.path, actor, status)

    return dispatch
