"""What every console page shares: the session check, CSRF, the REST caller, templates, security headers.

A page is declared like a REST operation, with the scope it needs to be
shown at all:

    @pages.get("/ui/inventory", scope="read:smd")
    async def inventory(request: Request) -> Response:
        found = await api(request).json("GET", "/hsm/v2/State/Components", query={...})
        return render(request, "inventory.html", components=found["items"])

Everything a page reads or writes goes through `api(request)`: the REST
operation itself, run in-process with the session's principal, so its scope
checks, validation, events and audit are the REST ones (admin_api/inprocess.py).
A page only decides what to ask and how to show it.  A change is a form POST
(or a fetch from console.js) that must carry the session's CSRF token and,
when the browser sends one, this origin.
"""

from __future__ import annotations

import dataclasses
import functools
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from admin_api.auth.guard import FACE_PRINCIPAL
from admin_api.console import sessions
from admin_api.console.sessions import Session
from admin_api.inprocess import Caller, Native, NativeError
from core.problems import ProblemError

HERE = Path(__file__).parent
Endpoint = Callable[[Request], Awaitable[Response]]
# No request leaves the page for another origin, no inline script or style, no framing.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}
FLASH_COOKIE = "chamicore_flash"
# The largest form post: an import's file (16 MiB) and, on commit, its checked content sent back url-encoded.
MAX_POST = 64 << 20

# What the navigation offers, and the scope each entry needs to be shown.
NAV = (
    ("Dashboard", "/ui/", "read:smd"),
    ("Inventory", "/ui/inventory", "read:smd"),
    ("Boot", "/ui/boot", "read:bss"),
    ("Cloud-init", "/ui/cloud-init", "read:cloudinit"),
    ("Discovery", "/ui/discovery", "read:discovery"),
    ("Power", "/ui/power", "read:power"),
    ("Import", "/ui/import", "write:smd"),
    ("Access", "/ui/access", "read:auth"),
    ("Audit", "/ui/audit", "read:audit"),
)

templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
templates.filters["urlencode_path"] = lambda value: urllib.parse.quote(str(value), safe="")


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    method: str
    path: str
    scope: str | None  # None: any logged-in user (the login page itself is not a Page)
    endpoint: Endpoint


class Pages:
    """The console's routes, declared like the REST ones (admin_api/routing.py)."""

    def __init__(self) -> None:
        self.pages: list[Page] = []

    def route(self, method: str, path: str, scope: str | None) -> Callable[[Endpoint], Endpoint]:
        def register(endpoint: Endpoint) -> Endpoint:
            self.pages.append(Page(method, path, scope, endpoint))
            return endpoint
        return register

    def get(self, path: str, scope: str | None = None):
        return self.route("GET", path, scope)

    def post(self, path: str, scope: str | None = None):
        return self.route("POST", path, scope)


def routes(all_pages: list[Pages]) -> list[Route]:
    by_path: dict[str, dict[str, Page]] = {}
    for pages in all_pages:
        for page in pages.pages:
            by_path.setdefault(page.path, {})[page.method] = page
    return [Route(path, _dispatcher(methods), methods=list(methods)) for path, methods in by_path.items()]


def _dispatcher(methods: dict[str, Page]) -> Endpoint:
    async def dispatch(request: Request) -> Response:
        page = methods[request.method if request.method != "HEAD" else "GET"]
        session = await sessions.load(request)
        if session is None:
            if request.method == "GET" and not wants_fragment(request):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return secured(RedirectResponse("/ui/login?" + urllib.parse.urlencode({"next": target}), 303))
            return secured(error_page(request, None, 401, "Your session has ended; log in again."))
        request.state.session = session
        if request.method == "POST":
            if too_large := _refuse_size(request):
                return secured(error_page(request, session, *too_large))
            if refused := await _refuse_forgery(request, session):
                return secured(error_page(request, session, 403, refused))
        if page.scope is not None and not session.can(page.scope):
            return secured(error_page(request, session, 403,
                                      f"This page needs the scope {page.scope!r}, which your roles do not grant."))
        try:
            response = await page.endpoint(request)
        except NativeError as exc:
            response = error_page(request, session, exc.problem.status, exc.problem.detail or exc.problem.title)
        except ProblemError as exc:
            response = error_page(request, session, exc.problem.status, exc.problem.detail or exc.problem.title)
        return secured(response)

    return dispatch


