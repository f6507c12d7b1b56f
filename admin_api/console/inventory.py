"""Inventory: components with filters, sorting and paging, bulk actions, and each node's page.

A page of the list is one REST list call (its `total` counts the matches, so 100k
nodes cost no more than 50) plus, for the shown rows only, their interfaces and
power states.  A bulk action runs the REST operation once per selected component
(or one power transition for all) as the session's user; each refusal is shown
against its component.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from admin_api.console.web import (
    Pages,
    api,
    form,
    form_list,
    redirect,
    render,
    session_of,
    wants_fragment,
)
from admin_api.inprocess import Native, NativeError, segment
from core.identity import ComponentState, ComponentType, Role

pages = Pages()
BASE = "/hsm/v2/State/Components"
PAGE_SIZES = (50, 100, 200)
FILTERS = ("type", "state", "role", "group", "rack", "q")
COLUMNS = (("id", "Id"), ("type", "Type"), ("state", "State"), ("role", "Role"), ("nid", "NID"),
           ("rack", "Rack"), ("unit", "Unit"))
POWER_ACTIONS = {"on": "Power on", "off": "Power off", "reboot": "Reboot"}
DOCUMENTS = ("user-data", "meta-data", "vendor-data")
HISTORY = 20  # audit entries on a node's page


@dataclasses.dataclass(slots=True)
class Outcome:
    """What a bulk action did: how many succeeded, and each failure with its reason."""

    action: str
    done: int = 0
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    status: int = 200  # a failure's status, when every item failed alike

    def fail(self, item: str, error: NativeError) -> None:
        self.failed.append((item, error.problem.detail or error.problem.title))
        self.status = error.problem.status


def _int(text: str | None, default: int, lowest: int = 0) -> int:
    return max(int(text), lowest) if text and text.isdigit() else default


def _listing(request: Request) -> dict[str, Any]:
    """The page's filters, order and window as the user gave them (empty ones dropped)."""
    params = request.query_params
    chosen = {name: params.get(name, "").strip() for name in FILTERS}
    limit = _int(params.get("limit"), PAGE_SIZES[0], 1)
    sort = params.get("sort", "id")
    # `after` (keyset, the default order only) pages forward at any depth for the cost of the first page;
    # `offset` then only says where the page is.
    return {"filters": chosen, "sort": sort, "offset": _int(params.get("offset"), 0),
            "after": params.get("after", "") if sort == "id" else "",
            "limit": limit if limit in PAGE_SIZES else PAGE_SIZES[0]}


def _url(listing: dict[str, Any], **changed: Any) -> str:
    values = {**listing["filters"], "sort": listing["sort"], "offset": listing["offset"], "limit": listing["limit"],
              "after": listing["after"], **changed}
    query = {k: v for k, v in values.items() if v not in ("", None) and not (k == "offset" and v == 0)
             and not (k == "sort" and v == "id") and not (k == "limit" and v == PAGE_SIZES[0])}
    return "/ui/inventory" + (f"?{urllib.parse.urlencode(query)}" if query else "")


async def _inventory(request: Request, status: int = 200, outcome: Outcome | None = None,
                     selected: tuple[str, ...] = ()) -> Response:
    listing = _listing(request)
    native = api(request)
    problem = None
    try:
        window = {"after": listing["after"]} if listing["after"] else {"offset": listing["offset"]}
        found = await native.json("GET", BASE, query={**listing["filters"], "sort": listing["sort"],
                                                      "limit": listing["limit"], **window})
    except NativeError as exc:  # a filter the REST list refuses: shown, with no rows
        problem, status = exc.problem.detail or exc.problem.title, exc.problem.status
        found = {"items": [], "metadata": {"total": 0}}
    ids = [item["metadata"]["id"] for item in found["items"]]
    nics: dict[str, list[dict]] = {}
    power: dict[str, str] = {}
    if ids:
        for nic in (await native.json("GET", "/hsm/v2/Inventory/EthernetInterfaces",
                                      query={"componentId": ids, "limit": 10_000}))["items"]:
            nics.setdefault(nic["spec"]["componentId"], []).append(nic["spec"])
        if session_of(request).can("read:power"):
            power = {s["nodeId"]: s["powerState"] for s in (await native.json(
                "GET", "/power/v1/power-status", query={"node": ids, "limit": len(ids)}))["items"]}
    total = found["metadata"]["total"]
    return render(request, "inventory.html", status, items=found["items"], nics=nics, power=power, total=total,
                  listing=listing, url=lambda **changed: _url(listing, **changed), problem=problem,
                  columns=COLUMNS, page_sizes=PAGE_SIZES,
                  types=list(ComponentType.__members__), states=list(ComponentState.__members__),
                  roles=list(Role.__members__), power_actions=POWER_ACTIONS, outcome=outcome, selected=selected)


