"""Daemons' run loops as tasks in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib


async def stop_task(task: asyncio.Task) -> None:
    """Cancel a daemon's run() and wait for its cleanup (its finally closes its database connection)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def running(job):
    """A sync job's real run loop (leadership, wake-ups) in this event loop, for the length of the block."""
    task = asyncio.create_task(job.run())
    try:
        yield job
    finally:
        await stop_task(task)
