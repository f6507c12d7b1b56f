"""Routes declared once, with what OpenAPI, auth and the audit need to know about them.

Each operation names its scope (`read:smd`, `write:bss`, ...), its body and
answer types.  The dispatcher stores the matched operation in the request's
scope, and a handler gets its body through it (`await request_body(request)`,
decoded into the declared `request` type, read with the declared content
types and size cap), so the type is written once and the OpenAPI document
cannot drift from the code.

A request goes: guard (the token carries the operation's scope, or 401/403),
query check (no unknown parameter), handler.  The audit is a layer around the
whole app (admin_api/auth/audit.py) that records the status actually sent.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from admin_api.http import MAX_BODY, decode, read_body, spec_patch
from core.problems import ProblemError

OPERATION = "chamicore.operation"  # the scope key under which the dispatcher leaves the matched Operation
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


def state_param(states, what: str = "states") -> Param:
    """The `state` filter of a list (query_states checks it)."""
    return Param("state", f"{what}, comma = OR", schema={"type": "string", "pattern": one_of(states)})


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
    audited: bool = True  # recorded in auth.audit: every mutation but the token endpoint (which audits itself)
    body_limit: int = MAX_BODY
    # Faces for outside clients (admin_api/openchami): query names matched in any case, as SMD does ...
    fold_query: bool = False
    # ... and a GET those clients send without a token, answered without one only when the operator opts in
    # (CHAMICORE_OPENCHAMI_PUBLIC_READS); the handler then shows only what those clients need.
    public_read: bool = False


class Router:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.operations: list[Operation] = []

    def route(self, method: str, path: str, *, scope: str | None, summary: str, request: type | None = None,
              response: type | None = None, status: int = 200, params: tuple[Param, ...] = (),
              content_types: tuple[str, ...] = ("application/json",), audited: bool = True,
              body_limit: int = MAX_BODY, fold_query: bool = False,
              public_read: bool = False) -> Callable[[Endpoint], Endpoint]:
        if public_read and method != "GET":
            raise ValueError(f"{method} {path}: only a GET may be a public read")

        def register(endpoint: Endpoint) -> Endpoint:
            self.operations.append(Operation(method, path, endpoint, scope, summary, self.tag, request, response,
                                             status, params, content_types, audited and method != "GET",
                                             body_limit, fold_query, public_read))
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


def operation_of(request: Request) -> Operation:
    """The operation the dispatcher matched for this request."""
    return request.scope[OPERATION]


async def request_bytes(request: Request) -> bytes:
    """The raw body, in one of the operation's content types (415) and within its size cap (413)."""
    op = operation_of(request)
    return await read_body(request, op.body_limit, op.content_types)


async def request_body(request: Request) -> Any:
    """The body decoded into the operation's declared request type (400/422 problems otherwise)."""
    op = operation_of(request)
    if op.request is None:
        raise TypeError(f"{op.method} {op.path} declares no request type to decode its body into")
    return decode(await request_bytes(request), op.request)


async def request_patch(request: Request) -> dict:
    """The `spec` part of a JSON merge patch body (RFC 7396)."""
    return spec_patch(await request_body(request))


def guard(request: Request, op: Operation) -> None:
    """Authorisation: a token carrying the operation's scope (401/403 otherwise); its claims become
    `request.state.principal` (None on open routes, and on a public read asked without a token)."""
    if op.scope is None or (op.public_read and "authorization" not in request.headers
                            and request.app.state.config.openchami_public_reads):
        request.state.principal = None
        return
    request.state.principal = request.app.state.auth.authorize(request, op.scope)


def is_anonymous_read(request: Request) -> bool:
    """A public read answered without a token: the handler shows only the fields outside clients need."""
    op = operation_of(request)
    return op.public_read and request.state.principal is None


def check_query(request: Request, op: Operation) -> None:
    """A misspelt filter (`?tpye=Node`) must not silently list everything."""
    allowed = {p.name.lower() if op.fold_query else p.name for p in op.params if p.location == "query"}
    for name in request.query_params:
        if (name.lower() if op.fold_query else name) not in allowed:
            taken = ", ".join(sorted(allowed)) or "none"
            raise ProblemError(400, f"unknown query parameter {name[:40]!r}; this route takes: {taken}")


def _dispatcher(operations: dict[str, Operation]) -> Endpoint:
    async def dispatch(request: Request) -> Response:
        op = operations["GET" if request.method == "HEAD" else request.method]
        request.scope[OPERATION] = op
        guard(request, op)
        check_query(request, op)
        return await op.endpoint(request)

    return dispatch
