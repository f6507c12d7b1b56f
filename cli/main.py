"""Entry point of the `chamicore` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from cli import completion, ops, resources
from cli.errors import EXIT_CONFIG, EXIT_USAGE, CLIError
from cli.output import FORMATS
from core.config import ConfigError, describe, load_config


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

    up = commands.add_parser("up", help="start everything (embedded PostgreSQL unless CHAMICORE_DATABASE_URL is set)")
    up.add_argument("--data-dir", type=Path, help="where to keep everything up creates "
                    "(default: CHAMICORE_DATA_DIR or ~/.local/share/chamicore)")

    commands.add_parser("config", help="print the effective configuration, secrets masked")

    database = commands.add_parser("db", help="database schema")
    db_commands = database.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_commands.add_parser("migrate", help="apply pending migrations (safe to run from several hosts at once)")
    db_commands.add_parser("status", help="list migrations and whether each is applied")

    serve = commands.add_parser("serve", help="run one service in the foreground")
    serve_commands = serve.add_subparsers(dest="service", metavar="SERVICE", required=True)
    boot = serve_commands.add_parser("boot", help="the boot path (iPXE scripts and cloud-init), on granian")
    boot.add_argument("--interface", choices=("rsgi", "asgi"),
                      help="granian interface (default CHAMICORE_BOOT_INTERFACE, rsgi: the faster one)")
    serve_commands.add_parser("admin", help="the admin REST API (Starlette), on granian")
    serve_commands.add_parser("sync", help="the sync daemons the configuration enables (event relay to NATS)")

    sync = commands.add_parser("sync", help="sync daemons")
    sync_commands = sync.add_subparsers(dest="sync_command", metavar="ACTION", required=True)
    sync_commands.add_parser("status", help="every replica: active or standby, last success, last error, counts")

    auth = commands.add_parser("auth", help="log in, tokens, signing keys")
    auth_commands = auth.add_subparsers(dest="auth_command", metavar="ACTION", required=True)
    auth_commands.add_parser("rotate-keys", help="start signing with a new key; the old one stays published "
                                                 "until its tokens expire")
    create_admin = auth_commands.add_parser("create-admin", help="create an admin service account in the database "
                                                                 "directly (the first one of a deployment)")
    create_admin.add_argument("--client-id", default="admin")
    ops.add_auth_client(auth_commands)

    for kind in resources.KINDS:
        resources.register(commands, kind)
    ops.add_node(commands)
    ops.add_power(commands)
    ops.add_discovery(commands)
    ops.add_import(commands)
    ops.add_bootscript(commands)
    completion_parser = commands.add_parser("completion", help="print a shell completion script")
    completion_parser.add_argument("shell", choices=sorted(completion.SCRIPTS))
    commands.add_parser("__complete").add_argument("words", nargs=argparse.REMAINDER)
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


def _print_config(config) -> None:
    rows = describe(config)
    width = max(len(name) for name, _, _ in rows)
    for name, value, doc in rows:
        print(f"{name:<{width}}  {value}")
        print(f"{'':<{width}}    {doc}")


def run(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["__complete"]:  # before parsing: partial words are not valid arguments yet
        print("\n".join(completion.candidates(parser, argv[1:])))
        return 0
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "completion":
        print(completion.SCRIPTS[args.shell], end="")
        return 0
    try:
        config = load_config()
    except ConfigError as exc:
        return CLIError("config", str(exc), f"fix or unset {exc.name}; `chamicore config` lists every setting",
                        EXIT_CONFIG).report()
    try:
        if args.command == "config":
            _print_config(config)
            return 0
        if args.command == "db":
            from cli.dbcmd import require_database_url, run_migrate, run_status

            dsn = require_database_url(config)
            if args.db_command == "migrate":
                asyncio.run(run_migrate(dsn))
                return 0
            asyncio.run(run_status(dsn))
            return 0
        if args.command == "serve":
            from cli.serve import serve_admin, serve_boot, serve_sync

            if args.service == "admin":
                serve_admin(config)
            elif args.service == "sync":
                serve_sync(config)
            else:
                serve_boot(config, args.interface)
            return 0
        if args.command == "sync":
            from cli.dbcmd import require_database_url
            from cli.synccmd import print_status

            return asyncio.run(print_status(require_database_url(config)))
        if args.command == "bootscript":
            return ops.run_bootscript(config, args)
        client_auth = args.command == "auth" and args.auth_command not in ("rotate-keys", "create-admin")
        if getattr(args, "handler", None) is not None or client_auth:
            from cli.client import ApiClient, read_config_file

            fmt = args.output or read_config_file().get("output") or "table"
            if fmt not in FORMATS:
                raise CLIError("cli", f"output {fmt!r} in the config file is not one of {', '.join(FORMATS)}", None,
                               EXIT_CONFIG)
            client = ApiClient.from_settings(config, args.endpoint)
            if args.command == "auth":
                return ops.run_auth_client(client, args, fmt)
            return args.handler(client, args, fmt)
        if args.command == "auth":
            from cli.authcmd import create_admin, rotate_keys
            from cli.dbcmd import require_database_url

            if args.auth_command == "create-admin":
                asyncio.run(create_admin(require_database_url(config), args.client_id))
            else:
                asyncio.run(rotate_keys(config, require_database_url(config)))
            return 0
        if args.command == "up":
            from cli.up import run_up

            data_dir = (args.data_dir or config.resolved_data_dir).expanduser().resolve()
            return run_up(config, data_dir)
    except CLIError as exc:
        return exc.report()
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
