"""Discovery: targets, scans and their per-host progress, live."""

from __future__ import annotations

from admin_api.console.web import Pages

pages = Pages()
