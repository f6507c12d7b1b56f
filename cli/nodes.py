"""`chamicore node provision|decommission`: one server-side transaction each; `node explain`: its boot profile."""

from __future__ import annotations

import urllib.parse

from cli.command import Commands, Invocation, handles, verbs
from cli.output import emit
from cli.resources import add_body_options, apply_sets, read_document


def register(commands: Commands) -> None:
    node = verbs(commands.add_parser("node", help="provision or decommission a node in one server-side transaction"))
    make = handles(node.add_parser("provision", help="make the node exactly as described (-f and/or --set)"),
                   provision)
    make.add_argument("id")
    make.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    add_body_options(make)
    retire = handles(node.add_parser("decommission", help="take a node out of service"), decommission)
    retire.add_argument("id")
    retire.add_argument("--purge", action="store_true", help="delete it and its entries entirely")
    retire.add_argument("--dry-run", action="store_true")
    explain = handles(node.add_parser("explain", help="which boot profile the node gets and why"), explain_profile)
    explain.add_argument("id")


def _flag(value: bool) -> str | None:
    return "true" if value else None


def provision(run: Invocation) -> int:
    body = apply_sets(read_document(run.args.file) or {}, run.args.set)
    node_id = urllib.parse.quote(run.args.id, safe="")
    emit(run.client.request("POST", f"/hsm/v2/nodes/{node_id}/provision", body,
                            params={"dryRun": _flag(run.args.dry_run)}), run.fmt)
    return 0


def decommission(run: Invocation) -> int:
    node_id = urllib.parse.quote(run.args.id, safe="")
    emit(run.client.request("POST", f"/hsm/v2/nodes/{node_id}/decommission",
                            params={"dryRun": _flag(run.args.dry_run), "purge": _flag(run.args.purge)}), run.fmt)
    return 0


def explain_profile(run: Invocation) -> int:
    node_id = urllib.parse.quote(run.args.id, safe="")
    emit(run.client.request("GET", f"/boot/v1/effective/{node_id}/profile"), run.fmt)
    return 0
