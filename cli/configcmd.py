"""`chamicore config`: every CHAMICORE_* setting, its effective value (secrets masked) and what it does."""

from __future__ import annotations

from cli.command import Commands, Invocation, handles
from core.config import describe


def register(commands: Commands) -> None:
    handles(commands.add_parser("config", help="print the effective configuration, secrets masked"), show)


def show(run: Invocation) -> int:
    rows = describe(run.config)
    width = max(len(name) for name, _, _ in rows)
    for name, value, doc in rows:
        print(f"{name:<{width}}  {value}")
        print(f"{'':<{width}}    {doc}")
    return 0
