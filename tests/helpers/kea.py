"""A real Kea (Debian's kea-dhcp4 and kea-ctrl-agent) on free ports, and waiting for it to converge."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from tests.helpers.paths import tmp_root
from tests.helpers.ports import free_port

LEASE_CMDS = "/usr/lib/*/kea/hooks/libdhcp_lease_cmds.so"


class KeaNotReady(RuntimeError):
    pass


class KeaServer:
    def __init__(self) -> None:
        if shutil.which("kea-dhcp4") is None and not os.path.exists("/usr/sbin/kea-dhcp4"):
            pytest.fail("Kea is not installed: apt-get install -y kea-dhcp4-server kea-ctrl-agent (make test does it)")
        self.dir = tmp_root() / "kea"
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        socket_path = str(self.dir / "kea4.sock")
        self.dhcp_conf = self.dir / "kea-dhcp4.conf"
        self.dhcp_conf.write_text(json.dumps({"Dhcp4": {
            "interfaces-config": {"interfaces": []},
            "control-socket": {"socket-type": "unix", "socket-name": socket_path},
            "lease-database": {"type": "memfile", "persist": True, "name": str(self.dir / "leases.csv")},
            # lease_cmds (Debian's Kea ships it): the leases as JSON, for the dhcp boot stage (sync/leases.py).
            "hooks-libraries": [{"library": path} for path in glob.glob(LEASE_CMDS)[:1]],
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

    def start(self) -> KeaServer:
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


async def eventually(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        assert time.monotonic() < deadline, "Kea never converged"
        await asyncio.sleep(0.1)
