"""A sync daemon stops on one cancellation, even one a library swallowed (sync.service.raise_if_cancelled)."""

import asyncio

import asyncpg

from sync.service import Job


class AckWaitingJob(Job):
    """Each pass waits for a reply the way nats-py waits for a publish's ack (asyncio.wait_for), and always has
    more to do, like a relay behind a burst."""

    name = "test-ack-waiting"
    channel = None

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.reply: asyncio.Future | None = None
        self.waiting = asyncio.Event()

    async def work_once(self, conn: asyncpg.Connection) -> bool:
        self.reply = asyncio.get_running_loop().create_future()
        self.waiting.set()
        await asyncio.wait_for(self.reply, 5)
        return True


async def test_a_cancellation_swallowed_with_an_ack_still_stops_the_job(dsn):
    job = AckWaitingJob(dsn)
    task = asyncio.create_task(job.run())
    try:
        await asyncio.wait_for(job.waiting.wait(), 20)
        assert job.reply is not None
        # The ack and the cancellation in one loop turn: Python 3.11's wait_for returns the ack and drops the
        # cancellation (what hung the outbox relay's stop in CI).
        job.reply.set_result(None)
        task.cancel()
        done, _pending = await asyncio.wait({task}, timeout=10)
        assert done, "the job carried on after its cancellation"
        assert task.cancelled()
        assert job.passes == 1  # it finished the pass in hand and started no other
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=10)
