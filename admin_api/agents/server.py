"""The MCP server (the SDK's low-level Server): tools/list by mode, tools/call through one path.

A call goes: mode → scopes → input schema → confirmation → the tool (REST
operations in-process) → one audit entry, whatever happened.  Errors come
back as MCP tool errors (isError) carrying the RFC 9457 problem, as text and
as structured content, so an agent reads the same detail a REST client does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import MutableMapping
from typing import Any

import jsonschema
import mcp.types as types
import msgspec
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from starlette.requests import Request
from starlette.types import ASGIApp

from admin_api.agents import policy
from admin_api.agents.tools import Built, Call
from admin_api.inprocess import Caller, Native, NativeError
from admin_api.service import version
from core.bounded import clip
from core.config import Config
from core.problems import FieldError, Problem, ProblemError, title_for

log = logging.getLogger("chamicore.admin.mcp")
CALLER = "chamicore.mcp.caller"  # ASGI scope keys the /mcp endpoint sets once it has authenticated the request
MODE = "chamicore.mcp.mode"
# Argument values kept out of the audit: what a payload, a node list or a secret may hold.
SECRET_ARGUMENTS = frozenset(("spec", "userData", "metaData", "vendorData", "document", "secret", "password",
                              "token", "cmdline"))
MAX_AUDITED = 20  # targets and operations listed in one audit entry

INSTRUCTIONS = (
    "Chamicore boots and manages the nodes of an HPC cluster. Start with cluster.health_summary. Tools named "
    "<service>.<resource>.<verb> run the same operations as the REST API, with your token's scopes. Deletes, "
    "aborts and power operations that take power away need \"confirm\": true; without it they say what they "
    "would do and do nothing. Every call is audited."
)


class ToolServer:
    """The tools of one admin app, served to MCP clients."""

    def __init__(self, app: ASGIApp, config: Config, tools: dict[str, Built], dev_mode: bool) -> None:
        self.app = app
        self.config = config
        self.tools = tools
        self.dev_mode = dev_mode
        self.validators = {name: jsonschema.Draft202012Validator(built.input_schema) for name, built in tools.items()}
        self.server: Server[Any] = Server("chamicore", version=version(), instructions=INSTRUCTIONS,
                                          on_list_tools=self.list_tools, on_call_tool=self.call_tool)

    async def list_tools(self, ctx: ServerRequestContext[Any, Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        mode = _scope(ctx)[MODE]
        return types.ListToolsResult(tools=[_describe(built) for built in self.tools.values()
                                            if mode is policy.Mode.READ_WRITE or not built.tool.write])

    async def call_tool(self, ctx: ServerRequestContext[Any, Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        scope = _scope(ctx)
        caller: Caller = scope[CALLER]
        mode: policy.Mode = scope[MODE]
        args = dict(params.arguments or {})
        built = self.tools.get(params.name)
        native = Native(self.app, caller)
        started = time.perf_counter()
        result: dict[str, Any] | None = None
        problem: Problem | None = None
        try:
            if built is None:
                raise ProblemError(404, f"no tool {clip(params.name, 80)!r}; tools/list shows the tools of this "
                                        f"server (mode {mode})")
            policy.check_mode(built.tool.name, built.tool.write, mode)
            policy.check_scopes(built.tool.name, built.scopes, caller.scopes, self.dev_mode)
            self.check_input(params.name, args)
            consequence = built.tool.consequence(args) if built.tool.consequence else None
            policy.check_confirmed(built.tool.name, consequence, args.get("confirm"))

            async def progress(done: float, total: float | None, message: str | None) -> None:
                await ctx.session.report_progress(done, total, message)

            result = await built.tool.run(Call(args, native, self.config, progress))
        except NativeError as exc:
            problem = exc.problem
        except ProblemError as exc:
            problem = exc.problem
        except Exception:
            log.exception("MCP tool %s failed", clip(params.name))
            problem = Problem(title=title_for(500), status=500, detail="the tool failed unexpectedly; it is logged "
                                                                      "on the admin API")
        await self.audit(ctx, params.name, built, args, mode, caller, native, problem,
                         time.perf_counter() - started)
        if problem is not None:
            body = msgspec.to_builtins(problem)
            return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(body))],
                                        structured_content={"problem": body}, is_error=True)
        return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(result))],
                                    structured_content=result)

    def check_input(self, name: str, args: dict[str, Any]) -> None:
        errors = sorted(self.validators[name].iter_errors(args), key=lambda e: list(e.absolute_path))
        if errors:
            fields = [FieldError("$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path),
                                 clip(e.message, 300)) for e in errors[:20]]
            raise ProblemError(422, f"the input does not match the tool's schema: {fields[0].field}: "
                                    f"{fields[0].detail}", errors=fields)

    async def audit(self, ctx: ServerRequestContext[Any, Any], name: str, built: Built | None, args: dict[str, Any],
                    mode: policy.Mode, caller: Caller, native: Native, problem: Problem | None,
                    seconds: float) -> None:
        """One entry per call, in the REST entries' table and shape: the REST operations it ran are in the
        detail, not entries of their own."""
        last_write = native.writes[-1] if native.writes else None
        status = problem.status if problem is not None else (last_write.status if last_write else 200)
        targets = _targets(built, args)
        detail = {
            "via": "mcp", "tool": clip(name, 128), "mode": str(mode), "transport": caller.transport,
            "targets": [clip(t) for t in targets[:MAX_AUDITED]], "durationMs": round(seconds * 1000, 1),
            "operations": native.operations[:MAX_AUDITED], "arguments": _redacted(args),
            "result": "ok" if problem is None else clip(problem.detail or problem.title, 500),
        }
        request = _request(ctx)
        await request.app.state.auth.audit(request, f"MCP {clip(name, 128)}",
                                           last_write.path if last_write else "/mcp", caller.actor, status, detail)


def _targets(built: Built | None, args: dict[str, Any]) -> list[str]:
    """What the call acts on, as far as its input tells (a refused input may lack what the tool reads)."""
    if built is None:
        return []
    try:
        return [str(target) for target in built.tool.targets(args)]
    except (KeyError, TypeError, AttributeError):
        return []


def _redacted(args: dict[str, Any]) -> dict[str, Any]:
    """The input as the audit keeps it: scalars clipped, secrets and documents replaced, structures sized."""
    kept: dict[str, Any] = {}
    for key, value in list(args.items())[:MAX_AUDITED]:
        if key in SECRET_ARGUMENTS:
            kept[clip(key, 64)] = "[redacted]"
        elif isinstance(value, dict):
            kept[clip(key, 64)] = f"{{{len(value)} keys}}"
        elif isinstance(value, list):
            kept[clip(key, 64)] = f"[{len(value)} items]"
        elif isinstance(value, str):
            kept[clip(key, 64)] = clip(value)
        else:
            kept[clip(key, 64)] = value
    return kept


def _describe(built: Built) -> types.Tool:
    tool = built.tool
    return types.Tool(
        name=tool.name, description=tool.description, input_schema=built.input_schema,
        annotations=types.ToolAnnotations(read_only_hint=not tool.write, destructive_hint=tool.consequence is not None,
                                          open_world_hint=False),
        _meta={"chamicore/scopes": list(built.scopes), "chamicore/write": tool.write,
              "chamicore/confirm": tool.consequence is not None},
    )


def _request(ctx: ServerRequestContext[Any, Any]) -> Request:
    """The HTTP request that carried this message into /mcp (the only way in: stdio comes through it too)."""
    request = ctx.request
    if not isinstance(request, Request) or CALLER not in request.scope:
        raise MCPError(code=types.INTERNAL_ERROR, message="this MCP server answers through the admin API's /mcp only")
    return request


def _scope(ctx: ServerRequestContext[Any, Any]) -> MutableMapping[str, Any]:
    return _request(ctx).scope
