"""The audit log, with filters."""

from __future__ import annotations

from admin_api.console.web import Pages

pages = Pages()
