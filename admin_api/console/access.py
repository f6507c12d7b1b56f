"""Access: users, service accounts, roles, policies, device credentials, revocation."""

from __future__ import annotations

from admin_api.console.web import Pages

pages = Pages()
