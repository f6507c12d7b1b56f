"""Logging in and out of the console, and the live-update stream every page listens to."""

from __future__ import annotations

import asyncio
import urllib.parse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from admin_api.auth.guard import client_ip
from admin_api.console import sessions
from admin_api.console.live import COALESCE_S, KEEPALIVE_S, LiveHub
from admin_api.console.web import Pages, redirect, render, secured
from core.bounded import clip
from core.problems import ProblemError

pages = Pages()
MAX_FIELD = 1024


def _next(value: str | None) -> str:
    """Where to go after login: a console path on this site only (never `//evil` or `https://...`)."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


async def login_page(request: Request) -> Response:
    if request.method == "GET":
        if await sessions.load(request) is not None:
            return secured(RedirectResponse(_next(request.query_params.get("next")), 303))
        return secured(render(request, "login.html", next=_next(request.query_params.get("next")), error=None,
                              username=""))
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > 16 * MAX_FIELD:  # a username and a password, not a file
        return secured(render(request, "login.html", 413, next="/ui/", error="This login form is too large.",
                              username=""))
    data = await request.form()
    username = str(data.get("username") or "")[:MAX_FIELD].strip().lower()
    password = str(data.get("password") or "")[:MAX_FIELD]
    target = _next(str(data.get("next") or ""))
    auth = request.app.state.auth
    throttle = request.app.state.token_throttle
    address = client_ip(request) or "unknown"
    try:
        throttle.check(address, username or None)
    except ProblemError as exc:
        return secured(render(request, "login.html", 429, next=target, error=exc.problem.detail, username=username))
    async with request.app.state.pool.acquire() as conn:
        ok = bool(username and password) and await sessions.check_password(conn, username, password)
        if ok:
            cookie = await sessions.start(request, conn, username)
    if not ok:
        throttle.failed(address, username or None)
        await auth.audit(request, "console.login-refused", "/ui/login", clip(username) or "unknown", 401)
        return secured(render(request, "login.html", 401, next=target, username=username,
                              error="Wrong username or password, or the account is disabled."))
    await auth.audit(request, "console.login", "/ui/login", username, 200)
    response = RedirectResponse(target, 303)
    sessions.set_cookie(request, response, cookie)
    return secured(response)


@pages.post("/ui/logout")
async def logout(request: Request) -> Response:
    await sessions.end(request)
    await request.app.state.auth.audit(request, "console.logout", "/ui/logout", request.state.session.username, 200)
    response = redirect(request, "/ui/login", "You are logged out.")
    sessions.clear_cookie(request, response)
    return response


@pages.get("/ui/live")
async def live(request: Request) -> Response:
    """Server-sent events: `event: change` with the topic that changed (console.js refreshes what shows it)."""
    hub: LiveHub = request.app.state.console_live
    if hub.full:
        return Response("too many live pages open on this admin process", 503, {"Retry-After": "30"})

    async def stream():
        with hub.subscribe() as queue:
            yield "retry: 3000\n\n"
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE_S):
                        topic = await queue.get()
                except TimeoutError:
                    if await sessions.load(request) is None:  # logged out or timed out: the stream ends too
                        yield "event: ended\ndata: session\n\n"
                        return
                    yield ": keepalive\n\n"
                    continue
                await asyncio.sleep(COALESCE_S)  # gather what else changes meanwhile into this one refresh
                topics = {topic}
                while not queue.empty():
                    topics.add(queue.get_nowait())
                for name in sorted(topics):
                    yield f"event: change\ndata: {name}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"X-Accel-Buffering": "no", "Cache-Control": "no-store"})


async def to_console(request: Request) -> Response:
    return RedirectResponse("/ui/", 307)


def login_url(next_path: str) -> str:
    return "/ui/login?" + urllib.parse.urlencode({"next": next_path})
