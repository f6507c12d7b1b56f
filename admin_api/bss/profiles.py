"""/boot/v1/profiles: boot profiles matched to nodes by selectors (core/profiles.py).

A profile bundles what a node boots (kernel, initrd and command line, or per
architecture), optionally its own iPXE script, and cloud-init documents; its script,
cmdline and documents are templates (core/templates.py, checked here when written,
rendered per node by the boot path).  Where it stands
among the boot parameter scopes (bss.boot_params) on the boot path:

    MAC > component > NID > profile (the most specific that matches) > group > role > site

so a per-node entry still pins one node, and a profile beats the broad scopes.
Cloud-init payloads alike: component > profile > group > role > site, document by
document (a profile without user-data leaves the node's group/role/site user-data).

Two profiles that could tie for some node are refused when written (409), checked
against every profile under a table lock, so two concurrent writers cannot both pass.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.bss.bootparams import check_text, check_uri
from admin_api.collection import Collection, write_row
from admin_api.http import field_problem, json_response, problem
from admin_api.resources import metadata, path_key
from admin_api.routing import PAGING, Router, sort_param
from admin_api.smd.schemas import Id
from core import arches, events, profiles, templates
from core.envelope import Resource

KIND, API_VERSION = "BootProfile", "boot/v1"
BASE = "/boot/v1/profiles"
router = Router("profiles")
COLUMNS = ("id, description, selector, specificity, kernel, initrd, cmdline, arches, user_data, meta_data, "
           "vendor_data, script, created_at, updated_at")
Uri = Annotated[str, msgspec.Meta(max_length=2048)]
Document = Annotated[str, msgspec.Meta(max_length=65_536)]
Script = Annotated[str, msgspec.Meta(max_length=templates.SCRIPT_MAX)]
LabelKey = Annotated[str, msgspec.Meta(max_length=63)]
LabelValue = Annotated[str, msgspec.Meta(max_length=128)]


class Selector(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """Terms a node must all satisfy (none: every node).  See core/profiles.py for specificity."""

    mac: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    component_id: Id | None = None
    arch: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    type: Annotated[str, msgspec.Meta(max_length=63)] | None = None
    role: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    sub_role: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    groups: Annotated[list[Id], msgspec.Meta(max_length=profiles.GROUPS_MAX)] | None = None
    labels: dict[LabelKey, LabelValue] | None = None


class ArchBoot(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    kernel: Uri
    initrd: Uri = ""
    ipxe: Uri = ""  # the iPXE binary for this architecture, for the DHCP server's boot file (not served here)


class ProfileSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    description: Annotated[str, msgspec.Meta(max_length=1024)] = ""
    selector: Selector = msgspec.field(default_factory=Selector)
    kernel: Uri = ""
    initrd: Uri = ""
    cmdline: Annotated[str, msgspec.Meta(max_length=4096)] = ""
    arches: Annotated[dict[Annotated[str, msgspec.Meta(max_length=32)], ArchBoot],
                      msgspec.Meta(max_length=len(arches.IPXE_ARCHES))] = msgspec.field(default_factory=dict)
    user_data: Document | None = None
    meta_data: dict[str, Any] | None = None
    vendor_data: Document | None = None
    # The whole iPXE script instead of the boot path's kernel/initrd/boot lines; it sees kernel, initrd, params,
    # baseUrl, seedUrl and the node's values, and `goto retry` waits and asks again (core/templates.py).
    script: Script | None = None


def selector_dict(spec: ProfileSpec) -> dict[str, Any]:
    return profiles.check_selector(msgspec.to_builtins(spec.selector))


def checked_arches(spec: ProfileSpec) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, boot in spec.arches.items():
        arch = arches.canonical(name)
        path = f"$.spec.arches.{name}"
        if arch is None:
            raise field_problem(path, f"unknown architecture; one of {', '.join(arches.IPXE_ARCHES)}")
        if arch in out:
            raise field_problem(path, f"names {arch} again")
        check_uri(boot.kernel, f"{path}.kernel", True)
        check_uri(boot.initrd, f"{path}.initrd", False)
        check_uri(boot.ipxe, f"{path}.ipxe", False)
        out[arch] = msgspec.to_builtins(boot)
    return out


class Profiles(Collection):
    base, table, select, kind, api_version = BASE, "bss.profiles", f"SELECT {COLUMNS} FROM bss.profiles", KIND, \
        API_VERSION
    noun, names, spec, id_prefix = "profile", ("profile", "profiles"), ProfileSpec, "profile"
    domain, events_as, read_scope, write_scope = "bss", "profiles", "read:bss", "write:bss"
    summaries = {"list": "List boot profiles", "create": "Create a boot profile", "get": "Get a boot profile",
                 "replace": "Replace a boot profile (If-Match required)",
                 "patch": "Change a boot profile (JSON merge patch)", "delete": "Delete a boot profile"}
    sortable = {"id": "id", "specificity": "specificity", "createdAt": "created_at", "updatedAt": "updated_at"}
    list_params = (*PAGING, sort_param(sortable))

    def to_resource(self, row) -> Resource[ProfileSpec]:
        spec = msgspec.convert({
            "description": row["description"], "selector": row["selector"], "kernel": row["kernel"],
            "initrd": row["initrd"], "cmdline": row["cmdline"], "arches": row["arches"],
            "userData": row["user_data"], "metaData": row["meta_data"], "vendorData": row["vendor_data"],
            "script": row["script"]},
            ProfileSpec)
        return Resource(kind=KIND, api_version=API_VERSION, metadata=metadata(row["id"], row), spec=spec)

    async def insert(self, request: Request, conn, key: str, prepared: ProfileSpec):
        return await self.write(conn, key, prepared, create=True)

    async def update(self, request: Request, conn, key: str, spec: ProfileSpec, patch: dict | None):
        return await self.write(conn, key, spec, create=False)

    async def write(self, conn, profile_id: str, spec: ProfileSpec, *, create: bool):
        selector = selector_dict(spec)
        check_uri(spec.kernel, "$.spec.kernel", False)
        check_uri(spec.initrd, "$.spec.initrd", False)
        per_arch = checked_arches(spec)
        if templates.check(spec.cmdline, "$.spec.cmdline") is None:
            check_text(spec.cmdline, "$.spec.cmdline")  # a template's output is checked per node, when rendered
        templates.check(spec.user_data or "", "$.spec.userData")
        templates.check(spec.vendor_data or "", "$.spec.vendorData")
        if spec.script is not None:
            templates.check_script(spec.script, "$.spec.script")
        # Serialise profile writes: the tie check must see every profile, including one being written now.
        await conn.execute("LOCK TABLE bss.profiles IN SHARE ROW EXCLUSIVE MODE")
        others = await conn.fetch("SELECT id, selector FROM bss.profiles WHERE id <> $1", profile_id)
        tied = profiles.ties(selector, [(row["id"], row["selector"]) for row in others])
        if tied:
            raise problem(409, f"this selector has the specificity of {', '.join(map(repr, tied[:5]))} and some node "
                               f"could match both, so neither would win; add a term to one of them, or change one")
        values = {"description": spec.description, "selector": selector,
                  "specificity": profiles.specificity(selector), "kernel": spec.kernel, "initrd": spec.initrd,
                  "cmdline": spec.cmdline, "arches": per_arch, "user_data": spec.user_data,
                  "meta_data": spec.meta_data, "vendor_data": spec.vendor_data, "script": spec.script}
        row = await write_row(conn, self.table, COLUMNS, profile_id, values, create=create)
        await events.emit(conn, self.domain, self.events_as, "created" if create else "updated", profile_id,
                          {"selector": selector, "specificity": values["specificity"]})
        return row


PROFILES = Profiles()
PROFILES.routes(router)


# -- which profile a node gets, and why ------------------------------------------------------------------------

NODE = """
SELECT c.id, c.type, c.role, c.sub_role, c.arch, c.enabled, c.labels, c.nid,
       coalesce((SELECT array_agg(m.group_name ORDER BY m.group_name) FROM smd.group_members m
                 WHERE m.component_id = c.id), '{}') AS groups,
       coalesce((SELECT array_agg(i.mac ORDER BY i.created_at, i.mac) FROM smd.ethernet_interfaces i
                 WHERE i.component_id = c.id), '{}') AS macs
