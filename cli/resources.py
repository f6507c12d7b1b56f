"""`chamicore <resource> list|get|create|update|patch|delete`: one table of resources, one set of verbs.

Bodies come from `-f FILE` (JSON or YAML; `-` is stdin) and/or `--set path=value` (the value read as
JSON when it parses, else as a string: `--set nid=5 --set location.rack=R12 --set enabled=false`).
Enveloped resources take their spec (a file may hold the whole `{metadata, spec}` GET answer).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from cli.command import Commands, Invocation, handles, verbs
from cli.errors import UsageError
from cli.output import emit

PAGING = ("limit", "offset")


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    path: str
    help: str
    columns: tuple[tuple[str, str], ...]
    filters: tuple[str, ...] = ()
    envelope: bool = True
    id_field: str = "id"          # for plain (not enveloped) bodies: where the id goes on create
    can_put: bool = True
    paged: bool = True


ENVELOPE_ID = ("ID", "metadata.id")
KINDS = (
    Kind("components", "/hsm/v2/State/Components", "inventory components (nodes, BMCs, switches ...)",
         (ENVELOPE_ID, ("TYPE", "spec.type"), ("STATE", "spec.state"), ("ROLE", "spec.role"), ("NID", "spec.nid"),
          ("RACK", "spec.location.rack"), ("UNIT", "spec.location.unit"), ("PARENT", "spec.parentId"),
          ("ENABLED", "spec.enabled")),
         ("type", "state", "role", "rack", "parentId", "nid", "group", "sort", "after", "fields")),
    Kind("interfaces", "/hsm/v2/Inventory/EthernetInterfaces", "Ethernet interfaces (MACs and IPs)",
         (ENVELOPE_ID, ("COMPONENT", "spec.componentId"), ("MAC", "spec.macAddr"),
          ("IPS", "spec.ipAddrs[].ipAddress"), ("DESCRIPTION", "spec.description")),
         ("componentId", "mac", "sort")),
    Kind("groups", "/hsm/v2/groups", "groups of components",
         (ENVELOPE_ID, ("DESCRIPTION", "spec.description"), ("TAGS", "spec.tags"), ("MEMBERS", "spec.members")),
         ("tag", "sort")),
    Kind("partitions", "/hsm/v2/partitions", "partitions (exclusive groups)",
         (ENVELOPE_ID, ("DESCRIPTION", "spec.description"), ("TAGS", "spec.tags"), ("MEMBERS", "spec.members")),
         ("tag", "sort")),
    Kind("bootparams", "/boot/v1/bootparams", "boot parameters by MAC, component, group, role or site default",
         (ENVELOPE_ID, ("MAC", "spec.mac"), ("COMPONENT", "spec.componentId"), ("GROUP", "spec.group"),
          ("ROLE", "spec.role"), ("KERNEL", "spec.kernel")),
         ("mac", "componentId", "group", "role", "sort")),
    Kind("profiles", "/boot/v1/profiles", "boot profiles matched to nodes by selectors (most specific wins)",
         (ENVELOPE_ID, ("SELECTOR", "spec.selector"), ("KERNEL", "spec.kernel"), ("ARCHES", "spec.arches"),
          ("DESCRIPTION", "spec.description")),
         ("sort",)),
    Kind("payloads", "/cloud-init/payloads", "cloud-init payloads by component, group, role or site default",
         (ENVELOPE_ID, ("COMPONENT", "spec.componentId"), ("GROUP", "spec.group"), ("ROLE", "spec.role")),
         ("componentId", "group", "role", "sort")),
    Kind("credentials", "/auth/v1/credentials", "BMC and device credentials (secrets never shown)",
         (("ID", "id"), ("USERNAME", "username"), ("TAGS", "tags"), ("DESCRIPTION", "description")),
         ("tag",), envelope=False, can_put=False, paged=False),
    Kind("service-accounts", "/auth/v1/service-accounts", "API clients (client_credentials)",
         (("CLIENT ID", "clientId"), ("ROLES", "roles"), ("ENABLED", "enabled"), ("DESCRIPTION", "description")),
         envelope=False, id_field="clientId", can_put=False, paged=False),
    Kind("redfish-endpoints", "/hsm/v2/Inventory/RedfishEndpoints", "BMCs' Redfish services and their systems",
         (ENVELOPE_ID, ("ADDRESS", "spec.address"), ("CREDENTIAL", "spec.credentialId"),
          ("SYSTEMS", "spec.systems[].componentId"), ("DISCOVERED", "spec.discoveredAt")), can_put=False),
)
DISCOVERY_TARGETS = Kind("targets", "/discovery/v1/targets", "what discovery scans",
                         (ENVELOPE_ID, ("DRIVER", "spec.driver"), ("ADDRESS", "spec.address"),
                          ("CREDENTIAL", "spec.credentialId"), ("SCHEDULE S", "spec.scheduleS"),
                          ("ENABLED", "spec.enabled")), ("driver",), can_put=False)


def _flag(name: str) -> str:
    """componentId -> --component-id"""
    return "--" + "".join("-" + c.lower() if c.isupper() else c for c in name)


def add_body_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", help="JSON or YAML body (- for stdin)")
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                        help="a field of the spec (repeatable); VALUE is JSON when it parses, else a string")


def register(commands: Commands) -> None:
    for kind in KINDS:
        register_kind(commands, kind)


def register_kind(commands: Commands, kind: Kind) -> None:
    """The kind's verbs as sub-commands of `chamicore <kind.name>`."""
    noun = verbs(commands.add_parser(kind.name, help=kind.help))

    def on(verb: str, handler, **kwargs) -> argparse.ArgumentParser:
        return handles(noun.add_parser(verb, **kwargs), lambda run: handler(run, kind))

    listing = on("list", list_items, help=f"list {kind.name}")
    for name in kind.filters:
        listing.add_argument(_flag(name), dest=f"q_{name}", metavar="VALUE",
                             help=f"filter on {name} (comma = OR)" if name not in ("sort", "after", "fields") else name)
    if kind.paged:
        listing.add_argument("--limit", type=int, dest="q_limit")
        listing.add_argument("--offset", type=int, dest="q_offset")
    on("get", get_item, help="show one").add_argument("id")
    create = on("create", create_item, help="create one")
    create.add_argument("--id", help="its id (default: generated)")
    add_body_options(create)
    update = on("update", update_item if kind.can_put else patch_item,
                help="replace one (sends If-Match from a fresh GET)" if kind.can_put else
                "change the given fields (this resource has no full replace: same as patch)")
    update.add_argument("id")
    add_body_options(update)
    patch = on("patch", patch_item, help="change some fields (JSON merge patch)")
    patch.add_argument("id")
    add_body_options(patch)
    on("delete", delete_item, help="delete one").add_argument("id")


