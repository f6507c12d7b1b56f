"""Fault injection against the real parts.  The admin API fixtures are shared with tests/admin/."""

from tests.admin.conftest import admin_app, anonymous, api  # noqa: F401 - fixtures used by the tests here
from tests.test_kea import kea  # noqa: F401 - the real Kea, shared with tests/test_kea.py
