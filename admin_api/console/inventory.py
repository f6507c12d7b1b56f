"""Inventory: components with filters, sorting and paging, bulk actions, and each node's page."""

from __future__ import annotations

from admin_api.console.web import Pages

pages = Pages()