def read_document(path: str | None) -> Any:
    if path is None:
        return None
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        return yaml.safe_load(text)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is neither JSON nor YAML: {exc}") from None


def apply_sets(target: dict, sets: list[str]) -> dict:
    for item in sets:
        path, sep, raw = item.partition("=")
        if not sep or not path:
            raise UsageError(f"--set {item!r}: expected PATH=VALUE", "for example --set location.rack=R12")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        node = target
        keys = path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise UsageError(f"--set {path}: {key} is not an object")
        node[keys[-1]] = value
    return target


def _spec_of(document: Any) -> tuple[dict, dict]:
    """(metadata, spec) from a file that holds either a whole resource or just its spec."""
    if document is None:
        return {}, {}
    if not isinstance(document, dict):
        raise UsageError("the body must be an object")
    if "spec" in document:
        metadata = document.get("metadata") or {}
        return {k: v for k, v in metadata.items() if k == "id"}, dict(document["spec"] or {})
    return {}, document


def body_of(kind: Kind, args, *, with_id: bool = False) -> dict:
    metadata, spec = _spec_of(read_document(args.file)) if kind.envelope else ({}, read_document(args.file) or {})
    spec = apply_sets(spec, args.set)
    if with_id and args.id:
        if kind.envelope:
            metadata["id"] = args.id
        else:
            spec[kind.id_field] = args.id
    if kind.envelope:
        return {"metadata": metadata, "spec": spec} if metadata else {"spec": spec}
    return spec


def item_path(kind: Kind, resource_id: str) -> str:
    return f"{kind.path}/{urllib.parse.quote(resource_id, safe='')}"


def list_items(run: Invocation, kind: Kind) -> int:
    params = {k[2:]: v for k, v in vars(run.args).items() if k.startswith("q_") and v is not None}
    emit(run.client.get(kind.path, params), run.fmt, kind.columns)
    return 0


def get_item(run: Invocation, kind: Kind) -> int:
    emit(run.client.get(item_path(kind, run.args.id)), run.fmt, kind.columns)
    return 0


def create_item(run: Invocation, kind: Kind) -> int:
    emit(run.client.request("POST", kind.path, body_of(kind, run.args, with_id=True)), run.fmt, kind.columns)
    return 0


def update_item(run: Invocation, kind: Kind) -> int:
    path = item_path(kind, run.args.id)
    _, etag = run.client.request_with_etag(path)
    answer = run.client.request("PUT", path, body_of(kind, run.args), headers={"If-Match": etag} if etag else None)
    emit(answer, run.fmt, kind.columns)
    return 0


def patch_item(run: Invocation, kind: Kind) -> int:
    body = body_of(kind, run.args)
    if body in ({"spec": {}}, {}):
        raise UsageError("nothing to change", "give -f FILE and/or --set PATH=VALUE")
    content_type = "application/merge-patch+json" if kind.envelope else "application/json"
    emit(run.client.request("PATCH", item_path(kind, run.args.id), body, content_type=content_type), run.fmt,
         kind.columns)
    return 0


def delete_item(run: Invocation, kind: Kind) -> int:
    run.client.request("DELETE", item_path(kind, run.args.id))
    print(f"deleted {kind.name[:-1] if kind.name.endswith('s') else kind.name} {run.args.id}", file=sys.stderr)
    return 0
