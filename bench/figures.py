"""Figures the benchmark suites record, printed as a summary at the end of the run."""

from __future__ import annotations

RESULTS: dict[str, float] = {}
# (compiled, baseline) pairs whose median ratio is printed at the end.
RATIOS = [
    ("test_render_one_node[compiled]", "test_render_one_node[python-twin]"),
    ("test_dispatch_one_request[compiled]", "test_dispatch_one_request[python-twin]"),
]
FIGURES: list[str] = []


def record(benchmark, name: str) -> None:
    RESULTS[name] = benchmark.stats.stats.median
