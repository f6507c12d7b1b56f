"""Boot configuration: boot parameters by scope, with a live script preview and conflict handling."""

from __future__ import annotations

from admin_api.console.web import Pages

pages = Pages()
