"""A face runs the REST operation itself: an in-process request into the same admin app.

Scopes, query checks, body decoding and validation, the write layer, events
and the change feed are then exactly the REST ones, because they are the REST
code.  How the caller is known depends on the face:

- an MCP tool passes the caller's own Authorization, so the route's guard
  checks the caller's token as it would over HTTP, and marks the request with
  audit.RECORDED_BY_FACE: the MCP layer writes the one audit entry of the call;
- a console page passes the principal of its session under
  guard.FACE_PRINCIPAL, and the audit records each operation under the
  user's name, as for any REST call.

Both are ASGI scope keys, which no network client can set.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from starlette.types import ASGIApp, Message

from admin_api.auth.audit import RECORDED_BY_FACE
from admin_api.requestid import REQUEST_ID_SCOPE
from core.logs import REQUEST_ID
from core.problems import Problem, ProblemError, title_for

MAX_ANSWER = 16 << 20  # what one sub-request may hand back to a tool; a REST list page is far below this


@dataclasses.dataclass(frozen=True, slots=True)
class Caller:
    """Who calls, as the MCP endpoint authenticated them."""

    authorization: str | None  # the caller's header, passed on to each REST operation (None in dev mode)
    claims: dict
    client: tuple[str, int] | None
    transport: str  # "http", or "stdio" through `chamicore mcp`; "console" for a web console session
    scope_keys: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {RECORDED_BY_FACE: True})

    @property
    def actor(self) -> str:
        return str(self.claims.get("sub", "anonymous"))

    @property
    def scopes(self) -> set[str]:
        return set(str(self.claims.get("scope", "")).split())


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    operation: str  # "DELETE /boot/v1/bootparams/{id}": the native operation that answered
    path: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None

    def problem(self) -> Problem:
        """The answer as an RFC 9457 problem (the REST handlers send one for every 4xx/5xx)."""
        try:
            data = self.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return Problem(title=title_for(self.status), status=self.status,
                           detail=self.body.decode(errors="replace")[:500] or title_for(self.status))
        errors = data.get("errors")
        return Problem(type=str(data.get("type", "about:blank")), title=str(data.get("title", title_for(self.status))),
                       status=int(data.get("status", self.status)), detail=data.get("detail"),
                       instance=data.get("instance"), errors=errors if isinstance(errors, list) else None)


class NativeError(Exception):
    """A REST operation answered with a problem: the tool or page fails with it, unchanged."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.problem = answer.problem()
        super().__init__(self.problem.detail or self.problem.title)


def segment(value: str) -> str:
    """One path segment from an agent's input: `a/b` must not reach another route."""
    return quote(value, safe="")


class Native:
    """Runs REST operations of `app` for one caller, and remembers which ones wrote (for the audit)."""

    def __init__(self, app: ASGIApp, caller: Caller) -> None:
        self.app = app
        self.caller = caller
        self.operations: list[str] = []  # every operation run, "METHOD /path/{template}"
        self.writes: list[Answer] = []

    async def request(self, method: str, path: str, *, query: Mapping[str, Any] | Sequence[tuple[str, Any]] = (),
                      body: Any = None, headers: Mapping[str, str] | None = None,
                      content_type: str = "application/json", ok: Sequence[int] = ()) -> Answer:
        """Run one operation; a 4xx/5xx raises NativeError unless its status is in `ok`."""
        items = query.items() if isinstance(query, Mapping) else query
        pairs = [(k, ",".join(map(str, v)) if isinstance(v, list | tuple) else _text(v))
                 for k, v in items if v is not None and v != [] and v != ""]
        data = b"" if body is None else json.dumps(body).encode()
        sent = [(b"host", b"admin"), (b"accept", b"application/json")]
        if self.caller.authorization:
            sent.append((b"authorization", self.caller.authorization.encode("latin-1")))
        if body is not None:
            sent += [(b"content-type", content_type.encode()), (b"content-length", str(len(data)).encode())]
        sent += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": urlencode(pairs).encode(), "headers": sent, "client": self.caller.client,
            "server": ("admin", 80), "extensions": {}, **self.caller.scope_keys,
        }
        if parent := REQUEST_ID.get():  # the call's one id: its log lines and audit entries name the outer request
            scope[REQUEST_ID_SCOPE] = parent
        answer = await self._run(scope, data)
        self.operations.append(answer.operation)
        if method != "GET" and answer.status < 400:
            self.writes.append(answer)
        if answer.status >= 400 and answer.status not in ok:
            raise NativeError(answer)
        return answer

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.request(method, path, **kwargs)).json()

    async def _run(self, scope: dict[str, Any], data: bytes) -> Answer:
        pending = [{"type": "http.request", "body": data, "more_body": False}]
        status = 500
        headers: dict[str, str] = {}
        chunks: list[bytes] = []
        size = 0

        async def receive() -> Message:
            if pending:
                return pending.pop()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status, headers, size
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])}
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise ProblemError(500, "a REST answer was too large to hand to a face")
                chunks.append(chunk)

        await self.app(scope, receive, send)
        op = scope.get("chamicore.operation")  # routing.OPERATION, left by the dispatcher once a route matched
        operation = f"{op.method} {op.path}" if op is not None else f"{scope['method']} {scope['path']}"
        return Answer(status, headers, b"".join(chunks), operation, scope["path"])


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
