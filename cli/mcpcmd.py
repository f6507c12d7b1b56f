"""`chamicore mcp`: the MCP server over stdio, for an agent running on this machine.

It relays MCP messages between stdin/stdout and the admin API's /mcp, so the
tools, the mode, the scopes, the confirmation rule and the audit are the admin
API's, enforced once, there; progress notifications pass through.  It sends
its own mode with each request and the admin API applies the stricter one.

Token, first match wins: CHAMICORE_MCP_TOKEN, CHAMICORE_TOKEN, then the CLI's
own (the config file, or `chamicore up`'s admin credentials) only when
CHAMICORE_MCP_ALLOW_CLI_CONFIG_TOKEN=true: an agent gets the token it was
given, not the operator's by accident.  The admin API is found as for every
client command (--endpoint, CHAMICORE_ENDPOINT, the config file,
CHAMICORE_ADMIN_LISTEN).  stdout carries MCP messages only; errors go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from cli.command import Commands, Invocation, handles
from cli.errors import EXIT_AUTH, EXIT_CONFIG, EXIT_NOT_FOUND, EXIT_SERVER, CLIError
from core.config import Config

if TYPE_CHECKING:
    from mcp.shared.message import SessionMessage

SERVICE = "mcp"
MODE_HEADER = "X-Chamicore-MCP-Mode"  # admin_api/agents/policy.py reads these two
TRANSPORT_HEADER = "X-Chamicore-MCP-Transport"
TOKEN_VARIABLES = ("CHAMICORE_MCP_TOKEN", "CHAMICORE_TOKEN")
ALLOW_CLI_TOKEN = "CHAMICORE_MCP_ALLOW_CLI_CONFIG_TOKEN"


def register(commands: Commands) -> None:
    handles(commands.add_parser(
        "mcp", help="serve MCP (Model Context Protocol) tools over stdio, for a local agent",
        description="Serve the admin API's MCP tools over stdio (relayed to <admin>/mcp). Read-only unless "
                    "CHAMICORE_MCP_MODE=read-write and CHAMICORE_MCP_ENABLE_WRITE=true. Token: "
                    "CHAMICORE_MCP_TOKEN, CHAMICORE_TOKEN, or the CLI's own when "
                    "CHAMICORE_MCP_ALLOW_CLI_CONFIG_TOKEN=true.",
        formatter_class=argparse.RawDescriptionHelpFormatter), serve_stdio)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def mode_of(config: Config) -> str:
    """This bridge's mode; read-write without the second key is refused before anything starts."""
    if config.mcp_mode == "read-write" and not config.mcp_enable_write:
        raise CLIError(SERVICE, "CHAMICORE_MCP_MODE=read-write also needs CHAMICORE_MCP_ENABLE_WRITE=true",
                       "set CHAMICORE_MCP_ENABLE_WRITE=true to let the agent change the cluster, or use "
                       "CHAMICORE_MCP_MODE=read-only", EXIT_CONFIG)
    return config.mcp_mode


def token_of(run: Invocation) -> str | None:
    for name in TOKEN_VARIABLES:
        if token := os.environ.get(name, "").strip():
            return token
    if _flag(ALLOW_CLI_TOKEN):
        return run.client.token()
    return None


