"""/mcp: MCP over streamable HTTP (answers as SSE when the client accepts it), behind the admin API's bearer
tokens.

The token is checked here, before the SDK sees the request: no token, or a bad
one, is a 401 problem with `WWW-Authenticate: Bearer`, as on every admin
route.  Stateless: each POST stands alone, so any admin worker answers any
request and nothing is kept between them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from admin_api.agents import policy
from admin_api.agents.server import CALLER, MODE, ToolServer
from admin_api.http import problem_response
from admin_api.inprocess import Caller
from core.problems import ProblemError

PATH = "/mcp"
MAX_BODY = 4 << 20  # one JSON-RPC message; the tool inputs inside are capped again by the REST operations


class AgentsFace:
    """The MCP server of one admin app: its tools, its mode, and the SDK's HTTP session manager."""

    def __init__(self, tools: ToolServer, mode: policy.Mode) -> None:
        self.tools = tools
        self.mode = mode
        self._manager: StreamableHTTPSessionManager | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """For the app's lifespan: the SDK's manager runs one task group for the requests it serves.

        An anyio task group must be left by the task that entered it, and a lifespan's start and end
        may run in different tasks (pytest fixtures do that), so the manager lives in a task of its own."""
        manager = StreamableHTTPSessionManager(self.tools.server, stateless=True, json_response=False,
                                               max_request_body_size=MAX_BODY)
        started, stop = asyncio.Event(), asyncio.Event()

        async def run() -> None:
            async with manager.run():
                started.set()
                await stop.wait()

        task = asyncio.create_task(run(), name="mcp-session-manager")
        waiting = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if task.done():
            task.result()  # it failed to start: raise why
        self._manager = manager
        try:
            yield
        finally:
            self._manager = None
            stop.set()
            await task

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        auth = scope["app"].state.auth
        try:
            claims = auth.authenticate(request)
        except ProblemError as exc:
            await problem_response(exc.problem, exc.headers)(scope, receive, send)
            return
        if self._manager is None:
            await problem_response(ProblemError(503, "the MCP server is not running (the admin API is starting or "
                                                     "stopping); retry").problem, {"Retry-After": "1"})(
                scope, receive, send)
            return
        transport = "stdio" if request.headers.get(policy.TRANSPORT_HEADER, "").lower() == "stdio" else "http"
        scope[CALLER] = Caller(request.headers.get("authorization"), claims,
                               (scope["client"][0], scope["client"][1]) if scope.get("client") else None, transport)
        scope[MODE] = policy.effective_mode(self.mode, request.headers.get(policy.MODE_HEADER))
        await self._manager.handle_request(scope, receive, send)


class Endpoint:
    """The ASGI app mounted at /mcp: it finds the face on the app that serves the request."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        face: AgentsFace = scope["app"].state.agents
        await face.handle(scope, receive, send)
