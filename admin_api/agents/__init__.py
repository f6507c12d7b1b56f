"""The MCP face: agents observe and operate the cluster through Model Context Protocol tools.

Built on the official `mcp` SDK (this package is not named `mcp`, which would
shadow it).  Served by the admin API at /mcp over streamable HTTP, and over
stdio by `chamicore mcp`, which relays to /mcp: one policy, one audit.
"""

from __future__ import annotations

from starlette.routing import Route
from starlette.types import ASGIApp

from admin_api.agents import policy, tools
from admin_api.agents.http import PATH, AgentsFace, Endpoint
from admin_api.agents.server import ToolServer
from admin_api.routing import Router
from core.config import Config


def route() -> Route:
    """/mcp, every method (POST for messages; GET and DELETE answered by the SDK)."""
    return Route(PATH, endpoint=Endpoint())


def face(app: ASGIApp, config: Config, routers: list[Router], dev_mode: bool) -> AgentsFace:
    """The MCP server of `app`; ConfigError when the mode settings do not allow it to start."""
    mode = policy.server_mode(config)
    return AgentsFace(ToolServer(app, config, tools.build(routers), dev_mode), mode)


__all__ = ["AgentsFace", "face", "route"]
