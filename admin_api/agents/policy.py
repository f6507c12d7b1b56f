"""The rules every tool call passes, on both transports, before anything runs.

Mode: read-only (the default) lists and runs read tools only; read-write needs
CHAMICORE_MCP_ENABLE_WRITE=true as well, or the admin API does not start.  A
client may ask for a stricter mode than the server's (`chamicore mcp` sends
its own), never a looser one.

Confirmation: a destructive call (every delete, an abort, a power operation
that takes power away or interrupts a node) does nothing without
`confirm: true`; it answers what it would do and how to confirm.

Scopes: each tool needs the scopes of the REST operations it runs, and the
caller's token must carry them (the REST guard checks them again on each
operation, with the same token).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from core.config import Config, ConfigError
from core.problems import ProblemError

MODE_HEADER = "x-chamicore-mcp-mode"  # sent by `chamicore mcp`: the stricter of it and the server's applies
TRANSPORT_HEADER = "x-chamicore-mcp-transport"  # "stdio" from `chamicore mcp`: recorded in the audit


class Mode(enum.StrEnum):
    READ_ONLY = "read-only"
    READ_WRITE = "read-write"


def server_mode(config: Config) -> Mode:
    """The mode the server runs in, checked once at start-up."""
    mode = Mode(config.mcp_mode)
    if mode is Mode.READ_WRITE and not config.mcp_enable_write:
        raise ConfigError("MCP_ENABLE_WRITE", "CHAMICORE_MCP_MODE=read-write also needs "
                                              "CHAMICORE_MCP_ENABLE_WRITE=true (the second key to the write "
                                              "tools); set it, or use CHAMICORE_MCP_MODE=read-only")
    return mode


def effective_mode(server: Mode, asked: str | None) -> Mode:
    """The stricter of the server's mode and the one a client asked for (an unknown value: read-only)."""
    if server is Mode.READ_ONLY or asked is None:
        return server
    return Mode.READ_WRITE if asked.strip().lower() == Mode.READ_WRITE else Mode.READ_ONLY


def check_mode(tool: str, write: bool, mode: Mode) -> None:
    if write and mode is not Mode.READ_WRITE:
        raise ProblemError(403, f"{tool} changes the cluster, and this MCP server is read-only: an operator turns "
                                "writes on with CHAMICORE_MCP_MODE=read-write and CHAMICORE_MCP_ENABLE_WRITE=true",
                           type="urn:chamicore:problem:mcp-read-only")


def check_scopes(tool: str, needed: Iterable[str], held: set[str], dev_mode: bool) -> None:
    missing = sorted(set(needed) - held)
    if missing and not dev_mode:
        names = " and ".join(repr(scope) for scope in missing)
        raise ProblemError(403, f"{tool} needs the scope{'s' if len(missing) > 1 else ''} {names}, which your "
                                "token does not carry", type="urn:chamicore:problem:insufficient-scope")


def check_confirmed(tool: str, consequence: str | None, confirm: object) -> None:
    """`consequence` is what the call would do when it is destructive (None: it is not)."""
    if consequence is not None and confirm is not True:
        raise ProblemError(428, f"{tool} would {consequence}. Nothing was done. To do it, call {tool} again "
                                "with the same input and \"confirm\": true",
                           type="urn:chamicore:problem:confirmation-required")
