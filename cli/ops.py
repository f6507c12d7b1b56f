"""The CLI's workflows: power, discovery, node provisioning, bulk import, boot-script preview, auth."""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

from cli.client import ApiClient, read_config_file, write_config_file
from cli.errors import EXIT_FAILURE, EXIT_SERVER, EXIT_USAGE, CLIError
from cli.output import Progress, emit
from cli.resources import DISCOVERY_TARGETS, add_body_options, apply_sets, read_document, register

TASK_COLUMNS = (("NODE", "nodeId"), ("STATE", "state"), ("BMC", "bmcId"), ("STEP", "step"),
                ("TRIES", "attempts"), ("DETAIL", "detail"))
TRANSITION_COLUMNS = (("ID", "id"), ("OPERATION", "operation"), ("STATE", "state"), ("COUNTS", "counts"),
                      ("BY", "requestedBy"), ("CREATED", "createdAt"))
STATUS_COLUMNS = (("NODE", "nodeId"), ("POWER", "powerState"), ("MANAGEMENT", "managementState"),
                  ("ERROR", "error"), ("UPDATED", "updatedAt"))
SCAN_COLUMNS = (("ID", "metadata.id"), ("STATE", "status.state"), ("COUNTS", "status.counts"),
                ("BY", "status.requestedBy"), ("CREATED", "metadata.createdAt"), ("ERROR", "status.error"))
HOST_COLUMNS = (("TARGET", "targetId"), ("HOST", "host"), ("STATE", "state"), ("COMPONENTS", "components"),
                ("DETAIL", "detail"))
POLL_S = 1.0


# -- power --------------------------------------------------------------------------------------------------

def add_power(commands) -> None:
    power = commands.add_parser("power", help="power nodes on and off through their BMCs")
    verbs = power.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, what in (("on", "On"), ("off", "GracefulShutdown"), ("reboot", "GracefulRestart, as off then on"),
                       ("reset", "ForceRestart, as ForceOff then On")):
        action = verbs.add_parser(verb, help=f"{what}")
        action.add_argument("nodes", nargs="*", metavar="NODE")
        action.add_argument("--group", action="append", default=[], help="every Node in this group (repeatable)")
        action.add_argument("--dry-run", action="store_true", help="show what would be done, do nothing")
        action.add_argument("--wait", action="store_true", help="follow every node until it is done")
        action.add_argument("--timeout", type=float, default=600, help="seconds --wait waits (default 600)")
    status = verbs.add_parser("status", help="last known power state")
    status.add_argument("nodes", nargs="*", metavar="NODE")
    status.add_argument("--group", action="append", default=[])
    status.add_argument("--state", choices=("on", "off", "undefined"))
    verbs.add_parser("list", help="transitions, newest first").add_argument("--state")
    verbs.add_parser("show", help="one transition with its per-node tasks").add_argument("id")
    verbs.add_parser("abort", help="stop what has not happened yet").add_argument("id")
    power.set_defaults(handler=run_power)


def run_power(client: ApiClient, args, fmt: str) -> int:
    if args.verb == "status":
        params = {"node": args.nodes, "group": args.group, "state": args.state, "limit": 10000}
        emit(client.get("/power/v1/power-status", params), fmt, STATUS_COLUMNS)
        return 0
    if args.verb == "list":
        emit(client.get("/power/v1/transitions", {"state": args.state}), fmt, TRANSITION_COLUMNS)
        return 0
    if args.verb == "show":
        emit(client.get(f"/power/v1/transitions/{args.id}"), fmt, TASK_COLUMNS, items_key="tasks")
        return 0
    if args.verb == "abort":
        emit(client.request("DELETE", f"/power/v1/transitions/{args.id}"), fmt, TASK_COLUMNS, items_key="tasks")
        return 0
    if not args.nodes and not args.group:
        raise CLIError("cli", f"power {args.verb}: name nodes and/or --group", None, EXIT_USAGE)
    transition = client.request("POST", f"/power/v1/actions/{args.verb}",
                                {"nodes": args.nodes, "groups": args.group, "dryRun": args.dry_run})
    if args.dry_run or not args.wait:
        emit(transition, fmt, TASK_COLUMNS, items_key="tasks")
        if not args.dry_run and fmt == "table":
            print(f"transition {transition['id']}: `chamicore power show {transition['id']}` follows it",
                  file=sys.stderr)
        return 0
    final = follow_transition(client, transition, args.timeout)
    emit(final, fmt, TASK_COLUMNS, items_key="tasks")
    return 0 if final["counts"].get("succeeded", 0) == final["counts"]["total"] else EXIT_FAILURE


def follow_transition(client: ApiClient, transition: dict, timeout: float) -> dict:
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


# -- discovery ----------------------------------------------------------------------------------------------

