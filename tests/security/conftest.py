"""Regression tests for security findings: each failed before its fix.  The admin API fixtures are shared with tests/admin/."""

from tests.admin.conftest import admin_app, anonymous, api  # noqa: F401 - fixtures used by the tests here
