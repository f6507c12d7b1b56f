"""The dashboard: the cluster at a glance, updated live."""

from __future__ import annotations

from admin_api.console.web import Pages

pages = Pages()
