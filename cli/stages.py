"""`chamicore stages summary|list`: how far this boot storm is (GET /boot/v1/stages[/summary])."""

from __future__ import annotations

import sys

from cli.command import Commands, Invocation, handles, verbs
from cli.output import emit

STAGES = ("dhcp", "ipxe", "script", "kernel-booted", "cloud-init", "ready")
NODE_COLUMNS = (("NODE", "componentId"), ("STAGE", "stage"), ("SINCE", "stageAt"),
                ("SECONDS", "secondsAtStage"))


def register(commands: Commands) -> None:
    stages = verbs(commands.add_parser(
        "stages", help="how far the nodes' boots went: dhcp, ipxe, script, kernel-booted, cloud-init, ready"))
    summary = handles(stages.add_parser("summary", help="nodes per stage, and time-to-ready percentiles"),
                      show_summary)
    summary.add_argument("--group", action="append", default=[], help="nodes of this group only (repeatable)")
    summary.add_argument("--window", type=int, default=60, metavar="MINUTES",
                         help="percentiles over the boots that became ready within this many minutes (default 60)")
    listing = handles(stages.add_parser("list", help="each node's stage, longest at its stage first"), show_list)
    listing.add_argument("--stuck-for", type=int, metavar="SECONDS",
                         help="only nodes at their stage (and not ready) for at least this long")
    listing.add_argument("--stage", action="append", default=[], choices=STAGES)
    listing.add_argument("--group", action="append", default=[])
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--offset", type=int, default=0)


def show_summary(run: Invocation) -> int:
    answer = run.client.get("/boot/v1/stages/summary", {"group": run.args.group, "windowMinutes": run.args.window})
    if run.fmt != "table":
        emit(answer, run.fmt)
        return 0
    by_stage = answer["byStage"]
    rows = [{"stage": name, "nodes": by_stage.get(name, 0)} for name in STAGES]
    rows.append({"stage": "not seen", "nodes": answer["notSeen"]})
    emit(rows, run.fmt, (("STAGE", "stage"), ("NODES", "nodes")))
    p = answer["timeToReadySeconds"]
    print(f"{answer['readyInWindow']} of {answer['nodes']} nodes ready within {answer['windowMinutes']} min; "
          f"time to ready p50 {p['p50']} s, p90 {p['p90']} s, p99 {p['p99']} s")
    return 0


def show_list(run: Invocation) -> int:
    args = run.args
    answer = run.client.get("/boot/v1/stages", {"stuckFor": args.stuck_for, "stage": args.stage,
                                                "group": args.group, "limit": args.limit, "offset": args.offset})
    emit(answer, run.fmt, NODE_COLUMNS)
    if run.fmt == "table" and answer["total"] > len(answer["items"]):
        print(f"({len(answer['items'])} of {answer['total']}; --limit/--offset for more)", file=sys.stderr)
    return 0
