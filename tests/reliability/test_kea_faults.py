"""Kea stopped and started under the sync daemon: reservations converge, nothing crashes."""

import asyncio

from sync.kea import KeaSync
from tests.helpers.kea import eventually
from tests.helpers.seed import add_node
from tests.helpers.tasks import stop_task


async def test_kea_restart_converges(conn, dsn, kea):
    sync = KeaSync(dsn, kea.url, "http://10.0.0.1:27778", next_server="10.0.0.1")
    task = asyncio.create_task(sync.run())
    try:
        await add_node(conn, "node-a", ["52:54:00:00:0a:01"], ips=["10.1.0.10"])
        await eventually(lambda: "52:54:00:00:0a:01" in kea.reservations())
        kea.stop()
        await add_node(conn, "node-b", ["52:54:00:00:0b:01"], ips=["10.2.0.20"])  # while Kea is away
        await asyncio.sleep(1.0)
        assert sync.last_error is not None  # it noticed, did not crash
        kea.start()  # from its written config: node-a is there, node-b comes with the next pass
        await eventually(lambda: {"52:54:00:00:0a:01", "52:54:00:00:0b:01"} <= set(kea.reservations()), 30)
    finally:
        await stop_task(task)