@pages.get("/ui/inventory", scope="read:smd")
async def inventory(request: Request) -> Response:
    return await _inventory(request)


@pages.post("/ui/inventory", scope="read:smd")
async def bulk(request: Request) -> Response:
    """One action on the selected components; the REST operations decide who may (a viewer gets their 403)."""
    entered = await form(request)
    ids = list(dict.fromkeys(await form_list(request, "ids")))
    action = entered.get("action", "")
    native = api(request)
    if not ids:
        outcome = Outcome(action, status=400, failed=[("—", "select at least one component")])
    elif action == "group":
        outcome = await _add_to_group(native, ids, entered.get("group", "").strip())
    elif action in POWER_ACTIONS:
        outcome = await _power(native, ids, action)
    elif action in ("provision", "decommission"):
        outcome = Outcome(action)
        for component_id in ids:
            try:
                await (_provision if action == "provision" else _decommission)(native, component_id)
                outcome.done += 1
            except NativeError as exc:
                outcome.fail(component_id, exc)
    else:
        outcome = Outcome(action, status=400, failed=[("—", "choose an action")])
    if outcome.failed:
        # Stay on the page: the failures are listed against their components, the selection kept.
        return await _inventory(request, outcome.status if not outcome.done else 200, outcome, tuple(ids))
    back = "/ui/inventory" + (f"?{request.url.query}" if request.url.query else "")  # the same filtered page
    return redirect(request, back, flash=_summary(outcome, len(ids)))


def _summary(outcome: Outcome, asked: int) -> str:
    verb = {"group": "added to the group", "provision": "returned to service", "decommission": "decommissioned",
            **{k: f"sent: {v.lower()}" for k, v in POWER_ACTIONS.items()}}.get(outcome.action, outcome.action)
    return f"{outcome.done} of {asked} {verb}."


async def _add_to_group(native: Native, ids: list[str], group: str) -> Outcome:
    outcome = Outcome("group")
    if not group:
        outcome.failed.append(("—", "name the group to add the components to"))
        outcome.status = 400
        return outcome
    for component_id in ids:
        try:
            await native.request("POST", f"/hsm/v2/groups/{segment(group)}/members", body={"id": component_id})
            outcome.done += 1
        except NativeError as exc:
            outcome.fail(component_id, exc)
    return outcome


async def _power(native: Native, ids: list[str], action: str) -> Outcome:
    """One transition for all: the power engine runs the nodes in parallel, and the plan names the refusals."""
    outcome = Outcome(action)
    try:
        started = await native.json("POST", f"/power/v1/actions/{action}", body={"nodes": ids})
        outcome.done = started["counts"].get("total", len(ids))
    except NativeError as exc:
        outcome.fail(", ".join(ids[:5]) + (" …" if len(ids) > 5 else ""), exc)
    return outcome


async def _provision(native: Native, component_id: str) -> None:
    """Back into service: the node as it is, enabled, Ready if it was Empty; its interfaces and own entries kept."""
    spec = (await native.json("GET", f"{BASE}/{segment(component_id)}"))["spec"]
    nics = (await native.json("GET", "/hsm/v2/Inventory/EthernetInterfaces",
                              query={"componentId": component_id, "limit": 10_000}))["items"]
    body = {**spec, "enabled": True, "state": "Ready" if spec["state"] == "Empty" else spec["state"],
            "networkInterfaces": [{"id": nic["metadata"]["id"], "macAddr": nic["spec"]["macAddr"],
                                   "ipAddrs": nic["spec"]["ipAddrs"], "description": nic["spec"]["description"]}
                                  for nic in nics]}
    await native.request("POST", f"/hsm/v2/nodes/{segment(component_id)}/provision", body=body)


