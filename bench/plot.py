"""A PNG of the boot-storm results: latency percentiles and throughput per server."""

from __future__ import annotations

from pathlib import Path


def plot_bootstorm(results: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the figures are in JSON and Markdown already
        return None
    servers = results["servers"]
    names = [entry["name"].replace(" per request", "\nper request").replace(", ", ",\n") for entry in servers.values()]
    fig, (throughput, latency) = plt.subplots(1, 2, figsize=(13, 5))
    rates = [entry["wrk_1000"]["req_per_s"] for entry in servers.values()]
    throughput.barh(names, rates, color="#4477aa")
    throughput.set_xlabel("requests/s (wrk, 1,000 connections, one server core)")
    throughput.set_title("Throughput")
    for i, rate in enumerate(rates):
        throughput.text(rate, i, f" {rate:,}", va="center", fontsize=8)
    held = [entry.get("held", {}) for entry in servers.values()]
    width = 0.25
    for k, (key, color) in enumerate((("p50_ms", "#66ccee"), ("p99_ms", "#ee6677"), ("max_ms", "#aa3377"))):
        values = [h.get(key, 0) or 0 for h in held]
        latency.barh([i + (k - 1) * width for i in range(len(names))], values, height=width, color=color,
                     label=key.replace("_ms", ""))
    latency.set_yticks(range(len(names)), names)
    latency.set_xscale("log")
    latency.set_xlabel(f"ms, log scale ({results['nodes']:,} held connections asking over {results['ramp']} s)")
    latency.set_title("Latency per request")
    latency.legend()
    fig.suptitle(f"Chamicore boot storm, {results['nodes']:,} registered nodes ({results['when']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
