"""The reservation-add path of the Kea sync.

MOCK: Debian's Kea 2.2 has no host_cmds hook, so a Kea that offers
reservation-add cannot run here.  MockKeaWithHostCmds is a small control
agent speaking the same JSON commands (list-commands, config-get/test/set/
write, reservation-get-all/add/del) over HTTP; it stands in for that Kea
only.  The configuration path is tested against the real Kea in test_kea.py.
"""

import asyncio
import copy
import time

from aiohttp import web

from sync.kea import KeaSync
from tests.helpers.ports import free_port
from tests.helpers.seed import add_node
from tests.helpers.tasks import stop_task


class MockKeaWithHostCmds:
    def __init__(self) -> None:
        self.config = {"subnet4": [{"id": 1, "subnet": "10.1.0.0/16"}], "client-classes": []}
        self.hosts = {1: {"00:00:00:00:00:99": {"hw-address": "00:00:00:00:00:99", "ip-address": "10.1.0.99"}}}
        self.calls: list[str] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        command, args = body["command"], body.get("arguments", {})
        self.calls.append(command)
        if command == "list-commands":
            result = ["config-get", "config-set", "config-test", "config-write", "list-commands",
                      "reservation-add", "reservation-del", "reservation-get-all"]
        elif command == "config-get":
            result = {"Dhcp4": copy.deepcopy(self.config), "hash": "x"}
        elif command == "config-set":
            self.config = copy.deepcopy(args["Dhcp4"])
            result = None
        elif command in ("config-test", "config-write"):
            result = None
        elif command == "reservation-get-all":
            result = {"hosts": [copy.deepcopy(h) for h in self.hosts.get(args["subnet-id"], {}).values()]}
        elif command == "reservation-add":
            host = dict(args["reservation"])
            self.hosts.setdefault(host.pop("subnet-id"), {})[host["hw-address"]] = host
            result = None
        elif command == "reservation-del":
            removed = self.hosts.get(args["subnet-id"], {}).pop(args["identifier"], None)
            if removed is None:
                return web.json_response([{"result": 3, "text": "Host not deleted (not found)."}])
            result = None
        else:
            return web.json_response([{"result": 2, "text": f"'{command}' command not supported."}])
        return web.json_response([{"result": 0, "arguments": result}])

    async def __aenter__(self):
        app = web.Application()
        app.router.add_post("/", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()


async def until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_reservations_go_through_host_cmds_when_offered(conn, dsn):
    async with MockKeaWithHostCmds() as kea:
        sync = KeaSync(dsn, kea.url, "http://10.1.0.1:27778", next_server="10.1.0.1")
        task = asyncio.create_task(sync.run())
        try:
            await add_node(conn, "node-a", ["52:54:00:00:0a:01"], ips=["10.1.0.10"])
            # A pass adds the reservations, then pushes the classes: wait for both.
            await until(lambda: "52:54:00:00:0a:01" in kea.hosts[1] and kea.config["client-classes"])
            assert kea.hosts[1]["52:54:00:00:0a:01"]["ip-address"] == "10.1.0.10"
            assert "00:00:00:00:00:99" in kea.hosts[1]  # not ours: untouched
            assert not any(s.get("reservations") for s in kea.config["subnet4"])  # not in the config file
            assert {c["name"] for c in kea.config["client-classes"]} >= {"chamicore-ipxe", "chamicore-pxe-bios"}
            await conn.execute("UPDATE smd.ethernet_interfaces SET ip_addrs = '[{\"ipAddress\": \"10.1.0.11\"}]'")
            await until(lambda: kea.hosts[1].get("52:54:00:00:0a:01", {}).get("ip-address") == "10.1.0.11")
            await conn.execute("DELETE FROM smd.components WHERE id = 'node-a'")
            await until(lambda: "52:54:00:00:0a:01" not in kea.hosts[1])
            assert "reservation-del" in kea.calls and "00:00:00:00:00:99" in kea.hosts[1]
        finally:
            await stop_task(task)