def _refuse_size(request: Request) -> tuple[int, str] | None:
    """A post's body is parsed (and a file spooled to disk) only when it says its size and the size is sane."""
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        return 411, "A change must say its size (Content-Length); browsers always do."
    if int(declared) > MAX_POST:
        return 413, f"This is larger than the {MAX_POST >> 20} MiB a console form may send."
    return None


async def _refuse_forgery(request: Request, session: Session) -> str | None:
    """Why a POST is refused as a possible cross-site request, or None when it is the session's own."""
    origin = request.headers.get("origin")
    if origin is not None and origin != own_origin(request):
        return "This request came from another site and was refused."
    sent = request.headers.get(sessions.CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        sent = str((await request.form()).get(sessions.CSRF_FIELD) or "")
    if not session.csrf_ok(sent):
        return "This form is missing its security token (or it is from an older session): reload the page and retry."
    return None


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


def secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def wants_fragment(request: Request) -> bool:
    """console.js asks for a part of a page to replace (live updates) with this header."""
    return request.headers.get("x-console-fragment") is not None


# -- reading and writing through the REST operations ----------------------------------------------------


def api(request: Request) -> Native:
    """The REST operations, run in-process as the session's user (one per request)."""
    native = getattr(request.state, "native", None)
    if native is None:
        session: Session = request.state.session
        claims = session.claims
        client = (request.client.host, request.client.port) if request.client else None
        native = Native(request.app, Caller(authorization=None, claims=claims, client=client, transport="console",
                                            scope_keys={FACE_PRINCIPAL: claims}))
        request.state.native = native
    return native


def field_errors(error: NativeError) -> dict[str, str]:
    """A problem's per-field errors keyed by field path (`$.spec.kernel` -> `kernel`), for inline display."""
    found: dict[str, str] = {}
    for item in error.problem.errors or []:
        if isinstance(item, dict):
            where = str(item.get("field", "")).removeprefix("$.").removeprefix("spec.")
            found[where] = str(item.get("detail", ""))
    return found


# -- rendering ------------------------------------------------------------------------------------------


def session_of(request: Request) -> Session:
    return request.state.session


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    session: Session | None = getattr(request.state, "session", None)
    flash = request.cookies.get(FLASH_COOKIE)
    body = templates.get_template(template).render(
        request=request, session=session, can=session.can if session else (lambda scope: False),
        csrf_token=session.csrf_token if session else "", csrf_field=sessions.CSRF_FIELD,
        nav=[(title, href) for title, href, scope in NAV if session and session.can(scope)],
        here=request.url.path, flash=urllib.parse.unquote(flash)[:300] if flash else None, **context)
    response = HTMLResponse(body, status)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/ui")
    return response


def error_page(request: Request, session: Session | None, status: int, detail: str) -> HTMLResponse:
    if wants_fragment(request):
        return HTMLResponse(f'<p class="error">{escape(detail)}</p>', status)
    return render(request, "error.html", status, code=status, detail=detail)


def redirect(request: Request, to: str, flash: str | None = None) -> Response:
    """After a change: back to a page (303, so a reload does not post again), with a message shown once."""
    response = RedirectResponse(to, 303)
    if flash:
        response.set_cookie(FLASH_COOKIE, urllib.parse.quote(flash[:300]), max_age=60, path="/ui", httponly=True,
                            samesite="strict", secure=sessions.secure(request))
    return response


def offset_of(request: Request) -> int:
    """The page's ?offset=: 0 when absent or not a plain whole number (a hand-edited URL shows the first page)."""
    text = request.query_params.get("offset", "0")
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else 0


async def state_page(request: Request, path: str, states: tuple[str, ...], limit: int) -> tuple[dict, str, int]:
    """A page of a scan's hosts or a transition's tasks (`path`) in the state the page's filter names (all when
    it names none it knows): the REST answer, the state and the offset."""
    state = request.query_params.get("state", "")
    state = state if state in states else ""
    offset = offset_of(request)
    found = await api(request).json("GET", path, query={"limit": limit, "offset": offset, "state": state})
    return found, state, offset


async def form(request: Request) -> dict[str, str]:
    """The posted form's single values (a multi-valued field: use `form_list`)."""
    data = await request.form()
    return {key: str(value) for key, value in data.items() if isinstance(value, str)}


async def form_list(request: Request, name: str) -> list[str]:
    return [str(value) for value in (await request.form()).getlist(name) if isinstance(value, str)]


@functools.cache
def static_dir() -> Path:
    return HERE / "static"