def add_discovery(commands) -> None:
    discovery = commands.add_parser("discovery", help="find hardware: targets, scans, drivers")
    verbs = discovery.add_subparsers(dest="verb", metavar="VERB", required=True)
    scan = verbs.add_parser("scan", help="scan targets (none named: every enabled one)")
    scan.add_argument("targets", nargs="*", metavar="TARGET")
    scan.add_argument("--wait", action="store_true", help="follow the scan with a progress bar")
    scan.add_argument("--timeout", type=float, default=3600)
    status = verbs.add_parser("status", help="scans, or one scan host by host")
    status.add_argument("scan", nargs="?")
    verbs.add_parser("cancel", help="cancel a pending or running scan").add_argument("scan")
    verbs.add_parser("drivers", help="what each driver does")
    register(verbs, DISCOVERY_TARGETS)
    discovery.set_defaults(handler=run_discovery)


def run_discovery(client: ApiClient, args, fmt: str) -> int:
    if args.verb == "drivers":
        emit(client.get("/discovery/v1/drivers"), fmt, (("DRIVER", "name"), ("WHAT IT DOES", "description")))
        return 0
    if args.verb == "status":
        if not args.scan:
            emit(client.get("/discovery/v1/scans"), fmt, SCAN_COLUMNS)
        elif fmt == "table":
            _scan_table(client.get(f"/discovery/v1/scans/{args.scan}"))
        else:
            emit(client.get(f"/discovery/v1/scans/{args.scan}"), fmt)
        return 0
    if args.verb == "cancel":
        emit(client.request("POST", f"/discovery/v1/scans/{args.scan}/cancel"), fmt, SCAN_COLUMNS, items_key=None)
        return 0
    scan = client.request("POST", "/discovery/v1/scans", {"targets": args.targets})
    scan_id = scan["metadata"]["id"]
    if not args.wait:
        emit(scan, fmt, SCAN_COLUMNS, items_key=None)
        if fmt == "table":
            print(f"`chamicore discovery status {scan_id}` follows it", file=sys.stderr)
        return 0
    progress = Progress(f"scan {scan_id}")
    deadline = time.monotonic() + args.timeout
    while True:
        counts = scan["status"]["counts"]
        total = sum(counts.values())
        done = sum(counts.get(s, 0) for s in ("ok", "failed", "cancelled"))
        progress.show(done, total, " ".join(f"{k} {v}" for k, v in counts.items()))
        if scan["status"]["state"] in ("completed", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            progress.done()
            raise CLIError("discovery", f"scan {scan_id} still {scan['status']['state']} after {args.timeout:g} s",
                           "is `chamicore serve sync` running? `chamicore sync status` shows it", EXIT_FAILURE)
        time.sleep(POLL_S)
        scan = client.get(f"/discovery/v1/scans/{scan_id}")
    progress.done()
    if fmt == "table":
        _scan_table(scan)
    else:
        emit(scan, fmt)
    return 0 if scan["status"]["state"] == "completed" else EXIT_FAILURE


def _scan_table(scan: dict) -> None:
    status = scan["status"]
    print(f"scan {scan['metadata']['id']}: {status['state']}" + (f" ({status['error']})" if status.get("error") else ""))
    emit(status.get("results") or [], "table", HOST_COLUMNS)


# -- nodes and import ---------------------------------------------------------------------------------------

def add_node(commands) -> None:
    node = commands.add_parser("node", help="provision or decommission a node in one server-side transaction")
    verbs = node.add_subparsers(dest="verb", metavar="VERB", required=True)
    provision = verbs.add_parser("provision", help="make the node exactly as described (-f and/or --set)")
    provision.add_argument("id")
    provision.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    add_body_options(provision)
    decommission = verbs.add_parser("decommission", help="take a node out of service")
    decommission.add_argument("id")
    decommission.add_argument("--purge", action="store_true", help="delete it and its entries entirely")
    decommission.add_argument("--dry-run", action="store_true")
    node.set_defaults(handler=run_node)


def run_node(client: ApiClient, args, fmt: str) -> int:
    node_id = urllib.parse.quote(args.id, safe="")
    if args.verb == "provision":
        body = apply_sets(read_document(args.file) or {}, args.set)
        answer = client.request("POST", f"/hsm/v2/nodes/{node_id}/provision", body,
                                params={"dryRun": "true" if args.dry_run else None})
    else:
        answer = client.request("POST", f"/hsm/v2/nodes/{node_id}/decommission",
                                params={"dryRun": "true" if args.dry_run else None,
                                        "purge": "true" if args.purge else None})
    emit(answer, fmt)
    return 0


def add_import(commands) -> None:
    bulk = commands.add_parser("import", help="bulk-import nodes from a JSON array, NDJSON or YAML list")
    bulk.add_argument("file", help="the node list (- for stdin)")
    bulk.add_argument("--batch", type=int, default=1000, help="nodes per request, each all or nothing (max 10000)")
    bulk.add_argument("--dry-run", action="store_true", help="check everything, write nothing")
    bulk.set_defaults(handler=run_import)


def _nodes_of(path: str) -> list:
    text = sys.stdin.read() if path == "-" else _read(path)
    stripped = text.lstrip()
    if stripped.startswith("{"):  # NDJSON: one node per line
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise CLIError("cli", f"{path}: not NDJSON ({exc})", None, EXIT_USAGE) from None
    try:
        nodes = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CLIError("cli", f"{path}: neither JSON, NDJSON nor YAML ({exc})", None, EXIT_USAGE) from None
    if not isinstance(nodes, list):
        raise CLIError("cli", f"{path}: expected a list of nodes", None, EXIT_USAGE)
    return nodes


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise CLIError("cli", f"cannot read {path}: {exc.strerror}", None, EXIT_USAGE) from None


def run_import(client: ApiClient, args, fmt: str) -> int:
    if not 1 <= args.batch <= 10000:
        raise CLIError("cli", "--batch must be 1 to 10000", None, EXIT_USAGE)
    nodes = _nodes_of(args.file)
    progress = Progress("import")
    done = 0
    progress.show(0, len(nodes))
    for start in range(0, len(nodes), args.batch):
        batch = nodes[start:start + args.batch]
        try:
            client.request("POST", "/hsm/v2/import", batch, params={"dryRun": "true" if args.dry_run else None})
        except CLIError as exc:
            progress.done()
            exc.detail = (f"nodes {start + 1}-{start + len(batch)} (indexes within the batch):\n{exc.detail}")
            exc.hint = (f"{done} nodes before them were {'checked' if args.dry_run else 'imported'}; fix the file and "
                        f"re-run from node {start + 1}" + (f"; {exc.hint}" if exc.hint else ""))
            raise
        done += len(batch)
        progress.show(done, len(nodes))
    progress.done()
    print(f"{'checked' if args.dry_run else 'imported'} {done} nodes", file=sys.stderr)
    return 0


# -- boot-script preview ------------------------------------------------------------------------------------

def add_bootscript(commands) -> None:
    preview = commands.add_parser("bootscript", help="what a node booting with this MAC gets (not counted in telemetry)")
    preview.add_argument("mac")
    preview.add_argument("--boot-endpoint", help="the boot path (default CHAMICORE_BOOT_URL or CHAMICORE_BOOT_LISTEN)")
    preview.set_defaults(handler=None)  # run by main with the configuration: it talks to the boot path


def run_bootscript(config, args) -> int:
    if args.boot_endpoint:
        base = args.boot_endpoint
    else:  # asked from this machine: its own address for the boot path will do
        base = config.boot_url or config.boot_listen.local_url
    url = f"{base.rstrip('/')}/boot/v1/bootscript?" + urllib.parse.urlencode({"mac": args.mac})
    request = urllib.request.Request(url, headers={"X-Chamicore-Preview": "1"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            sys.stdout.write(response.read().decode())
        return 0
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read().decode(errors="replace")
        try:
            detail = json.loads(body).get("detail", body)
        except ValueError:
            detail = body[:200]
        raise CLIError("boot path", f"{exc.code}: {detail}", "check the MAC", EXIT_USAGE) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CLIError("boot path", f"cannot reach {base} ({getattr(exc, 'reason', exc)})",
                       "is it running? or give --boot-endpoint", EXIT_SERVER) from None


# -- auth ---------------------------------------------------------------------------------------------------

def add_auth_client(verbs) -> None:
    login = verbs.add_parser("login", help="store a service account in the config file (0600) and check it")
    login.add_argument("--client-id", required=True)
    login.add_argument("--client-secret", help="the secret (default: read from stdin, so it stays out of history)")
    login.add_argument("--endpoint", help="the admin API to use from now on")
    verbs.add_parser("token", help="print a bearer token (for curl: -H \"Authorization: Bearer $(chamicore auth "
                                   "token)\")")
    verbs.add_parser("whoami", help="who the token says you are, and its scopes")


def run_auth_client(client: ApiClient, args, fmt: str) -> int:
    if args.auth_command == "login":
        secret = args.client_secret or sys.stdin.readline().strip()
        if not secret:
            raise CLIError("cli", "no client secret given", "pass --client-secret or pipe it on stdin", EXIT_USAGE)
        trial = ApiClient(args.endpoint or client.endpoint, credentials={"client_id": args.client_id,
                                                                        "client_secret": secret})
        trial.token()  # fails with the server's reason if the account is wrong
        values = read_config_file()
        values.update(client_id=args.client_id, client_secret=secret)
        values.pop("token", None)
        if args.endpoint:
            values["endpoint"] = args.endpoint
        path = write_config_file(values)
        print(f"logged in as {args.client_id} at {trial.endpoint}; saved in {path}", file=sys.stderr)
        return 0
    token = client.token()
    if not token:
        raise CLIError("cli", "no token and no credentials", "run `chamicore auth login`, set CHAMICORE_TOKEN, or "
                       "start `chamicore up` (its admin credentials are used)", EXIT_USAGE)
    if args.auth_command == "token":
        print(token)
        return 0
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        raise CLIError("cli", "the token is not a JWT", None, EXIT_USAGE) from None
    shown = {"subject": claims.get("sub"), "issuer": claims.get("iss"), "scopes": (claims.get("scope") or "").split(),
             "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims.get("exp", 0))),
             "endpoint": client.endpoint}
    emit(shown, fmt if fmt != "table" else "yaml")
    return 0
