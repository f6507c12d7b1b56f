"""Benchmarks: pytest-benchmark suites (test_bench_*.py) and the boot-storm harness."""
