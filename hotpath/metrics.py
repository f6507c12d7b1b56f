"""Prometheus text metrics of one boot-path worker, kept in plain counters."""

from __future__ import annotations

import bisect

ENDPOINTS = ("bootscript", "boot.ipxe", "cloud-init", "other")
OUTCOMES = ("ok", "wait", "bad_request", "not_found")
# Seconds; a boot-path answer should sit in the first buckets.
BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25)


class BootMetrics:
    __slots__ = ("requests", "buckets", "latency_sum", "latency_count")

    def __init__(self) -> None:
        self.requests = [[0] * len(OUTCOMES) for _ in ENDPOINTS]
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0

    def observe(self, endpoint: int, outcome: int, seconds: float) -> None:
        self.requests[endpoint][outcome] += 1
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def totals(self) -> dict[str, int]:
        """All requests, and those told to wait (an unknown MAC, or a node not ready): /readiness shows them, so
        a reader (the console's dashboard) needs no exposition parsing."""
        wait = OUTCOMES.index("wait")
        return {"total": sum(map(sum, self.requests)), "waits": sum(row[wait] for row in self.requests)}

    def render(self, gauges: dict[str, float]) -> bytes:
        lines = [
            "# HELP chamicore_boot_requests_total Boot-path requests by endpoint and outcome.",
            "# TYPE chamicore_boot_requests_total counter",
        ]
        for e, endpoint in enumerate(ENDPOINTS):
            for o, outcome in enumerate(OUTCOMES):
                lines.append(f'chamicore_boot_requests_total{{endpoint="{endpoint}",outcome="{outcome}"}} '
                             f"{self.requests[e][o]}")
        lines += [
            "# HELP chamicore_boot_request_seconds Time to answer one boot-path request, in the worker.",
            "# TYPE chamicore_boot_request_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip(BUCKETS, self.buckets, strict=False):
            cumulative += count
            lines.append(f'chamicore_boot_request_seconds_bucket{{le="{bound}"}} {cumulative}')
        lines.append(f'chamicore_boot_request_seconds_bucket{{le="+Inf"}} {self.latency_count}')
        lines.append(f"chamicore_boot_request_seconds_sum {self.latency_sum:.9f}")
        lines.append(f"chamicore_boot_request_seconds_count {self.latency_count}")
        for name, value in gauges.items():
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {value}")
        return ("\n".join(lines) + "\n").encode()
