"""A real SNMP agent for tests: snmpsim's command responder on 127.0.0.1 and a free UDP port.

It serves `.snmprec` files the test writes (`switch_records` builds a switch:
ports with ifIndex/ifName/ifDescr, BRIDGE-MIB and Q-BRIDGE-MIB forwarding
entries, LLDP neighbours).  snmpsim picks the file by the request's SNMPv1/v2c
community, or SNMPv3 context name: each file's name (without `.snmprec`) is both.
One SNMPv3 USM user (`V3_USER`, SHA + AES128 keys) is configured.

Two things about this machine, both outside what is tested:
- snmpsim 1.2 imports `pysmi` only to print its version banner, and the locked
  environment does not hold pysmi: a one-line stand-in module (`pysmi.py`,
  a version string) is put on the responder's PYTHONPATH.  The agent itself is
  snmpsim's, unchanged.
- as root snmpsim wants to drop to another user, who could not read this
  Python installation (under /root, 0700); `SNMPSIM_ALLOW_ROOT=true` is
  snmpsim's own switch to stay the test's user.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.helpers.paths import ROOT
from tests.helpers.ports import free_udp_port

V3_USER, V3_AUTH_KEY, V3_PRIV_KEY = "chamicore", "v3-auth-key-0123", "v3-priv-key-4567"
RESPONDER = ROOT / ".venv" / "bin" / "snmpsim-command-responder"

SYS_NAME = "1.3.6.1.2.1.1.5.0"
IF_DESCR, IF_NAME = "1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.31.1.1.1.1"
BASE_PORT_IFINDEX = "1.3.6.1.2.1.17.1.4.1.2"
FDB_ADDRESS, FDB_PORT, FDB_STATUS = ("1.3.6.1.2.1.17.4.3.1.1", "1.3.6.1.2.1.17.4.3.1.2", "1.3.6.1.2.1.17.4.3.1.3")
QFDB_PORT, QFDB_STATUS = "1.3.6.1.2.1.17.7.1.2.2.1.2", "1.3.6.1.2.1.17.7.1.2.2.1.3"
LLDP_REM = "1.0.8802.1.1.2.1.4.1.1"


def _mac_index(mac: str) -> str:
    return ".".join(str(int(octet, 16)) for octet in mac.split(":"))


def switch_records(name: str, ports: dict[int, str], fdb: list[tuple[str, int, int]],
                   qfdb: list[tuple[str, int, int]] = (), lldp: dict[int, tuple[str, str, bytes]] | None = None,
                   if_index_base: int = 1000) -> dict[str, tuple[int | str, str]]:
    """A switch's MIB: `ports` bridge port -> ifName (ifIndex = if_index_base + port), `fdb`/`qfdb` entries
    (mac, bridge port, status: 3 learned, 4 self), `lldp` bridge port -> (sysName, portId, capabilities)."""
    records: dict[str, tuple[int | str, str]] = {SYS_NAME: (4, name)}
    for port, if_name in ports.items():
        if_index = if_index_base + port
        records[f"{BASE_PORT_IFINDEX}.{port}"] = (2, str(if_index))
        records[f"{IF_NAME}.{if_index}"] = (4, if_name)
        records[f"{IF_DESCR}.{if_index}"] = (4, f"{name} port {if_name}")
    for mac, port, status in fdb:
        index = _mac_index(mac)
        records[f"{FDB_ADDRESS}.{index}"] = ("4x", mac.replace(":", ""))
        records[f"{FDB_PORT}.{index}"] = (2, str(port))
        records[f"{FDB_STATUS}.{index}"] = (2, str(status))
    for mac, port, status in qfdb:
        index = f"1.{_mac_index(mac)}"  # VLAN (FDB id) 1
        records[f"{QFDB_PORT}.{index}"] = (2, str(port))
        records[f"{QFDB_STATUS}.{index}"] = (2, str(status))
    for n, (port, (sys_name, port_id, caps)) in enumerate(sorted((lldp or {}).items()), start=1):
        index = f"0.{port}.{n}"  # lldpRemTimeMark, lldpRemLocalPortNum, lldpRemIndex
        records[f"{LLDP_REM}.7.{index}"] = (4, port_id)
        records[f"{LLDP_REM}.9.{index}"] = (4, sys_name)
        records[f"{LLDP_REM}.12.{index}"] = ("4x", caps.hex())
    return records


def _snmprec(records: dict[str, tuple[int | str, str]]) -> str:
    # snmpsim walks a file in order: records sorted by OID, numerically.
    ordered = sorted(records, key=lambda oid: tuple(int(n) for n in oid.split(".")))
    return "".join(f"{oid}|{records[oid][0]}|{records[oid][1]}\n" for oid in ordered)


class SnmpSim:
    """snmpsim serving `agents` (name -> records) on 127.0.0.1:port; `close()` stops it and removes its files."""

    def __init__(self, agents: dict[str, dict[str, tuple[int | str, str]]]) -> None:
        self.port = free_udp_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="chamicore-snmpsim-"))
        (self.dir / "data").mkdir()
        (self.dir / "shim").mkdir()
        (self.dir / "shim" / "pysmi.py").write_text('__version__ = "not installed (banner only)"\n')
        for name, records in agents.items():
            (self.dir / "data" / f"{name}.snmprec").write_text(_snmprec(records))
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> SnmpSim:
        env = dict(os.environ, PYTHONPATH=str(self.dir / "shim"), SNMPSIM_ALLOW_ROOT="true")
        self.log = open(self.dir / "responder.log", "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [str(RESPONDER), f"--cache-dir={self.dir / 'cache'}", "--v3-engine-id=auto",
             f"--data-dir={self.dir / 'data'}", f"--agent-udpv4-endpoint={self.address}",
             f"--v3-user={V3_USER}", f"--v3-auth-key={V3_AUTH_KEY}", "--v3-auth-proto=SHA",
             f"--v3-priv-key={V3_PRIV_KEY}", "--v3-priv-proto=AES"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        agent = next((self.dir / "data").glob("*.snmprec")).stem
        while not self._answers(agent):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"snmpsim did not answer on {self.address}")
            time.sleep(0.1)
        return self

    def _answers(self, community: str) -> bool:
        """One real SNMP GET of sysName (pysnmp's API is asyncio only: run in a thread of its own)."""
        async def probe() -> bool:
            from pysnmp.hlapi.v3arch import asyncio as hlapi

            engine = hlapi.SnmpEngine()
            try:
                target = await hlapi.UdpTransportTarget.create(("127.0.0.1", self.port), timeout=0.5, retries=0)
                indication, status, _, _ = await hlapi.get_cmd(
                    engine, hlapi.CommunityData(community, mpModel=1), target, hlapi.ContextData(),
                    hlapi.ObjectType(hlapi.ObjectIdentity(SYS_NAME)), lookupMib=False)
                return not indication and not status
            finally:
                engine.close_dispatcher()

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, probe()).result()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if getattr(self, "log", None) is not None:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
