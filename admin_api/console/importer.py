"""Import: a file of nodes, its dry-run diff, then the import."""

from __future__ import annotations

from admin_api.console.web import Pages

pages = Pages()
