"""Power: transitions on nodes or groups, per-node progress live, abort."""

from __future__ import annotations

from admin_api.console.web import Pages

pages = Pages()
