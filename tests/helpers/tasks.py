"""Daemons' run loops as tasks in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib


async def stop_task(task: asyncio.Task, attempts: int = 5) -> None:
    """Cancel a daemon's run() and wait for its cleanup (its finally closes its database connection).

    Cancelled again if it is still running 5 s later: nats-py can swallow a cancellation that lands while
    it waits for a publish's ack, and the relay then carries on (seen once a few CI runs, as a hang)."""
    for _ in range(attempts):
        task.cancel()
        done, _pending = await asyncio.wait({task}, timeout=5)
        if done:
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return
    raise AssertionError(f"{task.get_name()} did not stop after {attempts} cancellations")


@contextlib.asynccontextmanager
async def running(job):
    """A sync job's real run loop (leadership, wake-ups) in this event loop, for the length of the block."""
    task = asyncio.create_task(job.run())
    try:
        yield job
    finally:
        await stop_task(task)
