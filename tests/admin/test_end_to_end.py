"""Admin API and boot path as real servers: what an admin creates, a node boots."""

import asyncio
import json
import time
import urllib.request

from tests.helpers.polling import wait_until
from tests.helpers.tokens import token_for


def call(server, method, path, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    auth = {"Authorization": f"Bearer {server.token}"} if getattr(server, "token", None) else {}
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **auth, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def test_created_node_boots_and_edits_propagate(admin_server, boot_server, dsn):
    admin = admin_server()
    admin.token = asyncio.run(token_for(admin.url, dsn))
    boot = boot_server()
    status, _, body = call(admin, "POST", "/hsm/v2/State/Components", {"metadata": {"id": "node-e2e"}, "spec": {
        "type": "Node", "role": "Compute", "nid": 7, "state": "Ready",
        "networkInterfaces": [{"macAddr": "52:54:00:e2:e2:01", "ipAddrs": [{"ipAddress": "10.9.0.7"}]}]}})
    assert status == 201, body
    status, _, body = call(admin, "POST", "/boot/v1/bootparams", {"metadata": {"id": "compute"}, "spec": {
        "role": "Compute", "kernel": "http://images/vmlinuz", "initrd": "http://images/initrd",
        "cmdline": "console=ttyS0 nid={{nid}}"}})
    assert status == 201, body
    etag = json.loads(body)["metadata"]["etag"]

    script = wait_until(lambda: (b := boot.get("/boot/v1/bootscript?mac=52-54-00-E2-E2-01")[2]) and
                        b"kernel --name kernel" in b and b, timeout=5)
    assert b"http://images/vmlinuz console=ttyS0 nid=7 initrd=initrd BOOTIF=01-52-54-00-e2-e2-01" in script

    started = time.perf_counter()
    status, _, body = call(admin, "PUT", "/boot/v1/bootparams/compute", {"spec": {
        "role": "Compute", "kernel": "http://images/vmlinuz-new", "initrd": "http://images/initrd"}},
        {"If-Match": etag})
    assert status == 200, body
    wait_until(lambda: b"vmlinuz-new" in boot.get("/boot/v1/bootscript?mac=52:54:00:e2:e2:01")[2], timeout=5,
               interval=0.002)
    assert time.perf_counter() - started < 2

    status, _, body = call(admin, "POST", "/hsm/v2/nodes/node-e2e/decommission")
    assert status == 200, body
    wait_until(lambda: b"no node is registered" in boot.get("/boot/v1/bootscript?mac=52:54:00:e2:e2:01")[2],
               timeout=5)

    # The boot path's telemetry shows up on the admin side.
    wait_until(lambda: call(admin, "GET", "/boot/v1/telemetry/node-e2e")[0] == 200, timeout=5)
    seen = json.loads(call(admin, "GET", "/boot/v1/telemetry/node-e2e")[2])
    assert seen["endpoint"] == "bootscript" and seen["requests"] >= 2


def test_admin_refuses_garbage_over_the_wire(admin_server, dsn):
    admin = admin_server()
    status, headers, _ = call(admin, "GET", "/hsm/v2/State/Components")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    admin.token = asyncio.run(token_for(admin.url, dsn))
    status, headers, body = call(admin, "POST", "/hsm/v2/State/Components", None)
    assert status in (400, 422) and headers["content-type"] == "application/problem+json"
    request = urllib.request.Request(admin.url + "/hsm/v2/State/Components", data=b"{" * 10 + b"\x00",
                                     method="POST", headers={"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {admin.token}"})
    try:
        urllib.request.urlopen(request, timeout=5)
    except urllib.error.HTTPError as error:
        with error:
            assert error.code == 400


def test_a_nid_entry_reaches_the_node_holding_the_nid(admin_server, boot_server, dsn):
    admin = admin_server()
    admin.token = asyncio.run(token_for(admin.url, dsn))
    boot = boot_server()
    for node, nid, mac in (("node-a", 7, "52:54:00:e2:e2:0a"), ("node-b", 8, "52:54:00:e2:e2:0b")):
        status, _, body = call(admin, "POST", "/hsm/v2/State/Components", {"metadata": {"id": node}, "spec": {
            "type": "Node", "role": "Compute", "nid": nid, "state": "Ready", "networkInterfaces": [{"macAddr": mac}]}})
        assert status == 201, body
    status, _, body = call(admin, "POST", "/boot/v1/bootparams", {"metadata": {"id": "compute"}, "spec": {
        "role": "Compute", "kernel": "http://images/vmlinuz-role"}})
    assert status == 201, body
    status, _, body = call(admin, "POST", "/boot/v1/bootparams", {"metadata": {"id": "nid-7"}, "spec": {
        "nid": 7, "kernel": "http://images/vmlinuz-nid", "cmdline": "nid={{nid}}"}})
    assert status == 201, body
    assert json.loads(body)["spec"]["nid"] == 7
    status, _, body = call(admin, "GET", "/boot/v1/bootparams?nid=7")
    assert [item["metadata"]["id"] for item in json.loads(body)["items"]] == ["nid-7"]

    script = wait_until(lambda: (b := boot.get("/boot/v1/bootscript?mac=52:54:00:e2:e2:0a")[2]) and
                        b"vmlinuz-nid" in b and b, timeout=5)
    assert b"http://images/vmlinuz-nid nid=7" in script
    wait_until(lambda: b"vmlinuz-role" in boot.get("/boot/v1/bootscript?mac=52:54:00:e2:e2:0b")[2], timeout=5)

    # Renumbered through the API: NID 7 moves from node-a to node-b, and its entry with it.
    patch = {"Content-Type": "application/merge-patch+json"}
    for node, nid in (("node-a", None), ("node-b", 7)):
        status, _, body = call(admin, "PATCH", f"/hsm/v2/State/Components/{node}", {"spec": {"nid": nid}}, patch)
        assert status == 200, body
    script = wait_until(lambda: (b := boot.get("/boot/v1/bootscript?mac=52:54:00:e2:e2:0b")[2]) and
                        b"vmlinuz-nid" in b and b, timeout=5)
    assert b"http://images/vmlinuz-nid nid=7" in script
    wait_until(lambda: b"vmlinuz-role" in boot.get("/boot/v1/bootscript?mac=52:54:00:e2:e2:0a")[2], timeout=5)
