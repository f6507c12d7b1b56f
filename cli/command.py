"""How a command group plugs into `chamicore`.

Each command module has `register(commands)`, which adds its parsers to the
top-level sub-parsers and gives every leaf a handler with `handles(parser,
handler)`.  A handler takes one `Invocation` and returns the exit code; what
it needs (the configuration, an admin API client, the output format) is made
on first use, so `chamicore completion bash` works even with a bad setting.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from cli.errors import EXIT_CONFIG, CLIError
from cli.output import FORMATS
from core.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from cli.client import ApiClient

Commands = argparse._SubParsersAction  # what `add_subparsers` returns: argparse has no public name for it


def config_error(exc: ConfigError) -> CLIError:
    return CLIError("config", str(exc), f"fix or unset {exc.name}; `chamicore config` lists every setting",
                    EXIT_CONFIG)


class Invocation:
    """One run of a command: its arguments, and what it needs, made when first asked for."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    @functools.cached_property
    def config(self) -> Config:
        try:
            return load_config()
        except ConfigError as exc:
            raise config_error(exc) from None

    @functools.cached_property
    def client(self) -> ApiClient:
        from cli.client import ApiClient

        return ApiClient.from_settings(self.config, self.args.endpoint)

    @functools.cached_property
    def fmt(self) -> str:
        from cli.client import read_config_file

        fmt = self.args.output or read_config_file().get("output") or "table"
        if fmt not in FORMATS:
            raise CLIError("cli", f"output {fmt!r} in the config file is not one of {', '.join(FORMATS)}", None,
                           EXIT_CONFIG)
        return fmt


Handler = Callable[[Invocation], int]


def handles(parser: argparse.ArgumentParser, handler: Handler) -> argparse.ArgumentParser:
    parser.set_defaults(handler=handler)
    return parser


def verbs(parser: argparse.ArgumentParser, dest: str = "verb", metavar: str = "VERB") -> Commands:
    """The sub-commands of a command group (`chamicore power on|off|...`)."""
    return parser.add_subparsers(dest=dest, metavar=metavar, required=True)