def probe(url: str, token: str | None) -> None:
    """Check, before serving, that /mcp is there and takes the token: errors that name the fix."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=10):
            return
    except urllib.error.HTTPError as exc:
        with exc:
            status, body = exc.code, exc.read()
        detail = _detail(body)
        if status == 401:
            hint = ("give the agent a token: set CHAMICORE_MCP_TOKEN (or CHAMICORE_TOKEN); "
                    "`chamicore auth token` prints one") if not token else \
                "the token was refused: get a new one (`chamicore auth token`) or check CHAMICORE_ENDPOINT"
            raise CLIError(SERVICE, f"admin API {url}: 401 {detail}", hint, EXIT_AUTH) from None
        if status == 404:
            raise CLIError(SERVICE, f"admin API {url}: 404, no MCP endpoint there",
                           "point CHAMICORE_ENDPOINT at a Chamicore admin API that serves /mcp", EXIT_NOT_FOUND) \
                from None
        if status >= 500:
            raise CLIError(SERVICE, f"admin API {url}: {status} {detail}", "see the admin API log", EXIT_SERVER) \
                from None
        return  # the token passed; the SDK answers a bare GET as it sees fit (405 when stateless)
    except (urllib.error.URLError, OSError) as exc:
        raise CLIError(SERVICE, f"cannot reach the admin API at {url} ({getattr(exc, 'reason', exc)})",
                       "is it running? `chamicore up` starts everything; or set CHAMICORE_ENDPOINT", EXIT_SERVER) \
            from None


def _detail(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")[:200]
    return str(parsed.get("detail") or parsed.get("title") or "")[:300] if isinstance(parsed, dict) else ""


def serve_stdio(run: Invocation) -> int:
    mode = mode_of(run.config)
    token = token_of(run)
    url = run.client.endpoint + "/mcp"
    probe(url, token)
    headers = {MODE_HEADER: mode, TRANSPORT_HEADER: "stdio"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    asyncio.run(relay(url, headers))
    return 0


class Stamps:
    """The per-message HTTP headers the SDK's own client session would set, for messages relayed from stdio:
    MCP-Protocol-Version as negotiated by the relayed `initialize` (or, on the 2026 wire, as each request
    states it, with Mcp-Method and Mcp-Name)."""

    def __init__(self) -> None:
        self.version: str | None = None
        self._initialize_ids: set[Any] = set()

    def outgoing(self, message: SessionMessage) -> SessionMessage:
        from mcp.shared.inbound import (
            MCP_METHOD_HEADER,
            MCP_NAME_HEADER,
            MCP_PROTOCOL_VERSION_HEADER,
            NAME_BEARING_METHODS,
            encode_header_value,
        )
        from mcp.shared.message import ClientMessageMetadata, SessionMessage
        from mcp.types import PROTOCOL_VERSION_META_KEY, JSONRPCNotification, JSONRPCRequest

        wire = message.message
        if not isinstance(wire, JSONRPCRequest | JSONRPCNotification):
            return message
        if wire.method == "initialize" and isinstance(wire, JSONRPCRequest):
            self._initialize_ids.add(wire.id)
            return message
        params = wire.params or {}
        meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
        stated = meta.get(PROTOCOL_VERSION_META_KEY) if meta else None
        headers: dict[str, str] = {}
        if isinstance(stated, str):
            headers = {MCP_PROTOCOL_VERSION_HEADER: stated, MCP_METHOD_HEADER: wire.method}
            name_key = NAME_BEARING_METHODS.get(wire.method)
            if name_key is not None and isinstance(name := params.get(name_key), str):
                headers[MCP_NAME_HEADER] = encode_header_value(name)
        elif self.version:
            headers = {MCP_PROTOCOL_VERSION_HEADER: self.version}
        return SessionMessage(wire, ClientMessageMetadata(headers=headers)) if headers else message

    def incoming(self, message: SessionMessage) -> None:
        from mcp.types import JSONRPCResponse

        wire = message.message
        if isinstance(wire, JSONRPCResponse) and wire.id in self._initialize_ids:
            self._initialize_ids.discard(wire.id)
            if isinstance(version := wire.result.get("protocolVersion"), str):
                self.version = version


async def relay(url: str, headers: dict[str, str]) -> None:
    """stdin → /mcp and /mcp → stdout, until stdin closes."""
    import anyio
    import httpx2
    from mcp.client.streamable_http import streamable_http_client
    from mcp.server.stdio import stdio_server

    stamps = Stamps()
    # No read timeout: a tool may run long (power.transitions.wait), and a closed stdin ends the relay anyway.
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=None)) as http, \
            streamable_http_client(url, http_client=http) as (remote_read, remote_write), \
            stdio_server() as (local_read, local_write), anyio.create_task_group() as tasks:

        async def upstream() -> None:
            async for message in local_read:
                if isinstance(message, Exception):
                    print(f"chamicore: mcp: not an MCP message on stdin: {message}", file=sys.stderr)
                    continue
                await remote_write.send(stamps.outgoing(message))
            tasks.cancel_scope.cancel()  # the agent closed stdin: done

        async def downstream() -> None:
            async for message in remote_read:
                if isinstance(message, Exception):
                    print(f"chamicore: mcp: admin API: {message}", file=sys.stderr)
                    continue
                stamps.incoming(message)
                await local_write.send(message)

        tasks.start_soon(upstream)
        tasks.start_soon(downstream)
