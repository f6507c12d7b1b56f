"""`chamicore discovery scan|status|cancel|drivers|targets ...`."""

from __future__ import annotations

import sys
import time

from cli import resources
from cli.command import Commands, Invocation, handles, verbs
from cli.errors import EXIT_FAILURE, CLIError
from cli.output import Progress, emit

SCAN_COLUMNS = (("ID", "metadata.id"), ("STATE", "status.state"), ("COUNTS", "status.counts"),
                ("BY", "status.requestedBy"), ("CREATED", "metadata.createdAt"), ("ERROR", "status.error"))
HOST_COLUMNS = (("TARGET", "targetId"), ("HOST", "host"), ("STATE", "state"), ("COMPONENTS", "components"),
                ("DETAIL", "detail"))
POLL_S = 1.0


def register(commands: Commands) -> None:
    discovery = verbs(commands.add_parser("discovery", help="find hardware: targets, scans, drivers"))
    start = handles(discovery.add_parser("scan", help="scan targets (none named: every enabled one)"), scan)
    start.add_argument("targets", nargs="*", metavar="TARGET")
    start.add_argument("--wait", action="store_true", help="follow the scan with a progress bar")
    start.add_argument("--timeout", type=float, default=3600)
    handles(discovery.add_parser("status", help="scans, or one scan host by host"), status).add_argument(
        "scan", nargs="?")
    handles(discovery.add_parser("cancel", help="cancel a pending or running scan"), cancel).add_argument("scan")
    handles(discovery.add_parser("drivers", help="what each driver does"), drivers)
    resources.register_kind(discovery, resources.DISCOVERY_TARGETS)


def drivers(run: Invocation) -> int:
    emit(run.client.get("/discovery/v1/drivers"), run.fmt, (("DRIVER", "name"), ("WHAT IT DOES", "description")))
    return 0


def status(run: Invocation) -> int:
    if not run.args.scan:
        emit(run.client.get("/discovery/v1/scans"), run.fmt, SCAN_COLUMNS)
    else:
        _show(run.client.get(f"/discovery/v1/scans/{run.args.scan}"), run.fmt)
    return 0


def cancel(run: Invocation) -> int:
    answer = run.client.request("POST", f"/discovery/v1/scans/{run.args.scan}/cancel")
    emit(answer, run.fmt, SCAN_COLUMNS, items_key=None)
    return 0


def scan(run: Invocation) -> int:
    args = run.args
    started = run.client.request("POST", "/discovery/v1/scans", {"targets": args.targets})
    scan_id = started["metadata"]["id"]
    if not args.wait:
        emit(started, run.fmt, SCAN_COLUMNS, items_key=None)
        if run.fmt == "table":
            print(f"`chamicore discovery status {scan_id}` follows it", file=sys.stderr)
        return 0
    progress = Progress(f"scan {scan_id}")
    deadline = time.monotonic() + args.timeout
    current = started
    while True:
        counts = current["status"]["counts"]
        done = sum(counts.get(s, 0) for s in ("ok", "failed", "cancelled"))
        progress.show(done, sum(counts.values()), " ".join(f"{k} {v}" for k, v in counts.items()))
        if current["status"]["state"] in ("completed", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            progress.done()
            raise CLIError("discovery", f"scan {scan_id} still {current['status']['state']} after {args.timeout:g} s",
                           "is `chamicore serve sync` running? `chamicore sync status` shows it", EXIT_FAILURE)
        time.sleep(POLL_S)
        current = run.client.get(f"/discovery/v1/scans/{scan_id}")
    progress.done()
    _show(current, run.fmt)
    return 0 if current["status"]["state"] == "completed" else EXIT_FAILURE


def _show(scan: dict, fmt: str) -> None:
    if fmt != "table":
        emit(scan, fmt)
        return
    status = scan["status"]
    print(f"scan {scan['metadata']['id']}: {status['state']}" + (f" ({status['error']})" if status.get("error") else ""))
    emit(status.get("results") or [], "table", HOST_COLUMNS)
