"""Discovery: targets, scans and their per-host progress, live.

A target names its BMC credential by id, chosen from the list the REST API
gives (ids, usernames, descriptions): a credential's secret is never asked
for nor shown here.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from admin_api.console.web import (
    Pages,
    api,
    field_errors,
    form,
    offset_of,
    redirect,
    render,
    session_of,
    state_page,
    wants_fragment,
)
from admin_api.inprocess import NativeError, segment

pages = Pages()
TARGETS = 100  # targets on the page
RECENT = 25  # scans on the page
HOSTS = 100  # hosts on a scan's page
HOST_STATES = ("pending", "running", "ok", "failed", "cancelled")
OPEN = ("pending", "running")
BLANK = {"id": "", "driver": "redfish", "address": "", "document": "", "credential": "", "schedule": "",
         "description": "", "enabled": "yes", "insecure": ""}
FIELDS = {"metadata.id", "address", "credentialId", "scheduleS", "document"}  # the fields the form shows errors by


def finished(counts: dict[str, int]) -> int:
    return sum(n for state, n in counts.items() if state not in OPEN)


async def _page(request: Request, status: int = 200, entered: dict[str, str] | None = None, **context: Any) -> Response:
    native = api(request)
    offset = offset_of(request)
    scans = await native.json("GET", "/discovery/v1/scans", query={"limit": RECENT, "offset": offset})
    if wants_fragment(request):
        return render(request, "discovery_scans.html", scans=scans, offset=offset, limit=RECENT, finished=finished)
    targets = await native.json("GET", "/discovery/v1/targets", query={"limit": TARGETS})
    session = session_of(request)
    can_write = session.can("write:discovery")
    drivers = await native.json("GET", "/discovery/v1/drivers") if can_write else []
    # Ids, usernames and descriptions only (the REST list redacts the secret, and this page never asks for it).
    credentials = await native.json("GET", "/auth/v1/credentials") if can_write and session.can("read:smd") else []
    context.setdefault("errors", {})
    context.setdefault("problem", None)
    return render(request, "discovery.html", status, scans=scans, offset=offset, limit=RECENT, finished=finished,
                  targets=targets, drivers=drivers, credentials=credentials, entered={**BLANK, **(entered or {})},
                  **context)


@pages.get("/ui/discovery", scope="read:discovery")
async def discovery(request: Request) -> Response:
    return await _page(request)


def _spec(entered: dict[str, str]) -> dict[str, Any]:
    driver = entered.get("driver", "")
    spec: dict[str, Any] = {"driver": driver, "insecure": entered.get("insecure") == "yes",
                            "enabled": entered.get("enabled") == "yes", "description": entered.get("description", "")}
    if driver == "redfish":
        spec["address"] = entered.get("address", "")
        spec["credentialId"] = entered.get("credential") or None
    else:
        spec["document"] = entered.get("document", "")
    schedule = entered.get("schedule", "").strip()
    if schedule:
        spec["scheduleS"] = int(schedule) * 60 if schedule.isdigit() else schedule  # minutes; a typo: the 422 says
    return spec


@pages.post("/ui/discovery/targets", scope="write:discovery")
async def create_target(request: Request) -> Response:
    entered = await form(request)
    body = {"metadata": {"id": entered["id"]} if entered.get("id") else {}, "spec": _spec(entered)}
    try:
        created = await api(request).json("POST", "/discovery/v1/targets", body=body)
    except NativeError as exc:
        errors = field_errors(exc)
        # A problem the form shows by its field is not said twice; any other is said above the form.
        return await _page(request, exc.problem.status, entered, errors=errors,
                           problem=None if errors and errors.keys() <= FIELDS else exc.problem.detail or exc.problem.title)
    return redirect(request, "/ui/discovery", flash=f"Target {created['metadata']['id']} created.")


@pages.post("/ui/discovery/targets/{id}/enabled", scope="write:discovery")
async def enable_target(request: Request) -> Response:
    target_id = request.path_params["id"]
    entered = await form(request)
    enabled = entered.get("enabled") == "yes"
    # The ETag the page showed: a target changed since is not switched blind (412).
    headers = {"If-Match": entered["etag"]} if entered.get("etag") else None
    try:
        await api(request).request("PATCH", f"/discovery/v1/targets/{segment(target_id)}",
                                   body={"spec": {"enabled": enabled}}, headers=headers)
    except NativeError as exc:
        return await _page(request, exc.problem.status, problem=exc.problem.detail or exc.problem.title)
    return redirect(request, "/ui/discovery", flash=f"Target {target_id} {'enabled' if enabled else 'disabled'}.")


@pages.post("/ui/discovery/targets/{id}/delete", scope="write:discovery")
async def delete_target(request: Request) -> Response:
    target_id = request.path_params["id"]
    try:
        await api(request).request("DELETE", f"/discovery/v1/targets/{segment(target_id)}")
    except NativeError as exc:
        return await _page(request, exc.problem.status, problem=exc.problem.detail or exc.problem.title)
    return redirect(request, "/ui/discovery", flash=f"Target {target_id} deleted (its scans stay).")


@pages.post("/ui/discovery/scans", scope="write:discovery")
async def start_scan(request: Request) -> Response:
    entered = await form(request)
    targets = [entered["target"]] if entered.get("target") else []  # none: every enabled target
    try:
        scan = await api(request).json("POST", "/discovery/v1/scans", body={"targets": targets})
    except NativeError as exc:
        return await _page(request, exc.problem.status, problem=exc.problem.detail or exc.problem.title)
    hosts = sum(scan["status"]["counts"].values())
    return redirect(request, f"/ui/discovery/scans/{segment(scan['metadata']['id'])}",
                    flash=f"Scan started over {hosts} host{'s' if hosts != 1 else ''}.")


async def _scan(request: Request, status: int = 200, problem: str | None = None) -> Response:
    found, state, offset = await state_page(request, f"/discovery/v1/scans/{segment(request.path_params['id'])}/hosts",
                                            HOST_STATES, HOSTS)
    counts = found["scan"]["status"]["counts"]
    context = {"scan": found["scan"], "hosts": found["items"], "total": found["metadata"]["total"],
               "all_hosts": sum(counts.values()), "finished": finished(counts), "offset": offset, "limit": HOSTS,
               "state": state, "host_states": HOST_STATES, "open": OPEN, "problem": problem}
    return render(request, "discovery_hosts.html" if wants_fragment(request) else "discovery_scan.html", status,
                  **context)


@pages.get("/ui/discovery/scans/{id}", scope="read:discovery")
async def scan_page(request: Request) -> Response:
    return await _scan(request)


@pages.post("/ui/discovery/scans/{id}/cancel", scope="write:discovery")
async def cancel_scan(request: Request) -> Response:
    scan_id = request.path_params["id"]
    try:
        await api(request).request("POST", f"/discovery/v1/scans/{segment(scan_id)}/cancel")
    except NativeError as exc:
        return await _scan(request, exc.problem.status, exc.problem.detail or exc.problem.title)
    return redirect(request, f"/ui/discovery/scans/{segment(scan_id)}", flash="Scan cancelled.")
