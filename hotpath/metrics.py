"""The boot path's metrics: counted in place on every request, exposed through prometheus_client when scraped.

prometheus_client's own Counter.inc() plus Histogram.observe() cost 3.6 us a request (8.7 us in its
multiprocess mode, which locks and writes a memory map per value) where adding to two lists costs 0.3 us,
and a whole answer takes tens of microseconds.  So a worker counts into plain lists, and BootCollector turns
them into standard counter, histogram and gauge families when /metrics is asked (prometheus_client writes
the exposition).

With several workers, each one counts straight into a memory-mapped file of its own in the service's
metrics directory (PROMETHEUS_MULTIPROC_DIR, which `chamicore serve` creates empty at start; a float64 slot
costs a few tenths of a microsecond more than a list item) and copies its gauges there every PUBLISH_S:
whichever worker a scrape reaches adds its siblings' files to its own figures, so it answers for the whole
service.  The counts of a worker that has exited stay in the sums (a worker restart does not make a counter
go down); its gauges no longer count.
"""

from __future__ import annotations

import mmap
import os
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

ENDPOINTS = ("bootscript", "boot.ipxe", "cloud-init", "other")
OUTCOMES = ("ok", "wait", "bad_request", "not_found")
# Seconds; a boot-path answer should sit in the first buckets.
BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25)
PUBLISH_S = 1.0

# Read from the worker's state when scraped (and every PUBLISH_S with several workers), not per request:
# (name, how the workers' values combine, help).
GAUGES: tuple[tuple[str, Callable[[Iterable[float]], float], str], ...] = (
    ("chamicore_boot_index_nodes", max, "Nodes in the index."),
    ("chamicore_boot_index_macs", max, "MAC addresses in the index."),
    ("chamicore_boot_index_age_seconds", max, "Time since the index last changed."),
    ("chamicore_boot_index_build_seconds", max, "Time the last full build of the index (load and render) took."),
    ("chamicore_boot_feed_live", min, "1 when the change feed of every worker listens, else 0."),
    ("chamicore_boot_feed_lag_seconds", max, "Time from a change's notification to the live index, last change."),
    ("chamicore_boot_telemetry_pending", sum, "Nodes whose boot telemetry waits to be written."),
    ("chamicore_boot_telemetry_flush_seconds", max, "Time the last boot telemetry flush took."),
)
COUNTERS = (
    ("chamicore_boot_feed_full_reloads", "Full reloads of the index from the database."),
    ("chamicore_boot_feed_notifications", "Change notifications heard."),
    ("chamicore_boot_telemetry_rows", "Boot telemetry rows written to the database."),
)

_CELLS = len(ENDPOINTS) * len(OUTCOMES)  # one per (endpoint, outcome)
_BINS = len(BUCKETS) + 1  # the buckets and +Inf, not cumulative
# A worker's figures as one row of float64: [live] [counts: _CELLS x _BINS] [sums: _CELLS] [gauges] [counters]
_COUNTS = 1
_SUMS = _COUNTS + _CELLS * _BINS
_GAUGES = _SUMS + _CELLS
_TOTALS = _GAUGES + len(GAUGES)
SLOTS = _TOTALS + len(COUNTERS)
_SIZE = SLOTS * 8
SUFFIX = ".bootmetrics"


