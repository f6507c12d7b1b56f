"""The tools: what each one is for, the input it takes, and the REST operations it runs.

A tool is a translation of one or a few native operations (admin_api/native.py
runs them in-process): it never reads or writes the database itself.  Its
scopes are those of the operations it names, its list filters are the query
parameters those routes declare, and its bodies are the routes' own msgspec
types, so the schemas and the rules are written once, in the REST code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec

from admin_api import bootpath
from admin_api.bss.bootparams import BootParamsSpec
from admin_api.bss.profiles import ProfileSpec
from admin_api.cloudinit.payloads import PayloadSpec
from admin_api.discovery.targets import TargetSpec
from admin_api.inprocess import Native, segment
from admin_api.nodes.schemas import NodeProvision
from admin_api.routing import Router
from core.config import Config
from core.power import DESTRUCTIVE as POWER_DESTRUCTIVE
from core.power import Operation
from core.problems import ProblemError

Progress = Callable[[float, float | None, str | None], Awaitable[None]]
ID = {"type": "string", "minLength": 1, "maxLength": 255, "description": "the id"}
TRANSITION_DONE = ("completed", "aborted")


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One tool call: its validated input, the REST operations it may run, and a way to report progress."""

    args: dict[str, Any]
    native: Native
    config: Config
    progress: Progress


Run = Callable[[Call], Awaitable[dict[str, Any]]]


@dataclasses.dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    run: Run
    operations: tuple[tuple[str, str], ...]  # (method, path) of the REST operations it runs: its scopes are theirs
    write: bool = False
    properties: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    required: tuple[str, ...] = ()
    query_of: tuple[str, str] | None = None  # a list route whose query parameters are this tool's filters
    types: tuple[type, ...] = ()  # msgspec types the properties refer to (#/$defs/<name>)
    consequence: Callable[[dict[str, Any]], str | None] | None = None  # destructive: what it would do
    scopes: tuple[str, ...] = ()  # besides its operations' (a tool that asks the boot path, not a route)
    targets: Callable[[dict[str, Any]], list[str]] = lambda args: []


@dataclasses.dataclass(frozen=True, slots=True)
class Built:
    """A tool with what the routes tell about it: its full input schema and its scopes."""

    tool: Tool
    input_schema: dict[str, Any]
    scopes: tuple[str, ...]


# -- runners shared by many tools ------------------------------------------------------------


def listing(path: str) -> Run:
    async def run(call: Call) -> dict[str, Any]:
        return as_object(await call.native.json("GET", path, query=call.args))

    return run


def getting(base: str, key: str = "id", suffix: str = "") -> Run:
    async def run(call: Call) -> dict[str, Any]:
        return as_object(await call.native.json("GET", f"{base}/{segment(call.args[key])}{suffix}"))

    return run


def deleting(base: str, key: str = "id") -> Run:
    async def run(call: Call) -> dict[str, Any]:
        await call.native.request("DELETE", f"{base}/{segment(call.args[key])}")
        return {"deleted": call.args[key]}

    return run


def as_object(value: Any) -> dict[str, Any]:
    """Structured tool output is an object: a bare list becomes {"items": [...]}."""
    return value if isinstance(value, dict) else {"items": value}


def key_target(key: str = "id") -> Callable[[dict[str, Any]], list[str]]:
    return lambda args: [str(args[key])] if args.get(key) is not None else []


# -- cluster.health_summary ----------------------------------------------------------------


