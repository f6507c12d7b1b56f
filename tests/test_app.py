"""The boot path as a real server (granian, RSGI and ASGI) over a real socket."""

import asyncio
import time
import urllib.request

import msgspec
import pytest

from tests.helpers.exposition import key, samples
from tests.helpers.polling import wait_until
from tests.helpers.seed import seed_cluster


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
async def test_serves_scripts_and_cloud_init(conn, boot_server, interface):
    await seed_cluster(conn)
    server = boot_server(interface)
    status, headers, body = server.get("/boot/v1/bootscript?mac=52-54-00-00-00-01")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert body.startswith(b"#!ipxe\nkernel --name kernel http://images/vmlinuz console=ttyS0 hostname=node-1 ")
    assert f"ds=nocloud-net;s=http://127.0.0.1:{server.port}/cloud-init/node-1/".encode() in body

    status, headers, body = server.get("/cloud-init/node-1/meta-data")
    meta = msgspec.json.decode(body)
    assert status == 200 and meta["cluster"] == "test" and meta["local-hostname"] == "node-1"
    # By requester IP: the test client is 127.0.0.1, which node-1 owns.
    assert server.get("/cloud-init/user-data") == (200, server.get("/cloud-init/user-data")[1],
                                                   b"#cloud-config\nhostname: x\n")
    assert server.get("/cloud-init/meta-data")[2] == body

    status, headers, body = server.get("/boot/v1/bootscript?mac=00:00:00:00:00:99")
    assert status == 200 and b"sleep 10" in body
    status, headers, body = server.get("/boot/v1/bootscript")
    assert status == 400 and headers["content-type"] == "application/problem+json"
    assert server.get("/cloud-init/nobody/meta-data")[0] == 404

    request = urllib.request.Request(server.url + "/boot/v1/bootscript?mac=52:54:00:00:00:01", method="POST", data=b"x")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 405
    assert info.value.headers["allow"] == "GET, HEAD"
    assert info.value.headers["content-type"] == "application/problem+json"
    info.value.close()
    # Both interfaces answer through one path, so both count the refusal alike.
    metrics = samples(server.get("/metrics")[2])
    assert metrics[key("chamicore_boot_requests_total", endpoint="other", outcome="bad_request")] == 1


async def test_admin_edit_reaches_the_wire_in_milliseconds(conn, boot_server):
    await seed_cluster(conn)
    server = boot_server()
    await conn.execute("UPDATE bss.boot_params SET kernel = 'http://images/vmlinuz-2' WHERE id = 'compute'")
    started = time.perf_counter()
    wait_until(lambda: b"vmlinuz-2" in server.get("/boot/v1/bootscript?mac=52:54:00:00:00:01")[2], timeout=5,
               interval=0.002)
    assert time.perf_counter() - started < 2.0  # generous on a shared machine; bench/ measures it properly


async def test_forwarded_for_only_from_trusted_proxies(conn, boot_server):
    await seed_cluster(conn)
    untrusted = boot_server()
    assert untrusted.get("/cloud-init/meta-data", {"X-Forwarded-For": "10.0.0.7"})[2].find(b'"node-1"') > 0
    trusted = boot_server(CHAMICORE_TRUSTED_PROXIES="127.0.0.0/8")
    body = trusted.get("/cloud-init/meta-data", {"X-Forwarded-For": "203.0.113.9, 10.0.0.7"})[2]
    assert msgspec.json.decode(body)["component-id"] == "node-2"


async def test_configured_boot_url_is_advertised(conn, boot_server):
    await seed_cluster(conn)
    server = boot_server(CHAMICORE_BOOT_URL="http://boot.cluster:80")
    body = server.get("/boot/v1/bootscript?mac=52:54:00:00:00:01", {"Host": "other"})[2]
    assert b"s=http://boot.cluster:80/cloud-init/node-1/" in body
    assert b"chain http://boot.cluster:80/boot/v1/bootscript?mac=52:54:00:00:00:01&retry=1" in body


async def test_telemetry_and_metrics(conn, boot_server):
    await seed_cluster(conn)
    server = boot_server()
    for _ in range(3):
        server.get("/boot/v1/bootscript?mac=52:54:00:00:00:01")
    server.get("/cloud-init/node-1/user-data")

    async def row():
        return await conn.fetchrow("SELECT * FROM bss.boot_telemetry WHERE component_id = 'node-1'")

    deadline = time.monotonic() + 5
    while (found := await row()) is None or found["requests"] < 4:
        assert time.monotonic() < deadline, "telemetry never flushed"
        await asyncio.sleep(0.05)
    assert found["endpoint"] == "cloud-init" and str(found["source_ip"]) == "127.0.0.1"

    metrics = samples(server.get("/metrics")[2])
    assert metrics[key("chamicore_boot_requests_total", endpoint="bootscript", outcome="ok")] == 3
    assert metrics[key("chamicore_boot_index_nodes")] == 2
    assert metrics[key("chamicore_boot_request_seconds_count", endpoint="bootscript", outcome="ok")] == 3
    assert metrics[key("chamicore_boot_request_seconds_count", endpoint="cloud-init", outcome="ok")] == 1
    server.get("/boot/v1/bootscript?mac=52:54:00:99:99:99")  # an unknown MAC is told to wait
    readiness = msgspec.json.decode(server.get("/readiness")[2])
    assert readiness["status"] == "ready" and readiness["nodes"] == 2 and readiness["feed"]["state"] == "live"
    assert readiness["requests"] == {"total": 5, "waits": 1}
