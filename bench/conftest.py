"""Fixtures for the pytest-benchmark suites, and the summary of their figures."""

from __future__ import annotations

import asyncio

import pytest

from bench import fleet
from bench.figures import FIGURES, RATIOS, RESULTS
from core import db
from tests.helpers.postgres import create_database

pytest_plugins = ["tests.fixtures.postgres"]  # the session PostgreSQL

@pytest.fixture(scope="session")
def fleet_dsn(pg_cluster):
    """A database with 100,000 seeded nodes, shared by the index benchmarks."""

    async def prepare():
        dsns = {}
        for nodes in (1_000, 10_000, 100_000):
            dsn = await create_database(pg_cluster)
            conn = await db.connect(dsn)
            await fleet.seed(conn, nodes)
            await conn.execute("ANALYZE")
            await conn.close()
            dsns[nodes] = dsn
        return dsns

    return asyncio.run(prepare())


def pytest_terminal_summary(terminalreporter):
    if not RESULTS and not FIGURES:
        return
    terminalreporter.section("chamicore figures")
    for compiled, baseline in RATIOS:
        if compiled in RESULTS and baseline in RESULTS:
            terminalreporter.write_line(
                f"{compiled.split('[')[0]}: compiled {RESULTS[compiled] * 1e6:.2f} us, "
                f"twin {RESULTS[baseline] * 1e6:.2f} us, speed-up x{RESULTS[baseline] / RESULTS[compiled]:.1f}")
    for line in FIGURES:
        terminalreporter.write_line(line)