async def health_summary(call: Call) -> dict[str, Any]:
    native, minutes = call.native, call.args.get("minutes", 10)
    readiness = await native.request("GET", "/readiness", ok=(503,))
    version = await native.json("GET", "/version")
    try:
        boot = await bootpath.fetch(call.config, "/readiness", (), preview=False)
        boot_path: dict[str, Any] = {"reachable": True, "status": boot.status,
                                     **as_object(msgspec.json.decode(boot.body))}
    except ProblemError as exc:  # a summary says what it could not see, and goes on
        boot_path = {"reachable": False, "detail": exc.problem.detail}
    except msgspec.DecodeError:
        boot_path = {"reachable": True, "status": boot.status, "detail": "its /readiness answer is not JSON"}
    transitions = (await native.json("GET", "/power/v1/transitions", query={"limit": 50}))["items"]
    failed_transitions = [t for t in transitions if t.get("counts", {}).get("failed")]
    return {
        "adminApi": {"readiness": readiness.json(), "version": version},
        "bootPath": boot_path,  # index size (nodes, macs), change feed state and last lag
        "bootActivity": await native.json("GET", "/boot/v1/telemetry/summary", query={"minutes": minutes}),
        "syncDaemons": as_object(await native.json("GET", "/sync/v1/status")),
        "failedScans": (await native.json("GET", "/discovery/v1/scans",
                                          query={"state": "failed", "limit": 10}))["items"],
        "activeTransitions": [t for t in transitions if t["state"] not in TRANSITION_DONE],
        "failedTransitions": failed_transitions[:10],
        "nodes": (await native.json("GET", "/hsm/v2/State/Components",
                                    query={"type": "Node", "limit": 1, "fields": "type"}))["metadata"]["total"],
    }


# -- boot.script.preview -------------------------------------------------------------------


async def boot_script_preview(call: Call) -> dict[str, Any]:
    query = [(name, str(call.args[key])) for key, name in (("mac", "mac"), ("componentId", "name"), ("nid", "nid"))
             if call.args.get(key) is not None]
    if len(query) != 1:
        raise ProblemError(400, "give exactly one of mac, componentId or nid")
    answer = await bootpath.fetch(call.config, "/boot/v1/bootscript", query, preview=True)
    shown = {bootpath.SEED_SCOPE, "*"} & call.native.caller.scopes  # "*": dev mode
    body = answer.body if shown else bootpath.hide_seed_tokens(answer.body)
    text = body.decode(errors="replace")
    if answer.status >= 400:
        raise ProblemError(answer.status, f"the boot path answered {answer.status}: {text[:500]}")
    return {"status": answer.status, "contentType": answer.content_type, "script": text}


# -- upserts of scoped entries (boot parameters, cloud-init payloads) ------------------------


def upserting(base: str, scope_fields: tuple[str, ...]) -> Run:
    """Create or replace the entry with this id, or else the one holding the same scope (mac, componentId,
    group, role or none: the site default): a GET, then the REST create or the REST replace (If-Match).
    A resource with no scope fields (a profile) is found by its id alone: its tool requires one."""
    async def run(call: Call) -> dict[str, Any]:
        native, spec, entry_id = call.native, call.args["spec"], call.args.get("id")
        current = None
        if entry_id is not None:
            answer = await native.request("GET", f"{base}/{segment(entry_id)}", ok=(404,))
            current = answer if answer.status == 200 else None
        else:
            given = {name: spec[name] for name in scope_fields if spec.get(name) is not None}
            found = (await native.json("GET", base, query={**given, "limit": 10_000}))["items"]
            same = [item for item in found if all((item["spec"].get(name) is None) == (name not in given)
                                                  for name in scope_fields)]
            if same:
                entry_id = same[0]["metadata"]["id"]
                current = await native.request("GET", f"{base}/{segment(entry_id)}")
        if current is None or entry_id is None:
            body = {"metadata": {"id": entry_id} if entry_id else {}, "spec": spec}
            return {"created": True, "resource": await native.json("POST", base, body=body)}
        replaced = await native.json("PUT", f"{base}/{segment(entry_id)}", body={"metadata": {"id": entry_id},
                                                                                  "spec": spec},
                                     headers={"If-Match": current.headers.get("etag", "")})
        return {"created": False, "resource": replaced}

    return run


