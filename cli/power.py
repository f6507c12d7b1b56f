"""`chamicore power on|off|reboot|reset|status|list|show|abort`."""

from __future__ import annotations

import sys
import time

from cli.client import ApiClient
from cli.command import Commands, Invocation, handles, verbs
from cli.errors import EXIT_FAILURE, CLIError, UsageError
from cli.output import Progress, emit

TASK_COLUMNS = (("NODE", "nodeId"), ("STATE", "state"), ("BMC", "bmcId"), ("STEP", "step"),
                ("TRIES", "attempts"), ("DETAIL", "detail"))
TRANSITION_COLUMNS = (("ID", "id"), ("OPERATION", "operation"), ("STATE", "state"), ("COUNTS", "counts"),
                      ("BY", "requestedBy"), ("CREATED", "createdAt"))
STATUS_COLUMNS = (("NODE", "nodeId"), ("POWER", "powerState"), ("MANAGEMENT", "managementState"),
                  ("ERROR", "error"), ("UPDATED", "updatedAt"))
POLL_S = 1.0


def register(commands: Commands) -> None:
    power = verbs(commands.add_parser("power", help="power nodes on and off through their BMCs"))
    for verb, what in (("on", "On"), ("off", "GracefulShutdown"), ("reboot", "GracefulRestart, as off then on"),
                       ("reset", "ForceRestart, as ForceOff then On")):
        action = handles(power.add_parser(verb, help=what), change)
        action.add_argument("nodes", nargs="*", metavar="NODE")
        action.add_argument("--group", action="append", default=[], help="every Node in this group (repeatable)")
        action.add_argument("--dry-run", action="store_true", help="show what would be done, do nothing")
        action.add_argument("--wait", action="store_true", help="follow every node until it is done")
        action.add_argument("--timeout", type=float, default=600, help="seconds --wait waits (default 600)")
    state = handles(power.add_parser("status", help="last known power state"), status)
    state.add_argument("nodes", nargs="*", metavar="NODE")
    state.add_argument("--group", action="append", default=[])
    state.add_argument("--state", choices=("on", "off", "undefined"))
    handles(power.add_parser("list", help="transitions, newest first"), listing).add_argument("--state")
    handles(power.add_parser("show", help="one transition with its per-node tasks"), show).add_argument("id")
    handles(power.add_parser("abort", help="stop what has not happened yet"), abort).add_argument("id")


def status(run: Invocation) -> int:
    args = run.args
    params = {"node": args.nodes, "group": args.group, "state": args.state, "limit": 10000}
    emit(run.client.get("/power/v1/power-status", params), run.fmt, STATUS_COLUMNS)
    return 0


def listing(run: Invocation) -> int:
    emit(run.client.get("/power/v1/transitions", {"state": run.args.state}), run.fmt, TRANSITION_COLUMNS)
    return 0


def show(run: Invocation) -> int:
    emit(run.client.get(f"/power/v1/transitions/{run.args.id}"), run.fmt, TASK_COLUMNS, items_key="tasks")
    return 0


def abort(run: Invocation) -> int:
    answer = run.client.request("DELETE", f"/power/v1/transitions/{run.args.id}")
    emit(answer, run.fmt, TASK_COLUMNS, items_key="tasks")
    return 0


def change(run: Invocation) -> int:
    args = run.args
    if not args.nodes and not args.group:
        raise UsageError(f"power {args.verb}: name nodes and/or --group")
    transition = run.client.request("POST", f"/power/v1/actions/{args.verb}",
                                    {"nodes": args.nodes, "groups": args.group, "dryRun": args.dry_run})
    if args.dry_run or not args.wait:
        emit(transition, run.fmt, TASK_COLUMNS, items_key="tasks")
        if not args.dry_run and run.fmt == "table":
            print(f"transition {transition['id']}: `chamicore power show {transition['id']}` follows it",
                  file=sys.stderr)
        return 0
    final = follow(run.client, transition, args.timeout)
    emit(final, run.fmt, TASK_COLUMNS, items_key="tasks")
    return 0 if final["counts"].get("succeeded", 0) == final["counts"]["total"] else EXIT_FAILURE


def follow(client: ApiClient, transition: dict, timeout: float) -> dict:
    """Poll until the transition ends, printing each node's changes as they happen."""
    progress = Progress(f"{transition['operation']}")
    seen: dict[str, tuple] = {}
    deadline = time.monotonic() + timeout
    current = transition
    while True:
        for task in current.get("tasks") or []:
            state = (task["state"], task.get("step"), task.get("detail", ""))
            if seen.get(task["nodeId"]) != state:
                seen[task["nodeId"]] = state
                if progress.tty:
                    print("\r\033[K", end="", file=sys.stderr)
                print(f"  {task['nodeId']}: {task['state']}" + (f" ({task['detail']})" if task.get("detail") else ""),
                      file=sys.stderr, flush=True)
                progress.last = ""
        counts = current["counts"]
        finished = sum(counts.get(s, 0) for s in ("succeeded", "failed", "aborted"))
        note = " ".join(f"{k} {v}" for k, v in counts.items() if k != "total")
        progress.show(finished, counts["total"], note)
        if current["state"] in ("completed", "aborted"):
            progress.done()
            return current
        if time.monotonic() > deadline:
            progress.done()
            raise CLIError("power", f"transition {transition['id']} still {current['state']} after {timeout:g} s",
                           f"`chamicore power show {transition['id']}` follows it; is `chamicore serve sync` running?",
                           EXIT_FAILURE)
        time.sleep(POLL_S)
        current = client.get(f"/power/v1/transitions/{transition['id']}")
