"""Daemons' run loops as tasks in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib


async def stop_task(task: asyncio.Task, timeout: float = 15.0) -> None:
    """Cancel a daemon's run() once and wait for its cleanup (its finally closes its database connection).

    One cancellation must stop it within `timeout` seconds (bounded closes included), even one that a library
    swallowed on the way (sync.service.raise_if_cancelled): the daemon's own shutdown cancels only once."""
    task.cancel()
    done, _pending = await asyncio.wait({task}, timeout=timeout)
    if not done:
        raise AssertionError(f"{task.get_name()} still ran {timeout} s after its cancellation")
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