def scoped_targets(args: dict[str, Any]) -> list[str]:
    spec = args.get("spec") or {}
    named = [str(spec[k]) for k in ("mac", "componentId", "nid", "group", "role") if spec.get(k) is not None]
    return ([str(args["id"])] if args.get("id") is not None else []) + named


# -- groups ------------------------------------------------------------------------------------


async def member_add(call: Call) -> dict[str, Any]:
    path = f"/hsm/v2/groups/{segment(call.args['group'])}/members"
    return as_object(await call.native.json("POST", path, body={"id": call.args["id"]}))


async def member_remove(call: Call) -> dict[str, Any]:
    await call.native.request("DELETE", f"/hsm/v2/groups/{segment(call.args['group'])}/members/"
                                        f"{segment(call.args['id'])}")
    return {"removed": call.args["id"], "group": call.args["group"]}


# -- power -------------------------------------------------------------------------------------


async def transition_create(call: Call) -> dict[str, Any]:
    body = {k: call.args[k] for k in ("operation", "nodes", "groups", "dryRun") if k in call.args}
    return as_object(await call.native.json("POST", "/power/v1/transitions", body=body))


def transition_consequence(args: dict[str, Any]) -> str | None:
    if args.get("operation") not in POWER_DESTRUCTIVE or args.get("dryRun"):
        return None
    named = ", ".join([*args.get("nodes", []), *(f"group {g}" for g in args.get("groups", []))]) or "no node"
    return f"run {args['operation']} on {named}, taking power away from or interrupting what runs there"


async def transition_abort(call: Call) -> dict[str, Any]:
    await call.native.request("DELETE", f"/power/v1/transitions/{segment(call.args['id'])}")
    return as_object(await call.native.json("GET", f"/power/v1/transitions/{segment(call.args['id'])}"))


async def transition_wait(call: Call) -> dict[str, Any]:
    """Follow a transition until it is done or the time is up, reporting tasks done out of total."""
    path = f"/power/v1/transitions/{segment(call.args['id'])}"
    deadline = time.monotonic() + call.args.get("timeoutS", 120)
    delay, reported = 0.2, None
    while True:
        transition = await call.native.json("GET", path)
        counts = transition.get("counts", {})
        done = sum(counts.get(state, 0) for state in ("succeeded", "failed", "aborted"))
        total = counts.get("total", 0)
        if (done, transition["state"]) != reported:
            reported = (done, transition["state"])
            await call.progress(done, total, f"{transition['state']}: {done} of {total} tasks done "
                                             f"({', '.join(f'{k} {v}' for k, v in counts.items() if k != 'total')})")
        finished = transition["state"] in TRANSITION_DONE
        if finished or time.monotonic() >= deadline:
            return {"done": finished, "transition": transition}
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 2.0)


# -- discovery -----------------------------------------------------------------------------------


async def target_create(call: Call) -> dict[str, Any]:
    body = {"metadata": {"id": call.args["id"]} if call.args.get("id") else {}, "spec": call.args["spec"]}
    return as_object(await call.native.json("POST", "/discovery/v1/targets", body=body))


async def target_update(call: Call) -> dict[str, Any]:
    return as_object(await call.native.json("PATCH", f"/discovery/v1/targets/{segment(call.args['id'])}",
                                            body={"spec": call.args["spec"]},
                                            content_type="application/merge-patch+json"))


async def target_scan(call: Call) -> dict[str, Any]:
    return as_object(await call.native.json("POST", "/discovery/v1/scans", body={"targets": [call.args["id"]]}))


async def scan_trigger(call: Call) -> dict[str, Any]:
    return as_object(await call.native.json("POST", "/discovery/v1/scans",
                                            body={"targets": call.args.get("targets", [])}))


async def scan_delete(call: Call) -> dict[str, Any]:
    await call.native.request("POST", f"/discovery/v1/scans/{segment(call.args['id'])}/cancel")
    return as_object(await call.native.json("GET", f"/discovery/v1/scans/{segment(call.args['id'])}"))


