"""`chamicore import FILE`: bulk import in batches, each all or nothing, with a progress bar."""

from __future__ import annotations

import sys

from cli.command import Commands, Invocation, handles
from cli.errors import CLIError, UsageError
from cli.output import Progress
from core.nodefiles import NodeFileError, read_nodes


def register(commands: Commands) -> None:
    bulk = handles(commands.add_parser("import", help="bulk-import nodes from a JSON array, NDJSON, YAML list or CSV file"),
                   import_nodes)
    bulk.add_argument("file", help="the node list (- for stdin)")
    bulk.add_argument("--batch", type=int, default=1000, help="nodes per request, each all or nothing (max 10000)")
    bulk.add_argument("--dry-run", action="store_true", help="check everything, write nothing")


def _nodes_of(path: str) -> list:
    text = sys.stdin.read() if path == "-" else _read(path)
    try:
        return read_nodes(text, path)
    except NodeFileError as exc:
        raise UsageError(f"{path}: {exc}") from None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def import_nodes(run: Invocation) -> int:
    args = run.args
    if not 1 <= args.batch <= 10000:
        raise UsageError("--batch must be 1 to 10000")
    nodes = _nodes_of(args.file)
    progress = Progress("import")
    done = 0
    progress.show(0, len(nodes))
    for start in range(0, len(nodes), args.batch):
        batch = nodes[start:start + args.batch]
        try:
            run.client.request("POST", "/hsm/v2/import", batch, params={"dryRun": "true" if args.dry_run else None})
        except CLIError as exc:
            progress.done()
            exc.detail = f"nodes {start + 1}-{start + len(batch)} (indexes within the batch):\n{exc.detail}"
            exc.hint = (f"{done} nodes before them were {'checked' if args.dry_run else 'imported'}; fix the file and "
                        f"re-run from node {start + 1}" + (f"; {exc.hint}" if exc.hint else ""))
            raise
        done += len(batch)
        progress.show(done, len(nodes))
    progress.done()
    print(f"{'checked' if args.dry_run else 'imported'} {done} nodes", file=sys.stderr)
    return 0
