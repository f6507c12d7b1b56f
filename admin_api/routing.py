"""Routes declared once, with what OpenAPI and auth need to know about them.

Each operation names its scope (`read:smd`, `write:bss`, ...), its body and
answer types: the same msgspec types the handler decodes and encodes, so
the OpenAPI document cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclasses.dataclass(frozen=True, slots=True)
class Param:
    name: str
    description: str
    type: str = "string"
    location: str = "query"


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


class Router:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.operations: list[Operation] = []

    def route(self, method: str, path: str, *, scope: str | None, summary: str, request: type | None = None,
              response: type | None = None, status: int = 200, params: tuple[Param, ...] = (),
              content_types: tuple[str, ...] = ("application/json",)) -> Callable[[Endpoint], Endpoint]:
        def register(endpoint: Endpoint) -> Endpoint:
            self.operations.append(Operation(method, path, endpoint, scope, summary, self.tag, request, response,
                                             status, params, content_types))
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
        return self.route("DELETE", path, status=204, **kwargs)


def starlette_routes(routers: list[Router]) -> list[Route]:
    routes = []
    for router in routers:
        for op in router.operations:
            route = Route(op.path, op.endpoint, methods=[op.method])
            route.operation = op  # found again by the auth layer and the metrics
            routes.append(route)
    return routes
