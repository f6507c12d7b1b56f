"""`chamicore inventory hardware [NODE] [filters]` and `chamicore inventory changes NODE`: what discovery read."""

from __future__ import annotations

import urllib.parse

from cli.command import Commands, Invocation, handles, verbs
from cli.errors import UsageError
from cli.output import emit

BASE = "/hsm/v2/Inventory/Hardware"
HARDWARE_COLUMNS = (("NODE", "metadata.id"), ("CPU", "spec.summary.processorModels"),
                    ("CORES", "spec.summary.cores"), ("GPU", "spec.summary.gpuModels"),
                    ("MEMORY GiB", "spec.summary.memoryGib"), ("SCANNED", "spec.scannedAt"))
CHANGE_COLUMNS = (("WHEN", "changedAt"), ("SCAN", "scanId"), ("CHANGES", "changes"))


def register(commands: Commands) -> None:
    inventory = verbs(commands.add_parser("inventory", help="hardware inventory read by discovery scans"))
    hardware = handles(inventory.add_parser(
        "hardware", help="nodes' processors, GPUs, memory, drives, NICs and firmware (one node: all of it)"),
        show_hardware)
    hardware.add_argument("node", nargs="?", help="one node's whole inventory")
    hardware.add_argument("--gpu-model", help="nodes with a GPU whose model contains this text (any case)")
    hardware.add_argument("--processor-model", help="nodes with a CPU whose model contains this text (any case)")
    hardware.add_argument("--min-memory", metavar="GIB", help="nodes with at least this much memory")
    hardware.add_argument("--firmware", metavar="NAME", help="nodes with a firmware entry of this name")
    hardware.add_argument("--below", metavar="VERSION", help="with --firmware: only where it is older than VERSION")
    hardware.add_argument("--limit", type=int)
    hardware.add_argument("--offset", type=int)
    changes = handles(inventory.add_parser("changes", help="what each re-scan found different, newest first"),
                      show_changes)
    changes.add_argument("node")


def _node(node: str) -> str:
    return urllib.parse.quote(node, safe="")


def show_hardware(run: Invocation) -> int:
    args = run.args
    if args.below and not args.firmware:
        raise UsageError("--below compares the version of the firmware named by --firmware",
                         "give both: --firmware BMC --below 2.10")
    if args.node:
        emit(run.client.get(f"{BASE}/{_node(args.node)}"), run.fmt)
        return 0
    emit(run.client.get(BASE, params={
        "gpuModel": args.gpu_model, "processorModel": args.processor_model, "minMemoryGiB": args.min_memory,
        "firmware": args.firmware, "firmwareBelow": args.below, "limit": args.limit, "offset": args.offset}),
        run.fmt, HARDWARE_COLUMNS)
    return 0


def show_changes(run: Invocation) -> int:
    answer = run.client.get(f"{BASE}/{_node(run.args.node)}/changes")
    if run.fmt == "table":
        for change_set in answer["items"]:
            change_set["changes"] = ", ".join(f"{c['action']} {c['category']} {c['id'].rsplit('/', 1)[-1]}"
                                              for c in change_set["changes"])
    emit(answer, run.fmt, CHANGE_COLUMNS)
    return 0
