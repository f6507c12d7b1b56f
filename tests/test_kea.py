"""Kea reservations from the inventory, against Debian's kea-dhcp4 and kea-ctrl-agent."""

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from sync.kea import KeaSync
from tests.conftest import _tmp_root, free_port, stop_task
from tests.seed import add_node


class KeaNotReady(RuntimeError):
    pass


class KeaServer:
    def __init__(self) -> None:
        if shutil.which("kea-dhcp4") is None and not os.path.exists("/usr/sbin/kea-dhcp4"):
            pytest.fail("Kea is not installed: apt-get install -y kea-dhcp4-server kea-ctrl-agent (make test does it)")
        self.dir = _tmp_root() / "kea"
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        socket_path = str(self.dir / "kea4.sock")
        self.dhcp_conf = self.dir / "kea-dhcp4.conf"
        self.dhcp_conf.write_text(json.dumps({"Dhcp4": {
            "interfaces-config": {"interfaces": []},
            "control-socket": {"socket-type": "unix", "socket-name": socket_path},
            "lease-database": {"type": "memfile", "persist": True, "name": str(self.dir / "leases.csv")},
            "subnet4": [
                {"id": 1, "subnet": "10.1.0.0/16", "reservations": [
                    {"hw-address": "00:00:00:00:00:99", "ip-address": "10.1.0.99", "hostname": "not-ours"}]},
                {"id": 2, "subnet": "10.2.0.0/16"},
            ],
        }}))
        self.agent_conf = self.dir / "kea-ctrl-agent.conf"
        self.agent_conf.write_text(json.dumps({"Control-agent": {
            "http-host": "127.0.0.1", "http-port": self.port,
            "control-sockets": {"dhcp4": {"socket-type": "unix", "socket-name": socket_path}}}}))
        self.env = dict(os.environ, KEA_LOCKFILE_DIR=str(self.dir), KEA_PIDFILE_DIR=str(self.dir))
        self.processes: list[subprocess.Popen] = []

    def start(self) -> "KeaServer":
        for binary, conf in (("kea-dhcp4", self.dhcp_conf), ("kea-ctrl-agent", self.agent_conf)):
            self.processes.append(subprocess.Popen([shutil.which(binary) or f"/usr/sbin/{binary}", "-c", str(conf)],
                                                   env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                self.reservations()
                return self
            except (OSError, KeaNotReady):  # the agent answers before kea-dhcp4 opens its socket
                time.sleep(0.1)
        raise TimeoutError("Kea did not answer")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(timeout=10)
        self.processes = []

    def config(self) -> dict:
        body = json.dumps({"command": "config-get", "service": ["dhcp4"]}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.loads(response.read())[0]
        if answer.get("result") != 0:
            raise KeaNotReady(answer.get("text", answer))
        return answer["arguments"]["Dhcp4"]

    def reservations(self) -> dict[str, tuple]:
        found = {}
        for subnet in self.config()["subnet4"]:
            for r in subnet.get("reservations", []):
                found[r["hw-address"]] = (subnet["id"], r["ip-address"], r.get("hostname"),
                                          r.get("user-context", {}).get("chamicore", False))
        return found


@pytest.fixture
def kea():
    server = KeaServer().start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


async def eventually(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        assert time.monotonic() < deadline, "Kea never converged"
        await asyncio.sleep(0.1)


async def test_reservations_follow_the_inventory(conn, dsn, kea):
    sync = KeaSync(dsn, kea.url, "http://10.0.0.1:27778", next_server="10.0.0.1")
    task = asyncio.create_task(sync.run())
    try:
        await add_node(conn, "node-a", ["52:54:00:00:0a:01"], ips=["10.1.0.10"])
        await add_node(conn, "node-b", ["52:54:00:00:0b:01"], ips=["10.2.0.20"])
        await eventually(lambda: set(kea.reservations()) >= {"52:54:00:00:0a:01", "52:54:00:00:0b:01"})
        found = kea.reservations()
        assert found["52:54:00:00:0a:01"] == (1, "10.1.0.10", "node-a", True)
        assert found["52:54:00:00:0b:01"] == (2, "10.2.0.20", "node-b", True)
        assert found["00:00:00:00:00:99"] == (1, "10.1.0.99", "not-ours", False)  # left alone
        classes = {c["name"]: c for c in kea.config()["client-classes"]}
        assert classes["chamicore-ipxe"]["boot-file-name"] == "http://10.0.0.1:27778/boot/v1/boot.ipxe"
        assert classes["chamicore-pxe-bios"]["boot-file-name"] == "undionly.kpxe"

        # Update, then delete: the reservation moves, then goes.
        await conn.execute("UPDATE smd.ethernet_interfaces SET ip_addrs = '[{\"ipAddress\": \"10.1.0.11\"}]' "
                           "WHERE mac = '52:54:00:00:0a:01'")
        await eventually(lambda: kea.reservations().get("52:54:00:00:0a:01", (0, ""))[1] == "10.1.0.11")
        await conn.execute("DELETE FROM smd.components WHERE id = 'node-b'")
        await eventually(lambda: "52:54:00:00:0b:01" not in kea.reservations())

        # Bad data is reported and skipped; the rest still goes in.
        await add_node(conn, "node-c", ["52:54:00:00:0c:01"], ips=["192.168.7.7"])
        await add_node(conn, "node-d", ["52:54:00:00:0d:01"], ips=["10.1.0.11"])
        await add_node(conn, "node-e", ["52:54:00:00:0e:01"], ips=["10.2.0.30"])
        await eventually(lambda: "52:54:00:00:0e:01" in kea.reservations())
        assert not {"52:54:00:00:0c:01", "52:54:00:00:0d:01"} & set(kea.reservations())
        assert any("192.168.7.7 is outside every Kea subnet" in p for p in sync.problems)
        assert any("10.1.0.11 is already reserved" in p for p in sync.problems)
        query = "SELECT state, counts FROM sync.status WHERE job = 'kea'"
        deadline = time.monotonic() + 10  # the pass that pushed reports right after the push
        while (reported := await conn.fetchrow(query))["counts"].get("reservations", 0) < 2:
            assert time.monotonic() < deadline, reported
            await asyncio.sleep(0.05)
        assert reported["state"] == "active"
        assert any("outside every Kea subnet" in p for p in reported["counts"]["problems"])
    finally:
        await stop_task(task)
