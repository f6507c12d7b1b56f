"""The web console: server-rendered pages over the REST operations, under /ui/ (admin_api/console/web.py)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from admin_api.console import (
    access,
    account,
    audit,
    bootconfig,
    cloudinit,
    dashboard,
    discovery,
    importer,
    inventory,
    login,
    power,
    web,
)
from admin_api.console.live import LiveHub

PAGES: list[web.Pages] = [login.pages, account.pages, dashboard.pages, inventory.pages, bootconfig.pages,
                          cloudinit.pages, discovery.pages, power.pages, access.pages, audit.pages, importer.pages]


def routes() -> list[BaseRoute]:
    return [
        Route("/", login.to_console, methods=["GET"]),
        Route("/ui", login.to_console, methods=["GET"]),
        Route("/ui/login", login.login_page, methods=["GET", "POST"]),
        Mount("/ui/static", StaticFiles(directory=web.static_dir()), name="console-static"),
        *web.routes(PAGES),
    ]


__all__ = ["PAGES", "LiveHub", "routes"]
