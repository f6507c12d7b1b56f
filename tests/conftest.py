"""Real parts for the tests: one throwaway PostgreSQL cluster per test session,
a freshly migrated database per test, boot-path and admin servers on free ports,
the admin API in-process, and a real Kea.  Library code is in tests/helpers/."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.servers",
    "tests.fixtures.admin",
    "tests.fixtures.kea",
]
