"""The dashboard: the cluster at a glance, updated live.

Each section is its own fragment page (/ui/dashboard/<name>) with the scope
its REST operations need; the full page shows the sections the user may see,
loaded side by side, and console.js re-fetches one when a topic it shows
changes.  A section whose source fails says so; the others still render.

Twenty dashboards open in a boot storm all hear the same event at once: they
share one load of each section per change (SharedLoads), so what the console
asks of the database and the boot path does not grow with the pages open.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api import bootpath
from admin_api.console.web import Pages, api, render, session_of, wants_fragment
from admin_api.inprocess import NativeError
from core.problems import ProblemError

pages = Pages()
WINDOWS = (1, 5, 15, 60)  # minutes a node counts as recently seen
BOOT_PATH_TIMEOUT_S = 2.0  # the dashboard says the boot path is slow rather than waiting on it
RATE_WINDOW_S = 60.0
SPARK_BARS = 30
MIN_LOOK_S = 0.25
Load = Callable[[Request], Awaitable[dict[str, Any]]]


@dataclasses.dataclass(frozen=True, slots=True)
class Section:
    name: str
    title: str
    scope: str
    topics: str  # the live topics that change what it shows (admin_api/console/live.py)
    load: Load
    wide: bool = True  # the page's whole width, or half of it


def window(request: Request) -> int:
    try:
        minutes = int(request.query_params.get("minutes", "5"))
    except ValueError:
        return 5
    return minutes if minutes in WINDOWS else 5


async def boot_path(request: Request, path: str) -> bootpath.BootAnswer:
    """The boot path's own service answer (not a node's: nothing is counted), or a 503 problem."""
    config = request.app.state.config
    try:
        async with asyncio.timeout(BOOT_PATH_TIMEOUT_S):
            return await bootpath.fetch(config, path, (), preview=False)
    except TimeoutError:
        raise ProblemError(503, f"the boot path at {bootpath.base_url(config)} did not answer {path} within "
                                f"{BOOT_PATH_TIMEOUT_S:g} s") from None


# -- requests per second, from the boot path's counters ---------------------------------------------------


@dataclasses.dataclass(slots=True)
class Rate:
    per_s: float | None  # None until two looks are far enough apart
    waits_per_s: float | None
    over_s: float
    history: list[float]  # per-second rate between consecutive looks, oldest first (the sparkline)


class RequestRate:
    """Boot requests per second between the looks this admin process took at the boot path's counters in the
    last RATE_WINDOW_S: every dashboard refresh is a look, and a boot storm refreshes it several times a second."""

    def __init__(self) -> None:
        self.looks: collections.deque[tuple[float, int, int]] = collections.deque()

    def look(self, now: float, total: int, waits: int) -> Rate:
        if self.looks and total < self.looks[-1][1]:
            self.looks.clear()  # the boot path restarted (or another worker answered): its counters began again
        if not self.looks or now - self.looks[-1][0] >= MIN_LOOK_S:  # closer looks add cost, not precision
            self.looks.append((now, total, waits))
        while len(self.looks) > 2 and now - self.looks[1][0] >= RATE_WINDOW_S:
            self.looks.popleft()
        first = self.looks[0]
        over = now - first[0]
        if over < 0.5:
            return Rate(None, None, over, [])
        looks = list(self.looks)
        history = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(looks, looks[1:], strict=False) if b[0] > a[0]]
        return Rate((total - first[1]) / over, (waits - first[2]) / over, over, history[-SPARK_BARS:])


RATES: dict[str, RequestRate] = {}  # by boot-path URL


def counters(readiness: bytes) -> tuple[int, int]:
    """All boot requests, and those told to wait (an unknown MAC, or a node not ready to boot), from the boot
    path's /readiness JSON."""
    try:
        counts = msgspec.json.decode(readiness, type=RequestCounts)
    except msgspec.DecodeError:
        raise ProblemError(503, "the boot path's /readiness answer has no request counts") from None
    return counts.requests.total, counts.requests.waits


class Totals(msgspec.Struct):
    total: int
    waits: int


class RequestCounts(msgspec.Struct):
    requests: Totals


def sparkline(history: list[float], width: int = 240, height: int = 40) -> list[dict[str, float]]:
    """Bars (x, y, w, h) of an inline SVG, the newest on the right: attributes only, the page's CSP allows no
    style."""
    top = max(history, default=0.0) or 1.0
    step = width / SPARK_BARS
    start = width - step * len(history)
    return [{"x": round(start + n * step, 1), "y": round(height - h, 1), "w": round(step - 1, 1), "h": round(h, 1)}
            for n, h in enumerate(max(1.0, value / top * height) for value in history)]


# -- the sections -------------------------------------------------------------------------------------------


async def inventory(request: Request) -> dict[str, Any]:
    found = await api(request).json("GET", "/hsm/v2/summary")
    types = found["byType"]
    return {"total": found["total"], "types": types, "nodes": types.get("Node")}


async def boot(request: Request) -> dict[str, Any]:
    minutes = window(request)
    native = api(request)
    seen, recent = await asyncio.gather(
        native.json("GET", "/boot/v1/telemetry/summary", query={"minutes": minutes}),
        native.json("GET", "/boot/v1/telemetry", query={"limit": 8}))
    rate: Rate | None = None
    requests = waits = 0
    path_error = None
    try:
        requests, waits = counters((await boot_path(request, "/readiness")).body)
        key = bootpath.base_url(request.app.state.config)
        rate = RATES.setdefault(key, RequestRate()).look(time.monotonic(), requests, waits)
    except ProblemError as exc:
        path_error = exc.problem.detail
    return {"minutes": minutes, "seen": seen, "recent": recent["items"], "rate": rate, "requests": requests,
            "waits": waits, "path_error": path_error, "bars": sparkline(rate.history) if rate else [],
            "workers": request.app.state.config.boot_workers, "at": time.strftime("%H:%M:%S")}