# -- nodes.provision -------------------------------------------------------------------------------


async def provision(call: Call) -> dict[str, Any]:
    query = {"dryRun": "true"} if call.args.get("dryRun") else {}
    return as_object(await call.native.json("POST", f"/hsm/v2/nodes/{segment(call.args['id'])}/provision",
                                            body=call.args["spec"], query=query))


# -- the catalogue -----------------------------------------------------------------------------------

def _ref(spec_type: type) -> dict[str, str]:
    return {"$ref": f"#/$defs/{spec_type.__name__}"}


def _deleted(noun: str, key: str = "id") -> Callable[[dict[str, Any]], str]:
    return lambda args: f"delete {noun} {args.get(key)!r}"


GET_DESC = "Returns the resource as the REST API does (kind, apiVersion, metadata, spec)."
LIST_DESC = "Filters are the REST route's query parameters (comma = OR). Returns {metadata{total,limit,offset}, items}."

TOOLS: tuple[Tool, ...] = (
    Tool("cluster.health_summary",
         "One look at the cluster's health: admin API readiness and version, the boot path (index size, change "
         "feed state and lag), boot activity in the last `minutes`, the sync daemons, failed discovery scans, "
         "active and failed power transitions, and the node count. Start here.",
         health_summary, (("GET", "/readiness"), ("GET", "/version"), ("GET", "/sync/v1/status"),
                          ("GET", "/boot/v1/telemetry/summary"), ("GET", "/discovery/v1/scans"),
                          ("GET", "/power/v1/transitions"), ("GET", "/hsm/v2/State/Components")),
         properties={"minutes": {"type": "integer", "minimum": 1, "maximum": 1440, "default": 10,
                                 "description": "the window for boot activity"}}),
    Tool("smd.components.list", "List inventory components (nodes, BMCs, switches...). " + LIST_DESC,
         listing("/hsm/v2/State/Components"), (("GET", "/hsm/v2/State/Components"),),
         query_of=("GET", "/hsm/v2/State/Components")),
    Tool("smd.components.get", "Get one component with its state, role, NID, location and interfaces. " + GET_DESC,
         getting("/hsm/v2/State/Components"), (("GET", "/hsm/v2/State/Components/{id}"),),
         properties={"id": ID}, required=("id",), targets=key_target()),
    Tool("smd.groups.list", "List groups of components (name, description, tags, members). " + LIST_DESC,
         listing("/hsm/v2/groups"), (("GET", "/hsm/v2/groups"),), query_of=("GET", "/hsm/v2/groups")),
    Tool("smd.groups.get", "Get one group and its members. " + GET_DESC,
         getting("/hsm/v2/groups", "name"), (("GET", "/hsm/v2/groups/{name}"),),
         properties={"name": ID}, required=("name",), targets=key_target("name")),
    Tool("smd.hardware.list", "Nodes' hardware inventories as discovery read them from their BMCs (processors, GPUs, "
         "memory, drives, NICs, firmware), filtered by processorModel or gpuModel (substring), minMemoryGiB, "
         "componentId, or firmware=NAME with firmwareBelow=VERSION (older than). " + LIST_DESC,
         listing("/hsm/v2/Inventory/Hardware"), (("GET", "/hsm/v2/Inventory/Hardware"),),
         query_of=("GET", "/hsm/v2/Inventory/Hardware")),
    Tool("smd.hardware.changes", "What each re-scan found different in one node's hardware, newest first.",
         getting("/hsm/v2/Inventory/Hardware", suffix="/changes"), (("GET", "/hsm/v2/Inventory/Hardware/{id}/changes"),),
         properties={"id": ID}, required=("id",), targets=key_target()),
    Tool("bss.bootparams.list", "List boot parameters (kernel, initrd, cmdline) by scope: mac, componentId, group, "
         "role, or none (the site default). " + LIST_DESC,
         listing("/boot/v1/bootparams"), (("GET", "/boot/v1/bootparams"),), query_of=("GET", "/boot/v1/bootparams")),
    Tool("bss.bootparams.get", "Get one boot parameters entry. " + GET_DESC,
         getting("/boot/v1/bootparams"), (("GET", "/boot/v1/bootparams/{id}"),),
         properties={"id": ID}, required=("id",), targets=key_target()),
    Tool("cloudinit.payloads.list", "List cloud-init payloads (userData, metaData, vendorData) by scope: componentId, "
         "group, role or none. " + LIST_DESC,
         listing("/cloud-init/payloads"), (("GET", "/cloud-init/payloads"),),
         query_of=("GET", "/cloud-init/payloads")),
    Tool("cloudinit.payloads.get", "Get one cloud-init payload. " + GET_DESC,
         getting("/cloud-init/payloads"), (("GET", "/cloud-init/payloads/{id}"),),
         properties={"id": ID}, required=("id",), targets=key_target()),
    Tool("power.status.get", "Last known power state (on, off, undefined) of nodes, by node ids or groups. "
         + LIST_DESC, listing("/power/v1/power-status"), (("GET", "/power/v1/power-status"),),
         query_of=("GET", "/power/v1/power-status")),
    Tool("power.transitions.list", "List power transitions, newest first, with their task counts. " + LIST_DESC,
         listing("/power/v1/transitions"), (("GET", "/power/v1/transitions"),),
         query_of=("GET", "/power/v1/transitions")),
    Tool("power.transitions.get", "Get one power transition with its per-node tasks (state, step, detail).",
         getting("/power/v1/transitions"), (("GET", "/power/v1/transitions/{id}"),),
         properties={"id": ID}, required=("id",), targets=key_target()),
    Tool("discovery.targets.list", "List discovery targets (Redfish BMC addresses, CSV/JSON node lists). "
         + LIST_DESC, listing("/discovery/v1/targets"), (("GET", "/discovery/v1/targets"),),
         query_of=("GET", "/discovery/v1/targets")),
    Tool("discovery.targets.get", "Get one discovery target. " + GET_DESC,
         getting("/discovery/v1/targets"), (("GET", "/discovery/v1/targets/{id}"),),
         properties={"id": ID}, required=("id",), targets=key_target()),
    Tool("discovery.scans.list", "List discovery scans, newest first, with per-state host counts. " + LIST_DESC,
         listing("/discovery/v1/scans"), (("GET", "/discovery/v1/scans"),), query_of=("GET", "/discovery/v1/scans")),
    Tool("discovery.scans.get", "Get one discovery scan with its per-host results and the components it made.",
         getting("/discovery/v1/scans"), (("GET", "/discovery/v1/scans/{id}"),),
         properties={"id": ID}, required=("id",), targets=key_target()),
    Tool("discovery.drivers.list", "The discovery drivers (redfish, csv, json) and what each reads.",
         listing("/discovery/v1/drivers"), (("GET", "/discovery/v1/drivers"),)),
    Tool("bss.profiles.list", "List boot profiles: what they boot (kernel, initrd, cmdline or per architecture, "
         "their own iPXE script, cloud-init documents) and the selector that picks their nodes. " + LIST_DESC,
         listing("/boot/v1/profiles"), (("GET", "/boot/v1/profiles"),), query_of=("GET", "/boot/v1/profiles")),
    Tool("bss.profiles.get", "Get one boot profile. " + GET_DESC,
         getting("/boot/v1/profiles"), (("GET", "/boot/v1/profiles/{id}"),),
         properties={"id": ID}, required=("id",), targets=key_target()),
    Tool("boot.node.profile",
         "Which boot profile a node gets and why: the winning profile, the selector terms that matched it, its "
         "specificity, and the MAC/component/NID boot parameters that pin the node ahead of any profile.",
         getting("/boot/v1/effective", suffix="/profile"), (("GET", "/boot/v1/effective/{id}/profile"),),
         properties={"id": {**ID, "description": "the node's component id"}}, required=("id",),
         targets=key_target()),
    Tool("boot.script.preview",
         "The exact iPXE script the boot path answers a node, by mac, componentId or nid, without counting as "
         "the node booting. By MAC it holds the node's cloud-init seed token: treat it as that node's data.",
         boot_script_preview, (), scopes=("read:bss",),
         properties={"mac": {"type": "string", "maxLength": 64}, "componentId": ID,
                     "nid": {"type": "integer", "minimum": 0}},
         targets=lambda a: [str(a[k]) for k in ("mac", "componentId", "nid") if a.get(k) is not None]),
    Tool("boot.stages.summary",
         "How far a boot storm is: nodes per boot stage (dhcp, ipxe, script, kernel-booted, cloud-init, ready; "
         "notSeen: none yet) and time-to-ready p50/p90/p99 in seconds over the boots ready within windowMinutes; "
         "group narrows it to groups' nodes.", listing("/boot/v1/stages/summary"),
         (("GET", "/boot/v1/stages/summary"),), query_of=("GET", "/boot/v1/stages/summary")),
    Tool("boot.stages.list",
         "Each node's boot stage with its timestamps, longest at its stage first; stuckFor=N gives the nodes at "
         "their stage (and not ready) for at least N seconds, the ones to look at. " + LIST_DESC.split(" Returns")[0]
         + " Returns {total, limit, offset, items}.", listing("/boot/v1/stages"), (("GET", "/boot/v1/stages"),),
         query_of=("GET", "/boot/v1/stages")),
    Tool("audit.list", "The audit log, newest first: who did what (REST and MCP calls alike), its status and "
         "outcome. " + LIST_DESC, listing("/auth/v1/audit"), (("GET", "/auth/v1/audit"),),
         query_of=("GET", "/auth/v1/audit")),
    # -- write tools --
    Tool("smd.groups.members.add", "Add a component to a group.", member_add,
         (("POST", "/hsm/v2/groups/{name}/members"),), write=True,
         properties={"group": ID, "id": {**ID, "description": "the component id"}}, required=("group", "id"),
         targets=lambda a: [a["group"], a["id"]]),
    Tool("smd.groups.members.remove", "Remove a component from a group (the component stays).", member_remove,
         (("DELETE", "/hsm/v2/groups/{name}/members/{id}"),), write=True,
         properties={"group": ID, "id": {**ID, "description": "the component id"}}, required=("group", "id"),
         targets=lambda a: [a["group"], a["id"]]),
    Tool("bss.bootparams.upsert",
         "Set the boot parameters of a scope: the entry `id` if given, else the entry holding the same scope (one "
         "of mac, componentId, nid, group, role; none is the site default) is replaced whole, or a new one is made. "
         "Kernel and initrd are http(s)/tftp URLs. A node's next boot gets them within milliseconds.",
         upserting("/boot/v1/bootparams", ("mac", "componentId", "nid", "group", "role")),
         (("GET", "/boot/v1/bootparams"), ("POST", "/boot/v1/bootparams"), ("PUT", "/boot/v1/bootparams/{id}")),
         write=True, properties={"id": ID, "spec": _ref(BootParamsSpec)}, required=("spec",),
         types=(BootParamsSpec,), targets=scoped_targets),
    Tool("bss.bootparams.delete", "Delete a boot parameters entry (nodes then boot by the next scope down).",
         deleting("/boot/v1/bootparams"), (("DELETE", "/boot/v1/bootparams/{id}"),), write=True,
         properties={"id": ID}, required=("id",), consequence=_deleted("boot parameters"), targets=key_target()),
    Tool("bss.profiles.upsert",
         "Create the boot profile `id`, or replace it whole. Its selector (mac, componentId, arch, type, role, "
         "subRole, groups, labels; every term must hold) picks its nodes; the most specific match wins and a tie "
         "any node could meet is refused (409). cmdline, script, userData and vendorData may be Jinja templates, "
         "checked now (422 with the line). The matched nodes' next boot gets it within milliseconds.",
         upserting("/boot/v1/profiles", ()),
         (("GET", "/boot/v1/profiles/{id}"), ("POST", "/boot/v1/profiles"), ("PUT", "/boot/v1/profiles/{id}")),
         write=True, properties={"id": ID, "spec": _ref(ProfileSpec)}, required=("id", "spec"),
         types=(ProfileSpec,), targets=key_target()),
    Tool("bss.profiles.delete", "Delete a boot profile (its nodes then boot by the next match: another profile, "
         "or group, role and site boot parameters).", deleting("/boot/v1/profiles"),
         (("DELETE", "/boot/v1/profiles/{id}"),), write=True, properties={"id": ID}, required=("id",),
         consequence=_deleted("boot profile"), targets=key_target()),
    Tool("cloudinit.payloads.upsert",
         "Set the cloud-init payload of a scope: the entry `id` if given, else the one holding the same scope "
         "(componentId, group, role, or none) is replaced whole, or a new one is made.",
         upserting("/cloud-init/payloads", ("componentId", "group", "role")),
         (("GET", "/cloud-init/payloads"), ("POST", "/cloud-init/payloads"), ("PUT", "/cloud-init/payloads/{id}")),
         write=True, properties={"id": ID, "spec": _ref(PayloadSpec)}, required=("spec",), types=(PayloadSpec,),
         targets=scoped_targets),
    Tool("cloudinit.payloads.delete", "Delete a cloud-init payload.", deleting("/cloud-init/payloads"),
         (("DELETE", "/cloud-init/payloads/{id}"),), write=True, properties={"id": ID}, required=("id",),
         consequence=_deleted("cloud-init payload"), targets=key_target()),
    Tool("power.transitions.create",
         "Start a power transition over nodes and/or group members: the power engine sends it to each BMC and "
         "verifies the result (follow it with power.transitions.wait). dryRun plans it without doing it. "
         "ForceOff, GracefulShutdown, ForceRestart, GracefulRestart and Nmi need confirm: true.",
         transition_create, (("POST", "/power/v1/transitions"),), write=True,
         properties={"operation": {"enum": [op.value for op in Operation]},
                     "nodes": {"type": "array", "items": ID, "maxItems": 100_000},
                     "groups": {"type": "array", "items": ID, "maxItems": 1000},
                     "dryRun": {"type": "boolean", "default": False}},
         required=("operation",), consequence=transition_consequence,
         targets=lambda a: [*a.get("nodes", []), *(f"group:{g}" for g in a.get("groups", []))]),
    Tool("power.transitions.abort", "Abort a power transition: tasks not yet done stop.", transition_abort,
         (("DELETE", "/power/v1/transitions/{id}"), ("GET", "/power/v1/transitions/{id}")), write=True,
         properties={"id": ID}, required=("id",),
         consequence=lambda a: f"abort power transition {a.get('id')!r}, leaving its unfinished nodes as they are",
         targets=key_target()),
    Tool("power.transitions.wait",
         "Wait until a power transition is completed or aborted, or `timeoutS` passes; reports progress (tasks "
         "done of total) as MCP progress notifications. Returns {done, transition}.",
         transition_wait, (("GET", "/power/v1/transitions/{id}"),), write=True,
         properties={"id": ID, "timeoutS": {"type": "number", "minimum": 0, "maximum": 3600, "default": 120}},
         required=("id",), targets=key_target()),
    Tool("discovery.targets.create", "Declare a discovery target: a Redfish BMC address (with a credentialId) or a "
         "CSV/JSON node list (document).", target_create, (("POST", "/discovery/v1/targets"),), write=True,
         properties={"id": ID, "spec": _ref(TargetSpec)}, required=("spec",), types=(TargetSpec,),
         targets=key_target()),
    Tool("discovery.targets.update", "Change a discovery target: `spec` is a JSON merge patch of its spec.",
         target_update, (("PATCH", "/discovery/v1/targets/{id}"),), write=True,
         properties={"id": ID, "spec": {"type": "object", "description": "fields of the spec to change; null "
                                                                         "removes one"}},
         required=("id", "spec"), targets=key_target()),
    Tool("discovery.targets.delete", "Delete a discovery target (its past scans stay).",
         deleting("/discovery/v1/targets"), (("DELETE", "/discovery/v1/targets/{id}"),), write=True,
         properties={"id": ID}, required=("id",), consequence=_deleted("discovery target"), targets=key_target()),
    Tool("discovery.target.scan", "Scan one discovery target now; follow it with discovery.scans.get.", target_scan,
         (("POST", "/discovery/v1/scans"),), write=True, properties={"id": ID}, required=("id",),
         targets=key_target()),
    Tool("discovery.scan.trigger", "Start a scan of the given targets, or of every enabled target.", scan_trigger,
         (("POST", "/discovery/v1/scans"),), write=True,
         properties={"targets": {"type": "array", "items": ID, "maxItems": 10_000}},
         targets=lambda a: list(a.get("targets", []))),
    Tool("discovery.scan.delete", "Stop a pending or running scan: it is cancelled, its hosts not yet scanned are "
         "skipped, and its record stays as history.", scan_delete,
         (("POST", "/discovery/v1/scans/{id}/cancel"), ("GET", "/discovery/v1/scans/{id}")), write=True,
         properties={"id": ID}, required=("id",),
         consequence=lambda a: f"cancel discovery scan {a.get('id')!r}; its hosts not yet scanned are skipped",
         targets=key_target()),
    Tool("nodes.provision",
         "Create or update a node in one step: the component, exactly these network interfaces, and (when "
         "given) its own boot parameters and cloud-init payload; null for bootParams/cloudInit removes them. "
         "dryRun shows what would change.", provision, (("POST", "/hsm/v2/nodes/{id}/provision"),), write=True,
         properties={"id": ID, "spec": _ref(NodeProvision), "dryRun": {"type": "boolean", "default": False}},
         required=("id", "spec"), types=(NodeProvision,), targets=key_target()),
)