class BootMetrics:
    """One worker's figures: request counts and latency sums (in lists, or in its shared file once `share`d),
    the rest set by `update`."""

    __slots__ = ("counts", "sums", "gauges", "running", "path", "_shared")
    # observe() spells the layout's sizes out: a constant there costs less than a global lookup per request.
    assert len(OUTCOMES) == 4 and _BINS == 11

    def __init__(self) -> None:
        self.counts: list[float] | memoryview[float] = [0.0] * (_CELLS * _BINS)
        self.sums: list[float] | memoryview[float] = [0.0] * _CELLS
        self.gauges = [0.0] * len(GAUGES)
        self.running = [0.0] * len(COUNTERS)
        self.path: Path | None = None
        self._shared: memoryview[float] | None = None

    def observe(self, endpoint: int, outcome: int, seconds: float) -> None:
        cell = endpoint * 4 + outcome  # 4: len(OUTCOMES)
        self.counts[cell * 11 + bisect_left(BUCKETS, seconds)] += 1  # 11: _BINS
        self.sums[cell] += seconds

    @property
    def requests(self) -> list[list[int]]:
        """This worker's request counts, [endpoint][outcome]."""
        counts = self.counts
        return [[int(sum(counts[(e * len(OUTCOMES) + o) * _BINS:(e * len(OUTCOMES) + o + 1) * _BINS]))
                 for o in range(len(OUTCOMES))]
                for e in range(len(ENDPOINTS))]

    def totals(self) -> dict[str, int]:
        """All requests, and those told to wait (an unknown MAC, or a node not ready): /readiness shows them, so
        a reader (the console's dashboard) needs no exposition parsing."""
        wait = OUTCOMES.index("wait")
        return {"total": sum(map(sum, self.requests)), "waits": sum(row[wait] for row in self.requests)}

    def update(self, gauges: Sequence[float], counters: Sequence[float]) -> None:
        """This worker's gauges and running totals, in the order of GAUGES and COUNTERS."""
        self.gauges[:] = gauges
        self.running[:] = counters

    def row(self, live: bool = True) -> array:
        return array("d", [1.0 if live else 0.0, *self.counts, *self.sums, *self.gauges, *self.running])

    # -- shared with the other workers of the service --------------------

    def share(self, directory: str) -> None:
        """Count in this worker's file in `directory` from now on (called in the worker, at start-up)."""
        path = Path(directory) / f"{os.getpid()}{SUFFIX}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, _SIZE)
            shared = memoryview(mmap.mmap(fd, _SIZE)).cast("d")
        finally:
            os.close(fd)
        shared[:] = memoryview(self.row())
        self._shared, self.path = shared, path
        self.counts, self.sums = shared[_COUNTS:_SUMS], shared[_SUMS:_GAUGES]

    def publish(self, live: bool = True) -> None:
        """Copy this worker's gauges and totals to its file (its counts are there already); `live=False` when it
        stops (its counts stay in the sums, its gauges leave them)."""
        if self._shared is not None:
            self._shared[_GAUGES:] = array("d", [*self.gauges, *self.running])
            self._shared[0] = 1.0 if live else 0.0


def _other_workers(own: BootMetrics) -> Iterator[tuple[Sequence[float], bool]]:
    """(figures, alive) of every other worker of the service that published."""
    if own.path is None:
        return
    for path in own.path.parent.glob(f"*{SUFFIX}"):
        if path == own.path:
            continue
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        if len(data) != _SIZE:  # a worker between creating its file and sizing it
            continue
        row = memoryview(data).cast("d")
        yield row, row[0] == 1.0 and _running(int(path.name.removesuffix(SUFFIX)))


def _running(pid: int) -> bool:
    """Whether process `pid` still runs (a worker killed outright never said it stopped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BootCollector(Collector):
    """The service's figures: this worker's (brought up to date by `refresh` first) and its siblings'."""

    def __init__(self, metrics: BootMetrics, refresh: Callable[[], None]) -> None:
        self.metrics = metrics
        self.refresh = refresh

    def collect(self) -> Iterable[Metric]:
        self.refresh()
        workers = [(self.metrics.row(), True), *_other_workers(self.metrics)]
        requests = CounterMetricFamily("chamicore_boot_requests", "Boot-path requests by endpoint and outcome.",
                                       labels=("endpoint", "outcome"))
        latency = HistogramMetricFamily("chamicore_boot_request_seconds",
                                        "Time to answer one boot-path request, in the worker.",
                                        labels=("endpoint", "outcome"))
        for e, endpoint in enumerate(ENDPOINTS):
            for o, outcome in enumerate(OUTCOMES):
                cell = e * len(OUTCOMES) + o
                first = _COUNTS + cell * _BINS
                bins = [sum(row[first + b] for row, _ in workers) for b in range(_BINS)]
                total = sum(bins)
                requests.add_metric((endpoint, outcome), total)
                if total:  # a histogram for what happens; every counter, so that rates start from 0
                    cumulative, buckets = 0.0, []
                    for bound, count in zip((*BUCKETS, float("inf")), bins, strict=True):
                        cumulative += count
                        buckets.append((floatToGoString(bound), cumulative))
                    latency.add_metric((endpoint, outcome), buckets, sum(row[_SUMS + cell] for row, _ in workers))
        yield requests
        yield latency
        alive = [row for row, live in workers if live]
        for n, (name, combine, help_) in enumerate(GAUGES):
            yield GaugeMetricFamily(name, help_, value=combine(row[_GAUGES + n] for row in alive))
        yield GaugeMetricFamily("chamicore_boot_workers", "Worker processes serving the boot path.", value=len(alive))
        for n, (name, help_) in enumerate(COUNTERS):
            yield CounterMetricFamily(name, help_, value=sum(row[_TOTALS + n] for row, _ in workers))
