"""The live hub: a burst of NOTIFYs is announced to every page at most once per interval, and the last one
is never lost (a storm's final state reaches the pages)."""

from __future__ import annotations

import asyncio

from admin_api.console import live
from admin_api.console.live import LiveHub


async def test_a_burst_is_announced_once_per_interval_and_its_end_is_not_lost(monkeypatch):
    monkeypatch.setattr(live, "INTERVAL_S", {"boot": 0.3})
    hub = LiveHub("postgresql://unused")
    with hub.subscribe() as page, hub.subscribe() as other:
        for _ in range(50):  # a telemetry flush per worker, and more
            hub.notify("boot")
            await asyncio.sleep(0.01)
        hub.notify("power")  # another topic is not held back by this one's interval
        announced = [page.get_nowait() for _ in range(page.qsize())]
        assert announced.count("boot") == 1 and "power" in announced
        assert [other.get_nowait() for _ in range(other.qsize())] == announced  # every page hears the same
        first = hub.versions["boot"]
        await asyncio.sleep(0.4)  # the interval passes: what came since is announced once, not dropped
        assert hub.versions["boot"] == first + 1 and "boot" in [page.get_nowait() for _ in range(page.qsize())]
        await asyncio.sleep(0.4)
        assert hub.versions["boot"] == first + 1  # nothing more was pending