def build(routers: list[Router], tools: tuple[Tool, ...] = TOOLS) -> dict[str, Built]:
    """Each tool with its input schema and scopes, taken from the REST routes it runs (checked here: a
    tool naming an operation that does not exist fails the admin API's start, not a call)."""
    operations = {(op.method, op.path): op for r in routers for op in r.operations}
    built: dict[str, Built] = {}
    for tool in tools:
        missing = [f"{m} {p}" for m, p in (*tool.operations, *([tool.query_of] if tool.query_of else []))
                   if (m, p) not in operations]
        if missing:
            raise LookupError(f"tool {tool.name} runs {', '.join(missing)}, which no route serves")
        properties = dict(tool.properties)
        if tool.query_of:
            for param in operations[tool.query_of].params:
                if param.location == "query":
                    properties.setdefault(param.name, {**param.json_schema(), "description": param.description})
        if tool.consequence is not None:
            properties["confirm"] = {"type": "boolean", "description": "true to do it: without it, the tool says "
                                                                       "what it would do and does nothing"}
        schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        if tool.required:
            schema["required"] = list(tool.required)
        if tool.types:
            _, defs = msgspec.json.schema_components(tool.types, ref_template="#/$defs/{name}")
            schema["$defs"] = defs
        scopes = tuple(sorted({*tool.scopes, *(s for m, p in tool.operations if (s := operations[(m, p)].scope))}))
        built[tool.name] = Built(tool, schema, scopes)
    return built