FROM smd.components c WHERE c.id = $1
"""
# The boot parameter entries that outrank any profile: the node's own (MAC, component, NID).
PINNED = """
SELECT id, scope FROM bss.boot_params
WHERE component_id = $1 OR (nid IS NOT NULL AND nid = $2) OR mac = ANY($3::text[])
ORDER BY (mac IS NULL), (component_id IS NULL), id
"""


class Candidate(msgspec.Struct, rename="camel"):
    id: str
    specificity: int
    matches: bool
    unmet: list[str]  # the selector terms this node does not satisfy


class ProfileMatch(msgspec.Struct, rename="camel"):
    kind: str
    component_id: str
    profile: str | None  # the profile that wins, or None
    specificity: int | None
    matched_by: list[str]  # the winner's selector terms, all satisfied by this node
    pinned_by: list[str]  # the node's own boot parameter entries (MAC, component, NID), which beat any profile
    precedence: str
    candidates: list[Candidate]  # every profile, most specific first


def _terms(selector: dict) -> list[str]:
    out: list[str] = []
    for name, value in selector.items():
        if name == "groups":
            out.extend(f"groups: in {g!r}" for g in value)
        elif name == "labels":
            out.extend(f"labels.{k} = {v!r}" for k, v in value.items())
        else:
            out.append(f"{name} = {value!r}")
    return out


@router.get("/boot/v1/effective/{id}/profile", scope="read:bss", response=ProfileMatch,
            summary="Which boot profile a node gets and why: every profile's selector checked against the node")
async def explain_profile(request: Request) -> Response:
    component_id = path_key(request, "component")
    async with request.app.state.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                          readonly=True):
        node = await conn.fetchrow(NODE, component_id)
        if node is None:
            raise problem(404, f"no component {component_id!r}")
        rows = await conn.fetch(f"SELECT {COLUMNS} FROM bss.profiles")
        pinned = await conn.fetch(PINNED, component_id, node["nid"], list(node["macs"]))
    facts = profiles.NodeFacts(node["id"], node["macs"], node["arch"], node["type"], node["role"], node["sub_role"],
                               node["groups"], node["labels"])
    table = profiles.ProfileTable(rows)
    winner = table.match(facts)
    candidates = [Candidate(id=row["id"], specificity=profiles.specificity(row["selector"]),
                            matches=not (unmet := profiles.unmet(row["selector"], facts)), unmet=unmet)
                  for row in table.rows]
    return json_response(ProfileMatch(
        kind="ProfileMatch", component_id=component_id, profile=winner["id"] if winner else None,
        specificity=profiles.specificity(winner["selector"]) if winner else None,
        matched_by=_terms(winner["selector"]) if winner else [], pinned_by=[row["scope"] for row in pinned],
        precedence="MAC > component > NID boot parameters > profile (most specific) > group > role > site",
        candidates=candidates))
