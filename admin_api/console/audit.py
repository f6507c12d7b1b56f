"""The audit log, with filters (GET /auth/v1/audit: actor, action, outcome, resource id, since) and paging."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from admin_api.console.web import Pages, api, offset_of, render
from admin_api.inprocess import NativeError

pages = Pages()
PAGE = 50
OUTCOMES = ("success", "failure", "denied")
FILTERS = ("actor", "action", "outcome", "resource", "since")


@pages.get("/ui/audit", scope="read:audit")
async def audit(request: Request) -> Response:
    filters = {name: request.query_params.get(name, "").strip() for name in FILTERS}
    offset = offset_of(request)
    problem = None
    entries = []
    try:
        # One more than a page tells whether there is a next one (the log has no total: it only grows).
        entries = await api(request).json("GET", "/auth/v1/audit",
                                          query={**filters, "limit": PAGE + 1, "offset": offset})
    except NativeError as exc:
        if exc.problem.status >= 500:
            raise
        problem = exc.problem.detail or exc.problem.title
    kept = {name: value for name, value in filters.items() if value}
    return render(request, "audit.html", 200 if problem is None else 400, entries=entries[:PAGE],
                  filters=filters, kept=kept, outcomes=OUTCOMES, offset=offset, page=PAGE,
                  more=len(entries) > PAGE, problem=problem)
