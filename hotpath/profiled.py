"""Boot profiles (core/profiles.py) as the answer builder uses them.

A profile enters a node's resolution as one more row: in the boot parameter chain
after the node's own entries (MAC, component, NID) and before group, role and site;
in the cloud-init payload chain after the component's own payload.  Per-architecture
answers hang off the node's entry (BootEntry.arches), one entry per architecture the
profile names; only the node's own architecture is rendered ahead, the others on first
request (an x86 node asked for arm64 is rare, and the index stays small: they share the node's
variables, so `{{arch}}` is the node's recorded architecture in every one of them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core import arches, templates
from core.profiles import NodeFacts, ProfileTable
from hotpath._render import VARIABLE_NAMES

_SIMPLE = re.compile(r"(?:[^{]|\{(?![{%#])|\{\{\s*(?:" + "|".join(VARIABLE_NAMES + ("mac",)) + r")\s*\}\})*")
ANY_ARCH = "*"  # key of BootEntry.arches: the profile's kernel for any architecture it does not name
MISSING = ""  # key of the wait message (with `{arch}` in it) for an architecture the profile has no answer for


class BootProfile:
    """One profile, prepared for a load: its rows for the two chains, made once and shared by its nodes."""

    __slots__ = ("id", "boot_row", "payload_row", "arches", "missing", "cmdline", "user_data", "vendor_data",
                 "script", "templated")

    def __init__(self, row: Mapping[str, Any]) -> None:
        self.id = row["id"]
        self.arches: dict[str, dict] = row["arches"] or {}
        self.boot_row: dict | None = None
        if row["kernel"] or self.arches or row["script"] is not None:
            self.boot_row = {"mac": None, "component_id": None, "nid": None, "group_name": None, "role": None,
                             "kernel": row["kernel"], "initrd": row["initrd"], "cmdline": row["cmdline"],
                             "profile": self}
        self.payload_row: dict | None = None
        if any(row[name] is not None for name in ("user_data", "meta_data", "vendor_data")):
            self.payload_row = {"component_id": None, "group_name": None, "role": None, "description": None,
                                "user_data": row["user_data"], "meta_data": row["meta_data"],
                                "vendor_data": row["vendor_data"]}
        # Templates compiled once per load (core/templates.py): a Template, plain text, or "!why" it is broken.
        # A cmdline whose only markers are plain `{{name}}` of the renderer's node variables is filled by the
        # renderer itself, as boot parameters are (same result, each value checked; no Jinja per node).
        cmdline = row["cmdline"]
        self.cmdline = cmdline if _SIMPLE.fullmatch(cmdline) else templates.compile_stored(cmdline)
        self.user_data = templates.compile_stored(row["user_data"])
        self.vendor_data = templates.compile_stored(row["vendor_data"])
        # The iPXE script the profile's nodes run instead of the boot path's own (core/templates.py, "script").
        self.script = templates.compile_stored(row["script"], script=True)
        if isinstance(self.script, str) and not self.script.startswith("!"):
            why = templates.script_problem(self.script)
            self.script = self.script if why is None else "!" + why
        self.templated = any(not isinstance(t, str | None) or (isinstance(t, str) and t.startswith("!"))
                             for t in (self.cmdline, self.user_data, self.vendor_data, self.script))
        # The wait message of an architecture with no answer; the boot path fills in {node} and {arch}.
        self.missing = (f"node {{node}}: profile {self.id} has no kernel for architecture {{arch}} "
                        f"(it has {', '.join(sorted(self.arches))})")



class Profiles:
    """The profiles of one load and the node each one wins."""

    def __init__(self, rows=()) -> None:
        self.table = ProfileTable(rows)
        self.prepared = {row["id"]: BootProfile(row) for row in self.table.rows}

    def for_node(self, node, groups: tuple, role: str) -> BootProfile | None:
        if not self.table:
            return None
        row = self.table.match(NodeFacts(node["id"], node["macs"], node["arch"], node["type"], role,
                                         node["sub_role"], groups, node["labels"]))
        return None if row is None else self.prepared[row["id"]]


def pinned(row) -> bool:
    """A boot parameter row scoped to the node itself (MAC, component, NID): it beats any profile."""
    return row["mac"] is not None or row["component_id"] is not None or row.get("nid") is not None


def boot_chain(chain: tuple, profile: BootProfile | None) -> tuple:
    if profile is None or profile.boot_row is None or (chain and pinned(chain[0])):
        return chain
    return (profile.boot_row, *chain)


def payload_chain(chain: tuple, profile: BootProfile | None) -> tuple:
    if profile is None or profile.payload_row is None:
        return chain
    at = 1 if chain and chain[0]["component_id"] is not None else 0
    return (*chain[:at], profile.payload_row, *chain[at:])


def node_arch(values: tuple) -> str:
    return arches.node_arch(values[5])


def node_context(node, groups: tuple, role: str, hostname: str, profile: BootProfile) -> dict:
    """What a template of this node's profile sees (core/templates.VARIABLES), and nothing of another node."""
    return {"id": node["id"], "nid": node["nid"], "mac": node["macs"][0] if node["macs"] else "",
            "arch": arches.node_arch(node["arch"]), "role": role, "subRole": node["sub_role"], "type": node["type"],
            "hostname": hostname, "groups": list(groups), "labels": dict(node["labels"] or {}),
            "location": {"rack": node["rack"], "unit": node["unit"], "slot": node["slot"],
                         "subSlot": node["sub_slot"]}, "profile": profile.id}


def rendered(profile: BootProfile, what: str, compiled, context: dict | None) -> tuple[str | None, str | None]:
    """(text, None) or (None, why this node cannot have it): a template rendered for the node, or plain text."""
    if compiled is None or (isinstance(compiled, str) and not compiled.startswith("!")):
        return compiled, None
    if isinstance(compiled, str):
        why = templates.plain(compiled[1:300]) if what == "script" else "the template does not compile"
        return None, f"profile {profile.id} {what}: {why} (fix it through the admin API)"
    if context is None:
        return None, f"profile {profile.id} {what}: no node to render it for"
    text, problem = templates.render(compiled, context)
    return text, None if problem is None else f"profile {profile.id} {what} template failed: {problem}"


def rendered_script(profile: BootProfile, context: dict | None, kernel: bool, initrd: bool) -> tuple[str | None,
                                                                                                 str | None]:
    """The profile's iPXE script for one node, MAC and architecture, its slots left for the renderer
    (hotpath/_render.pyx), or (None, why the node must wait).  `kernel` and `initrd` are "" for an answer that
    has none (a template may test them), their slot otherwise."""
    slots = {**templates.SCRIPT_SLOTS}
    for name, present in (("kernel", kernel), ("initrd", initrd)):
        if not present:
            slots[name] = ""
    text, problem = rendered(profile, "script", profile.script, None if context is None else {**context, **slots})
    if text is not None and not isinstance(profile.script, str) and (why := templates.script_problem(text)):
        return None, f"profile {profile.id} script: {templates.plain(why)}"
    return text, problem
