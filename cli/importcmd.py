"""`chamicore import FILE`: bulk import in batches, each all or nothing, with a progress bar."""

from __future__ import annotations

import argparse
import re
import sys

from cli.command import Commands, Invocation, handles
from cli.errors import CLIError, UsageError
from cli.output import Progress, emit
from core.nodefiles import NodeFileError, read_node_file

DESCRIPTION = """\
Import nodes from a JSON array, NDJSON, YAML list or CSV file, in batches of --batch nodes, each all or nothing.

A CSV file starts with a header row of field names, in any order:
  id,type,role,subRole,nid,arch,enabled,rack,unit,slot,subSlot,mac,ip,bmc,bmcCredential,groups,kernel,initrd,cmdline
  mac, ip      MACs and their IPs in the same order, several separated by spaces or ';'
  bmc          the node's BMC: https://host[:port] (Redfish; a bare host means https) or ipmi://host:port (IPMI);
               created as the node's xname parent (x1000c1s7b0n0 -> x1000c1s7b0) or <id>-bmc, or reused when
               the address already is a BMC endpoint; it becomes the node's parentId, so power control reaches it
  bmcCredential  the stored credential (/auth/v1/credentials) power control uses at that BMC; bmcInsecure: true
               to skip its TLS certificate check
  groups       existing groups the node joins, separated by spaces or ';' (an unknown group refuses the batch)
  rack, unit, slot, subSlot  its location; kernel, initrd, cmdline  its boot parameters
An empty cell leaves the field out.  --dry-run checks everything, writes nothing, and lists what the import would
create: nodes, BMCs (created, endpoint added, or reused) and group memberships.  A refused item is named by its
line in the file (CSV, NDJSON) and the field at fault."""

_ITEM = re.compile(r"^  \$\[(\d+)\]", re.MULTILINE)
DIFF_COLUMNS = (("CHANGE", "change"), ("ID", "id"), ("DETAIL", "detail"))
BMC_CHANGES = {"created": "create BMC", "endpoint-added": "add BMC endpoint", "reused": "reuse BMC"}


def register(commands: Commands) -> None:
    bulk = handles(commands.add_parser(
        "import", help="bulk-import nodes (with their BMCs and groups) from a JSON array, NDJSON, YAML list or CSV file",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter), import_nodes)
    bulk.add_argument("file", help="the node list (- for stdin)")
    bulk.add_argument("--batch", type=int, default=1000, help="nodes per request, each all or nothing (max 10000)")
    bulk.add_argument("--dry-run", action="store_true", help="check everything, write nothing, list what would change")


def _nodes_of(path: str) -> tuple[list, list[int]]:
    text = sys.stdin.read() if path == "-" else _read(path)
    try:
        return read_node_file(text, path)
    except NodeFileError as exc:
        raise UsageError(f"{path}: {exc}") from None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


class Diff:
    """What the batches create, merged: a BMC named by several batches is listed once, with all its nodes."""

    def __init__(self) -> None:
        self.nodes: list[str] = []
        self.bmcs: dict[str, dict] = {}  # by address
        self.groups: dict[str, list[str]] = {}

    def add(self, answer: dict) -> None:
        self.nodes += answer.get("ids", [])
        for bmc in answer.get("bmcs", []):
            self.bmcs.setdefault(bmc["address"], {**bmc, "nodes": []})["nodes"] += bmc["nodes"]
        for group, members in answer.get("groups", {}).items():
            self.groups.setdefault(group, []).extend(members)

    def as_dict(self) -> dict:
        return {"nodes": self.nodes, "bmcs": list(self.bmcs.values()), "groups": self.groups}

    def rows(self) -> list[dict]:
        return ([{"change": "create node", "id": node, "detail": ""} for node in self.nodes]
                + [{"change": BMC_CHANGES.get(bmc["action"], bmc["action"]), "id": bmc["id"],
                    "detail": f"{bmc['address']} for {', '.join(bmc['nodes'])}"} for bmc in self.bmcs.values()]
                + [{"change": "join group", "id": node, "detail": group}
                   for group, members in self.groups.items() for node in members])

    def summary(self) -> str:
        made = sum(bmc["action"] == "created" for bmc in self.bmcs.values())
        joins = sum(len(members) for members in self.groups.values())
        return f"{len(self.nodes)} nodes, {made} new BMCs ({len(self.bmcs)} in all), {joins} group memberships"


def _with_lines(detail: str, lines: list[int]) -> str:
    """Each refused item (`$[i]`, its index within the batch) named by its line of the file too, when known."""
    if not lines:
        return detail
    return _ITEM.sub(lambda m: f"  line {lines[int(m.group(1))]}: $[{m.group(1)}]"
                     if int(m.group(1)) < len(lines) else m.group(), detail)


def import_nodes(run: Invocation) -> int:
    args = run.args
    if not 1 <= args.batch <= 10000:
        raise UsageError("--batch must be 1 to 10000")
    nodes, lines = _nodes_of(args.file)
    progress = Progress("import")
    diff = Diff()
    done = 0
    progress.show(0, len(nodes))
    for start in range(0, len(nodes), args.batch):
        batch = nodes[start:start + args.batch]
        try:
            answer = run.client.request("POST", "/hsm/v2/import", batch,
                                        params={"dryRun": "true" if args.dry_run else None})
        except CLIError as exc:
            progress.done()
            exc.detail = _with_lines(exc.detail, lines[start:start + len(batch)])
            exc.detail = f"nodes {start + 1}-{start + len(batch)} (indexes within the batch):\n{exc.detail}"
            exc.hint = (f"{done} nodes before them were {'checked' if args.dry_run else 'imported'}; fix the file and "
                        f"re-run from node {start + 1}" + (f"; {exc.hint}" if exc.hint else ""))
            raise
        diff.add(answer if isinstance(answer, dict) else {})
        done += len(batch)
        progress.show(done, len(nodes))
    progress.done()
    if args.dry_run:  # the diff: what the import would create
        if run.fmt in ("json", "yaml"):
            emit(diff.as_dict(), run.fmt)
        else:
            emit(diff.rows(), run.fmt, DIFF_COLUMNS)
    if args.dry_run:
        print(f"checked {done} nodes; the import would create {diff.summary()}", file=sys.stderr)
    else:
        print(f"imported {done} nodes ({diff.summary()})", file=sys.stderr)
    return 0
