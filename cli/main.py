"""Entry point of the `chamicore` command: one parser built from the command modules, one dispatch."""

from __future__ import annotations

import argparse
import sys

from cli import (
    authcmd,
    bootscript,
    completion,
    configcmd,
    console,
    dbcmd,
    discovery,
    importcmd,
    inventory,
    mcpcmd,
    nodes,
    power,
    resources,
    serve,
    stages,
    synccmd,
    up,
    users,
)
from cli.command import Invocation, config_error
from cli.errors import EXIT_USAGE, CLIError
from cli.output import FORMATS
from core.config import ConfigError

# Each module registers its command group; `chamicore --help` lists them in this order.
COMMAND_GROUPS = (up, configcmd, dbcmd, serve, synccmd, authcmd, users, resources, nodes, power, console, discovery,
                  inventory, importcmd, bootscript, stages, mcpcmd, completion)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chamicore",
        description="Boots and manages the nodes of an HPC cluster.",
        epilog="Settings come from CHAMICORE_* environment variables; `chamicore config` lists them. Client "
               "commands talk to the admin API: CHAMICORE_ENDPOINT and CHAMICORE_TOKEN override "
               "~/.config/chamicore/config.yaml; after `chamicore up` they need no configuration. Exit codes: "
               "2 usage or invalid input, 3 configuration, 4 database, 5 not found, 6 conflict, 7 auth, "
               "8 server or unreachable, 1 anything else (a failed task, say).",
    )
    parser.add_argument("-o", "--output", choices=FORMATS, help="table (default), json or yaml")
    parser.add_argument("--endpoint", help="the admin API (default: CHAMICORE_ENDPOINT, the config file, "
                                           "CHAMICORE_ADMIN_LISTEN)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    _output_everywhere(parser)
    return parser


def _output_everywhere(parser: argparse.ArgumentParser) -> None:
    """`-o json` also after the command (`chamicore components list -o json`), not only before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if not name.startswith("__"):
                    _output_everywhere(sub)
            return
    if parser.prog != "chamicore":
        parser.add_argument("-o", "--output", choices=FORMATS, default=argparse.SUPPRESS, help="table, json or yaml")


def run(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["__complete"]:  # before parsing: partial words are not valid arguments yet
        print("\n".join(completion.candidates(parser, argv[1:])))
        return 0
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(Invocation(args))
    except ConfigError as exc:  # a setting checked only where it is used (CHAMICORE_BOOT_URL for Kea, say)
        return config_error(exc).report()
    except CLIError as exc:
        return exc.report()
    except KeyboardInterrupt:
        return 130


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