async def _decommission(native: Native, component_id: str) -> None:
    await native.request("POST", f"/hsm/v2/nodes/{segment(component_id)}/decommission")


# -- one node -------------------------------------------------------------------------------------------


async def _optional(native: Native, path: str, **query: Any) -> tuple[Any, str | None]:
    """A read the page can do without: its answer, or None and why not (a 404, the boot path down)."""
    try:
        answer = await native.request("GET", path, query=query)
    except NativeError as exc:
        return None, exc.problem.detail or exc.problem.title
    if "json" in answer.headers.get("content-type", ""):
        return answer.json(), None
    return answer.body.decode(errors="replace"), None


async def _live_part(native: Native, request: Request, component_id: str) -> dict[str, Any]:
    """What the page's live part shows (node_live.html): its power state and the last boot-path request."""
    session = session_of(request)
    found, problem = (await _optional(native, "/power/v1/power-status", node=component_id)
                      if session.can("read:power") else (None, None))
    telemetry = (await _optional(native, f"/boot/v1/telemetry/{segment(component_id)}"))[0] \
        if session.can("read:bss") else None
    return {"node_id": component_id, "power": next(iter((found or {}).get("items", [])), None),
            "power_problem": problem, "telemetry": telemetry, "power_actions": POWER_ACTIONS}


@pages.get("/ui/inventory/{id}", scope="read:smd")
async def node(request: Request) -> Response:
    component_id = request.path_params["id"]
    native = api(request)
    live = await _live_part(native, request, component_id)
    if wants_fragment(request):
        return render(request, "node_live.html", **live)
    session = session_of(request)
    quoted = segment(component_id)
    component = await native.json("GET", f"{BASE}/{quoted}")
    nics = (await native.json("GET", "/hsm/v2/Inventory/EthernetInterfaces",
                              query={"componentId": component_id, "limit": 10_000}))["items"]
    macs = [nic["spec"]["macAddr"] for nic in nics]
    mac = request.query_params.get("mac", "")
    mac = mac if mac in macs else (macs[0] if macs else "")
    membership, _ = await _optional(native, f"/openchami/hsm/v2/memberships/{quoted}")
    context: dict[str, Any] = {
        **live, "component": component, "nics": nics, "mac": mac, "documents": DOCUMENTS,
        "groups": (membership or {}).get("groupLabels", []), "partition": (membership or {}).get("partitionName"),
        "boot": None, "boot_problem": None, "script": None, "script_problem": None,
        "cloud": None, "cloud_problem": None, "cloud_documents": {}, "history": None}
    if session.can("read:bss"):
        context["boot"], context["boot_problem"] = await _optional(native, f"/boot/v1/effective/{quoted}")
        context["script"], context["script_problem"] = await _optional(
            native, f"/boot/v1/effective/{quoted}/script", **({"mac": mac} if mac else {}))
    if session.can("read:cloudinit"):
        context["cloud"], context["cloud_problem"] = await _optional(native, f"/cloud-init/effective/{quoted}")
        if component["spec"]["type"] == "Node":
            for document in DOCUMENTS:
                context["cloud_documents"][document] = await _optional(
                    native, f"/openchami/cloud-init/admin/impersonation/{quoted}/{document}")
    if session.can("read:audit"):
        context["history"], _ = await _optional(native, "/auth/v1/audit", resource=component_id, limit=HISTORY)
    return render(request, "node.html", **context)


@pages.post("/ui/inventory/{id}/power", scope="read:power")
async def node_power(request: Request) -> Response:
    component_id = request.path_params["id"]
    action = (await form(request)).get("action", "")
    back = f"/ui/inventory/{segment(component_id)}"
    if action not in POWER_ACTIONS:
        return redirect(request, back, flash="Choose a power action.")
    started = await api(request).json("POST", f"/power/v1/actions/{action}", body={"nodes": [component_id]})
    return redirect(request, back, flash=f"{POWER_ACTIONS[action]}: transition {started['id']} started.")
