"""A node's serial console over a websocket: `/console/v1/nodes/{id}` (scope `write:console`).

The protocol, for the CLI and (later) the web console:

- the handshake carries `Authorization: Bearer <token>`; the socket is then
  accepted, and a refusal is a text frame holding an RFC 9457 problem
  followed by a close with code 4000 + its status: 4401 no valid token, 4403
  no `write:console`, 4404 no such node, 4409 the node has no usable BMC or
  credential, or its console is already attached, 4502 the BMC refused
  (credential, SOL disabled), 4503 no credentials key, 4504 the BMC did
  not answer;
- once Serial-over-LAN is active the server sends one text frame
  `{"attached": NODE, "bmc": BMC}`; from then on binary frames carry the
  node's serial bytes both ways (a text frame from the client is typed as
  UTF-8), and the server closes with 1000 when the BMC ends the session.

One session per node at a time, across every admin API process: a PostgreSQL
advisory lock held on a connection of the session's own (released by the
server if the process dies).  A BMC has one SOL payload anyway; a second
attach would only take the BMC's refusal.

Each attach is audited (`console.attach`, refused ones too) and each end
(`console.detach`, with how long it lasted and the bytes each way); the
websocket is not an HTTP request, so the AuditLayer does not see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from core import db
from core.problems import Problem, ProblemError, title_for
from core.serialconsole import ConsoleUnavailable, SolConsole, find_target

log = logging.getLogger("chamicore.admin.console")

SCOPE = "write:console"
PATH = "/console/v1/nodes/{id}"
MAX_INPUT = 64 * 1024  # bytes typed in one frame: a paste, not a file transfer
_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtextextended('chamicore.console:' || $1, 0))"


def route() -> WebSocketRoute:
    return WebSocketRoute(PATH, attach, name="serial-console")


async def attach(websocket: WebSocket) -> None:
    app = websocket.app
    node_id = websocket.path_params["id"][:255]
    resource = f"/console/v1/nodes/{node_id}"
    actor = "anonymous"
    await websocket.accept()
    try:
        actor = app.state.auth.authenticate(websocket)["sub"]  # who, for the audit, even if the scope is missing
        app.state.auth.authorize(websocket, SCOPE)
        async with _one_session(app.state.config.database_url, node_id):
            target = await find_target(app.state.pool, app.state.credentials_box, node_id)
            console = await SolConsole.attach(target)
            try:
                await app.state.auth.audit(websocket, "console.attach", resource, actor, 101,
                                           {"bmc": target.bmc_id, "via": target.via})
                log.info("serial console of %s attached by %s", node_id, actor)
                started = time.monotonic()
                await websocket.send_text(msgspec.json.encode({"attached": node_id, "bmc": target.bmc_id}).decode())
                ended_by = await _bridge(websocket, console)
            finally:
                await console.close()
            duration = round(time.monotonic() - started, 3)
            await app.state.auth.audit(websocket, "console.detach", resource, actor, 200, {
                "durationS": duration, "bytesToNode": console.bytes_to_node,
                "bytesFromNode": console.bytes_from_node, "endedBy": ended_by})
            log.info("serial console of %s detached by %s after %.1f s (%s)", node_id, actor, duration, ended_by)
    except ProblemError as exc:
        await _refuse(websocket, exc.problem.status, exc.problem.detail or exc.problem.title, actor, resource)
    except ConsoleUnavailable as exc:
        await _refuse(websocket, exc.status, exc.detail, actor, resource)


async def _bridge(websocket: WebSocket, console: SolConsole) -> str:
    """Copy bytes both ways until one side ends; say which ("client" or the BMC's reason)."""

    async def to_client() -> str:
        while (chunk := await console.output()) is not None:
            await websocket.send_bytes(chunk)
        return f"bmc: {console.ended}"

    async def to_node() -> str:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return "client"
            data = message.get("bytes")
            if data is None:
                data = (message.get("text") or "").encode()
            if len(data) > MAX_INPUT:
                await websocket.close(1009, f"at most {MAX_INPUT} bytes a frame")
                return "client sent too much at once"
            if data:
                await console.send(data)

    tasks = [asyncio.create_task(to_client()), asyncio.create_task(to_node())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    first = done.pop()
    try:
        ended_by = first.result()
    except (WebSocketDisconnect, OSError, RuntimeError):
        ended_by = "client"
    if ended_by.startswith("bmc"):
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            await websocket.close(1000, ended_by[:120])
    return ended_by


@contextlib.asynccontextmanager
async def _one_session(dsn: str | None, node_id: str):
    if not dsn:
        raise ConsoleUnavailable(503, "the admin API has no database to hold the console lock")
    conn = await db.connect(dsn, timeout=5, server_settings={"application_name": "chamicore-console"})
    try:
        if not await conn.fetchval(_LOCK_SQL, node_id):
            raise ConsoleUnavailable(409, f"the console of node {node_id!r} is already attached (one session per "
                                          "node); GET /auth/v1/audit?action=console.attach says by whom")
        yield
    finally:
        await conn.close()  # ends the session, and with it the advisory lock


async def _refuse(websocket: WebSocket, status: int, detail: str, actor: str, resource: str) -> None:
    problem = Problem(title=title_for(status), status=status, detail=detail)
    await websocket.app.state.auth.audit(websocket, "console.attach", resource, actor, status, {"reason": detail})
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await websocket.send_text(msgspec.json.encode(problem).decode())
        await websocket.close(4000 + status, detail.encode()[:120].decode(errors="ignore"))
