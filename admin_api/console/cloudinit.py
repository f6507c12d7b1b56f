"""Cloud-init: payloads by scope, with a live user-data preview and conflict handling."""

from __future__ import annotations

from admin_api.console.web import Pages

pages = Pages()
