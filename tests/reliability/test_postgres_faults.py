"""The boot path when PostgreSQL is late or restarts: nodes keep getting answers, the index catches up."""

import asyncio
import threading
import time
import urllib.error
import urllib.request

import msgspec
import pytest

from bench import fleet
from bench.storm import run_storm
from core import db, migrate
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir
from tests.helpers.paths import tmp_root
from tests.helpers.polling import wait_until
from tests.helpers.ports import free_port
from tests.helpers.seed import seed_cluster


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
def test_not_ready_until_postgres_is_up_and_nodes_asked_to_retry(boot_server, interface):
    cluster = EmbeddedPostgres(tmp_root() / "late", port=free_port(),
                               bin_dir=pgserver_bin_dir() or system_bin_dir(), durable=False)
    try:
        server = boot_server(interface, server_dsn=cluster.dsn, wait_ready=False)
        status, _, body = server.get("/readiness")
        assert status == 503 and msgspec.json.decode(body)["status"] == "loading"
        # Not a "wait" script, nor a 404 for cloud-init: nothing answered from an empty index. iPXE asks again
        # after Retry-After; a load balancer asks another replica.
        status, headers, body = server.get("/boot/v1/bootscript?mac=52:54:00:00:00:01")
        assert status == 503 and {k.lower(): v for k, v in headers.items()}["retry-after"] == "1", body
        assert server.get("/cloud-init/node-1/meta-data")[0] == 503
        # A phone-home too: an empty index knows no node, and a 404 would be a wrong answer, not a late one.
        phoned = urllib.request.Request(f"{server.url}/cloud-init/phone-home", data=b"instance_id=N/A", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(phoned, timeout=5)
        with refused.value:
            assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "1"

        cluster.start()

        async def prepare():
            c = await db.connect(cluster.dsn)
            await migrate.migrate(c)
            await seed_cluster(c)
            await c.close()

        asyncio.run(prepare())
        wait_until(lambda: server.get("/readiness")[0] == 200, timeout=20, interval=0.1)
        assert b"kernel --name kernel" in server.get("/boot/v1/bootscript?mac=52:54:00:00:00:01")[2]
    finally:
        cluster.destroy()


def test_postgres_restart_during_requests_loses_nothing(boot_server, pg_cluster, dsn):
    async def prepare():
        c = await db.connect(dsn)
        await seed_cluster(c)
        await c.close()

    asyncio.run(prepare())
    server = boot_server()
    failures, answered = [], [0]
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            status, _, body = server.get("/boot/v1/bootscript?mac=52:54:00:00:00:01")
            if status != 200 or b"kernel --name kernel" not in body:
                failures.append((status, body[:100]))
            answered[0] += 1

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        pg_cluster.restart()
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == [] and answered[0] > 50

    async def change():
        c = await db.connect(dsn)
        await c.execute("UPDATE bss.boot_params SET kernel = 'http://images/after-restart' WHERE id = 'compute'")
        await c.close()

    asyncio.run(change())  # heard only if the feed reconnected and resynced
    wait_until(lambda: b"after-restart" in server.get("/boot/v1/bootscript?mac=52:54:00:00:00:01")[2], timeout=15)


async def test_postgres_restart_during_a_boot_storm(conn, boot_server, pg_cluster, dsn):
    """2,000 nodes boot over 3 s (script, then the three cloud-init documents); PostgreSQL restarts at 1 s."""
    await fleet.seed(conn, 1500)
    server = boot_server()
    storm = asyncio.create_task(run_storm("127.0.0.1", server.port, nodes=2000, registered=1500, timeout=30,
                                          ramp=3.0))
    await asyncio.sleep(1.0)
    await asyncio.to_thread(pg_cluster.restart)
    summary = (await storm).summary()
    assert summary["errors"] == 0, summary["error_samples"]
    assert summary["answered_connections"] == 2000
    assert summary["requests"] == 1500 * 4 + 500 * 2

    # The feed reconnected and resynced: a change made after the restart reaches the wire.
    after = await db.connect(dsn)
    try:
        await after.execute("UPDATE bss.boot_params SET kernel = 'http://images/after-restart'")
    finally:
        await after.close()
    await asyncio.to_thread(wait_until, lambda: b"after-restart" in server.get(
        f"/boot/v1/bootscript?mac={fleet.mac_of(1)}")[2], 15)