async def services(request: Request) -> dict[str, Any]:
    daemons = await api(request).json("GET", "/sync/v1/status")
    try:
        answer = await boot_path(request, "/readiness")
        ready: dict[str, Any] | None = msgspec.json.decode(answer.body)
        path_error = None
    except ProblemError as exc:
        ready, path_error = None, exc.problem.detail
    except msgspec.DecodeError:
        ready, path_error = None, "the boot path's /readiness answer is not JSON"
    return {"daemons": daemons, "ready": ready, "path_error": path_error,
            "boot_url": bootpath.base_url(request.app.state.config)}


async def discovery(request: Request) -> dict[str, Any]:
    native = api(request)
    running, failed = await asyncio.gather(
        native.json("GET", "/discovery/v1/scans", query={"state": "pending,running", "limit": 5}),
        native.json("GET", "/discovery/v1/scans", query={"state": "failed", "limit": 5}))
    return {"running": running, "failed": failed}


async def power(request: Request) -> dict[str, Any]:
    native = api(request)
    active, latest = await asyncio.gather(
        native.json("GET", "/power/v1/transitions", query={"state": "new,in-progress", "limit": 5}),
        native.json("GET", "/power/v1/transitions", query={"limit": 50}))
    failed = [t for t in latest["items"] if t["counts"].get("failed")]
    return {"active": active, "failed": failed[:5]}


async def audit(request: Request) -> dict[str, Any]:
    return {"entries": await api(request).json("GET", "/auth/v1/audit", query={"limit": 10})}


SECTIONS = (
    Section("boot", "Boot activity", "read:bss", "boot inventory", boot),
    Section("inventory", "Inventory", "read:smd", "inventory", inventory),
    Section("services", "Boot path and sync daemons", "read:smd", "inventory events", services),
    Section("power", "Power", "read:power", "power", power, wide=False),
    Section("discovery", "Discovery", "read:discovery", "discovery", discovery, wide=False),
    Section("audit", "Recent audit events", "read:audit", "events auth", audit),
)


class SharedLoads:
    """One load of a section per version of its topics, shared by every page asking meanwhile.

    A section's data depends only on its own scope, which every page asking
    it holds (the page checks it first), so one user's load serves another's.
    A load is reused at most MAX_AGE_S, as some figures move with time alone
    (the window of recently seen nodes, the request rate).  Kept per admin
    app, on its live hub.
    """

    MAX_AGE_S = 2.0

    @classmethod
    async def get(cls, section: Section, request: Request) -> dict[str, Any]:
        hub = request.app.state.console_live
        slot = (section.name, window(request) if section.name == "boot" else 0)
        version = tuple(hub.versions[topic] for topic in section.topics.split())
        now = time.monotonic()
        held = hub.shared_loads.get(slot)
        if held is not None and held[0] == version and now - held[1] <= cls.MAX_AGE_S:
            try:
                return await asyncio.shield(held[2])
            except asyncio.CancelledError:
                if not held[2].cancelled():
                    raise  # this request was cancelled, not the load
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        hub.shared_loads[slot] = (version, now, future)
        try:
            result = await _load(section, request)
        except asyncio.CancelledError:
            future.cancel()
            hub.shared_loads.pop(slot, None)
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # the pages waiting on it get it; none waiting is no "never retrieved" warning
            hub.shared_loads.pop(slot, None)
            raise
        future.set_result(result)
        return result


async def _load(section: Section, request: Request) -> dict[str, Any]:
    """What the section shows, or why it cannot: one failing source does not take the page down."""
    try:
        return {"data": await section.load(request), "error": None}
    except (NativeError, ProblemError) as exc:
        return {"data": None, "error": exc.problem.detail or exc.problem.title}


async def loaded(section: Section, request: Request) -> dict[str, Any]:
    return await SharedLoads.get(section, request)


def src(section: Section, request: Request) -> str:
    return f"/ui/dashboard/{section.name}" + (f"?minutes={window(request)}" if section.name == "boot" else "")


@pages.get("/ui/", scope="read:smd")
async def dashboard(request: Request) -> Response:
    session = session_of(request)
    shown = [s for s in SECTIONS if session.can(s.scope)]
    results = await asyncio.gather(*(loaded(s, request) for s in shown))
    return render(request, "dashboard.html", sections=[(s, src(s, request), r) for s, r in zip(shown, results,
                                                                                                strict=True)],
                  minutes=window(request), windows=WINDOWS)


def fragment(section: Section) -> Callable[[Request], Awaitable[Response]]:
    async def page(request: Request) -> Response:
        result = await loaded(section, request)
        if wants_fragment(request):
            return render(request, f"dashboard/{section.name}.html", section=section, **result)
        return render(request, "dashboard.html", sections=[(section, src(section, request), result)],
                      minutes=window(request), windows=WINDOWS)
    return page


for _section in SECTIONS:
    pages.get(f"/ui/dashboard/{_section.name}", scope=_section.scope)(fragment(_section))
