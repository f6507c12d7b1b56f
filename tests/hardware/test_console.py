"""The serial console: `chamicore serve admin`'s websocket and `chamicore console`, through a real IPMI BMC.

OpenIPMI's `ipmi_sim` (tests/helpers/ipmisim.py) runs with Serial-over-LAN
pointed at a TCP server the test runs: that server is the node's serial
line.  What the node writes must reach the websocket client (and the CLI's
stdout); what they type must reach the node.

ipmi_sim remembers the sequence number of the last SOL packet it took, across
sessions, and drops a first packet of a new session that happens to carry
the same one as a repeat; so each test that types into the node has a BMC of
its own (a fresh BMC takes a session's first packet).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sys
import time

import aiohttp
import pytest

from core import db
from core.serialconsole import ConsoleUnavailable, SolConsole, find_target
from tests.helpers.ipmisim import PASSWORD, USERNAME, IpmiSim
from tests.helpers.keys import box
from tests.helpers.paths import ROOT
from tests.helpers.redfish import PASSWORD as REDFISH_PASSWORD
from tests.helpers.redfish import USERNAME as REDFISH_USERNAME
from tests.helpers.redfish import RedfishEmulator, fake_system
from tests.helpers.redfish_proxy import RedfishProxy
from tests.helpers.tokens import token_for

WAIT_S = 60.0  # an upper bound, never a sleep: a CLI process starting on a loaded machine took more than 15 s


class SerialLine:
    """The node's serial port: a TCP server that ipmi_sim connects to (it retries until one listens)."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.connected = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> SerialLine:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.connected.set()
        while data := await reader.read(4096):
            self.received += data

    async def write(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def wait_received(self, wanted: bytes) -> None:
        async with asyncio.timeout(WAIT_S):
            while wanted not in self.received:
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._server is not None:
            self._server.close()


@contextlib.asynccontextmanager
async def node_with_bmc(**bmc_options):
    """A serial line and an ipmi_sim BMC whose SOL talks to it."""
    line = await SerialLine().start()
    bmc = await asyncio.to_thread(IpmiSim(sol_port=line.port, **bmc_options).start)
    try:
        async with asyncio.timeout(WAIT_S):
            await line.connected.wait()
        yield line, bmc
    finally:
        await asyncio.to_thread(bmc.close)
        await line.close()


async def register(dsn: str, node: str, bmc_address: str | None, credential: bool = True) -> None:
    """A Node behind an IPMI BMC, recorded as discovery records one (core.ipmi: `ipmi://host:port`)."""
    conn = await db.connect(dsn)
    try:
        if credential:
            await conn.execute("INSERT INTO auth.credentials (id, username, secret_enc) VALUES ('ipmi-cred', $1, $2) "
                               "ON CONFLICT DO NOTHING", USERNAME, box().seal(PASSWORD.encode(), "ipmi-cred"))
        parent = None
        if bmc_address is not None:
            parent = f"bmc-{node}"
            await conn.execute("INSERT INTO smd.components (id, type, state) VALUES ($1, 'BMC', 'Ready')", parent)
            await conn.execute("INSERT INTO smd.redfish_endpoints (id, address, credential_id) VALUES ($1, $2, $3)",
                               parent, f"ipmi://{bmc_address}", "ipmi-cred" if credential else None)
        await conn.execute("INSERT INTO smd.components (id, type, state, parent_id) VALUES ($1, 'Node', 'Ready', $2)",
                           node, parent)
    finally:
        await conn.close()


def ws_url(server, node: str) -> str:
    return server.url.replace("http://", "ws://") + f"/console/v1/nodes/{node}"


async def refusal(http: aiohttp.ClientSession, url: str, token: str | None) -> tuple[dict, int | None]:
    """The problem frame and the close code of a refused attach."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.ws_connect(url, headers=headers) as ws:
        first = await ws.receive(timeout=WAIT_S)
        assert first.type == aiohttp.WSMsgType.TEXT, first
        closing = await ws.receive(timeout=WAIT_S)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
        return json.loads(first.data), ws.close_code


@pytest.fixture
def server(admin_server):
    return admin_server(CHAMICORE_LOG_LEVEL="info")


async def server_log(server) -> str:
    os.killpg(server.process.pid, 15)
    await asyncio.to_thread(server.process.wait, 15)
    return server.process.stderr.read().decode(errors="replace")


async def audit(dsn: str, node: str, entries: int = 1) -> list[dict]:
    """The node's console audit, once it holds at least `entries` rows: the server writes a session's detach
    just after its client has gone, so a client that has exited may be a moment ahead of it."""
    deadline = time.monotonic() + WAIT_S
    conn = await db.connect(dsn)
    try:
        while True:
            rows = await conn.fetch("SELECT actor, action, status, outcome, detail::text AS detail FROM auth.audit "
                                    "WHERE resource = $1 ORDER BY seq", f"/console/v1/nodes/{node}")
            if len(rows) >= entries or time.monotonic() > deadline:
                return [dict(r) for r in rows]
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def test_websocket_carries_the_node_serial_both_ways_and_is_audited(server, dsn):
    token = await token_for(server.url, dsn, "console-admin", ["admin"])
    async with node_with_bmc() as (line, bmc), aiohttp.ClientSession() as http:
        await register(dsn, "node-1", bmc.address)
        async with http.ws_connect(ws_url(server, "node-1"), headers={"Authorization": f"Bearer {token}"}) as ws:
            hello = await ws.receive(timeout=WAIT_S)
            assert json.loads(hello.data) == {"attached": "node-1", "bmc": "bmc-node-1"}
            await line.write(b"node-1 login: ")
            seen = bytearray()
            async with asyncio.timeout(WAIT_S):
                while b"node-1 login: " not in seen:
                    message = await ws.receive()
                    assert message.type == aiohttp.WSMsgType.BINARY, message
                    seen += message.data
            await ws.send_bytes(b"root\r")
            await line.wait_received(b"root\r")
            # One session per node: a second attach meanwhile is refused, and the first one goes on.
            problem, code = await refusal(http, ws_url(server, "node-1"), token)
            assert code == 4409 and problem["status"] == 409 and "already attached" in problem["detail"]
            await ws.send_bytes(b"uptime\r")
            await line.wait_received(b"uptime\r")
        log = await server_log(server)
    entries = await audit(dsn, "node-1", 3)
    attach, refused, detach = entries
    assert (attach["actor"], attach["action"], attach["outcome"]) == ("console-admin", "console.attach", "success")
    assert (refused["action"], refused["status"], refused["outcome"]) == ("console.attach", 409, "failure")
    assert (detach["action"], detach["outcome"]) == ("console.detach", "success")
    detail = json.loads(detach["detail"])
    assert detail["bytesToNode"] == len(b"root\ruptime\r") and detail["bytesFromNode"] >= len(b"node-1 login: ")
    assert detail["durationS"] > 0 and detail["endedBy"] == "client"
    assert "serial console of node-1 attached by console-admin" in log
    assert PASSWORD not in log and all(PASSWORD not in (e["detail"] or "") for e in entries)


async def test_refusals_say_why_with_a_close_code(server, dsn):
    admin = await token_for(server.url, dsn, "console-admin", ["admin"])
    viewer = await token_for(server.url, dsn, "console-viewer", ["viewer"])
    await register(dsn, "node-lonely", None)
    dead = IpmiSim()  # a port nothing answers on: the BMC is down
    await register(dsn, "node-dark", dead.address)
    dead.close()
    async with aiohttp.ClientSession() as http:
        problem, code = await refusal(http, ws_url(server, "node-1"), None)
        assert code == 4401 and problem["status"] == 401
        problem, code = await refusal(http, ws_url(server, "node-dark"), viewer)
        assert code == 4403 and "write:console" in problem["detail"]
        problem, code = await refusal(http, ws_url(server, "no-such-node"), admin)
        assert code == 4404 and "no component 'no-such-node'" in problem["detail"]
        problem, code = await refusal(http, ws_url(server, "node-lonely"), admin)
        assert code == 4409 and "has no BMC" in problem["detail"]
        problem, code = await refusal(http, ws_url(server, "node-dark"), admin)
        assert code == 4504 and "did not answer" in problem["detail"], problem
    entries = await audit(dsn, "node-dark", 2)
    assert [(e["actor"], e["status"], e["outcome"]) for e in entries] == [
        ("console-viewer", 403, "denied"), ("console-admin", 504, "failure")]
    # The scope is known to the role editor, and the admin role holds it (migration 0024).
    async with aiohttp.ClientSession() as http:
        async with http.put(server.url + "/auth/v1/roles/console-ops", json={"scopes": ["write:console"]},
                            headers={"Authorization": f"Bearer {admin}"}) as answer:
            assert answer.status in (200, 201), await answer.text()
    conn = await db.connect(dsn)
    try:
        assert "write:console" in await conn.fetchval("SELECT scopes FROM auth.roles WHERE name = 'admin'")
        assert "write:console" not in await conn.fetchval("SELECT scopes FROM auth.roles WHERE name = 'operator'")
    finally:
        await conn.close()


async def test_a_wrong_bmc_password_is_refused_and_never_logged(dsn, caplog):
    """In process, with every logger at DEBUG: the core SOL bridge says the BMC refused, and no log line,
    message or repr carries the password."""
    caplog.set_level(logging.DEBUG)
    async with node_with_bmc() as (line, bmc):
        await register(dsn, "node-2", bmc.address)
        pool = await db.create_pool(dsn, min_size=1, max_size=2)
        try:
            target = await find_target(pool, box(), "node-2")
        finally:
            await pool.close()
        assert (target.host, target.port, target.username) == ("127.0.0.1", bmc.port, USERNAME)
        assert PASSWORD not in repr(target)
        wrong = dataclasses.replace(target, password="not-it")
        with pytest.raises(ConsoleUnavailable) as refused:
            await SolConsole.attach(wrong)
        assert refused.value.status == 502 and "Incorrect password" in refused.value.detail
        console = await SolConsole.attach(target)
        await line.write(b"hello from the node\r\n")
        async with asyncio.timeout(WAIT_S):
            seen = b""
            while b"hello from the node" not in seen:
                seen += await console.output() or b""
        await console.close()
        assert await console.output() is None and console.ended == "closed"
    said = [record.getMessage() for record in caplog.records if record.name == "chamicore.serialconsole"]
    assert any("Incorrect password" in line for line in said) and any("SOL active" in line for line in said), said
    assert all(PASSWORD not in record.getMessage() and "not-it" not in record.getMessage()
               for record in caplog.records)


async def test_cli_console_pipes_the_node_both_ways(server, dsn, tmp_path):
    token = await token_for(server.url, dsn, "console-cli", ["admin"])
    async with node_with_bmc() as (line, bmc):
        await register(dsn, "node-3", bmc.address)
        env = {**os.environ, "CHAMICORE_ENDPOINT": server.url, "CHAMICORE_TOKEN": token,
               "XDG_CONFIG_HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
        cli = await asyncio.create_subprocess_exec(sys.executable, "-m", "cli.main", "console", "node-3", env=env,
                                                   cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert cli.stdin and cli.stdout and cli.stderr
        attached = await asyncio.wait_for(cli.stderr.readline(), WAIT_S)
        assert b"attached to the console of node-3 through BMC bmc-node-3" in attached
        await line.write(b"Debian GNU/Linux 12 node-3 ttyS0\r\n")
        assert b"node-3 ttyS0" in await asyncio.wait_for(cli.stdout.readuntil(b"ttyS0"), WAIT_S)
        cli.stdin.write(b"root\n")
        await cli.stdin.drain()
        await line.wait_received(b"root\n")
        cli.stdin.close()  # the end of input detaches
        assert await asyncio.wait_for(cli.wait(), WAIT_S) == 0
    # A file as stdin (which the event loop cannot watch) is typed in and detaches at its end too.  Another node:
    # the server releases a session's per-node lock just after its client has gone, so an attach to node-3 right
    # now may meet "already attached" (409).
    async with node_with_bmc() as (line, bmc):
        await register(dsn, "node-4", bmc.address)
        keys = tmp_path / "keys"
        keys.write_bytes(b"exit\n")
        with keys.open("rb") as typed:
            from_file = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cli.main", "console", "node-4", env=env, cwd=ROOT, stdin=typed,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            _, said = await asyncio.wait_for(from_file.communicate(), WAIT_S)
        assert from_file.returncode == 0 and b"[detached]" in said, said
        await line.wait_received(b"exit\n")
        # Refused: the CLI names the service, the status and what to do, and exits with the auth code.
        viewer = await token_for(server.url, dsn, "console-viewer", ["viewer"])
        refused = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli.main", "console", "node-3", env={**env, "CHAMICORE_TOKEN": viewer}, cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, error = await asyncio.wait_for(refused.communicate(), WAIT_S)
        assert refused.returncode == 7, error
        assert b"admin API" in error and b"403" in error and b"write:console" in error and b"role" in error
    entries = await audit(dsn, "node-3", 3)
    assert [(e["actor"], e["action"], e["status"]) for e in entries] == [
        ("console-cli", "console.attach", 101), ("console-cli", "console.detach", 200),
        ("console-viewer", "console.attach", 403)]
    assert [(e["action"], e["status"]) for e in await audit(dsn, "node-4", 2)] == [
        ("console.attach", 101), ("console.detach", 200)]


def offering_ipmi_sol(port: int):
    """What a BMC that offers its serial console over IPMI says of its manager.  The emulator has neither
    SerialConsole nor a NetworkProtocol resource: the proxy adds the first, and answers the IPMI port in the
    manager document itself, which it links as the NetworkProtocol."""
    def rewrite(path: str, body: dict) -> dict:
        if path.startswith("/redfish/v1/Managers/"):
            return {**body, "SerialConsole": {"ServiceEnabled": True, "MaxConcurrentSessions": 1,
                                              "ConnectTypesSupported": ["IPMI"]},
                    "NetworkProtocol": {"@odata.id": path}, "IPMI": {"ProtocolEnabled": True, "Port": port}}
        return body
    return rewrite


async def register_redfish(dsn: str, node: str, address: str) -> None:
    conn = await db.connect(dsn)
    try:
        await conn.execute("INSERT INTO auth.credentials (id, username, secret_enc) VALUES ('rf-cred', $1, $2) "
                           "ON CONFLICT DO NOTHING", REDFISH_USERNAME,
                           box().seal(REDFISH_PASSWORD.encode(), "rf-cred"))
        await conn.execute("INSERT INTO smd.components (id, type, state) VALUES ($1, 'BMC', 'Ready')", f"bmc-{node}")
        await conn.execute("INSERT INTO smd.redfish_endpoints (id, address, credential_id) VALUES ($1, $2, 'rf-cred')",
                           f"bmc-{node}", address)
        await conn.execute("INSERT INTO smd.components (id, type, state, parent_id) VALUES ($1, 'Node', 'Ready', $2)",
                           node, f"bmc-{node}")
    finally:
        await conn.close()


async def test_a_redfish_bmc_lends_its_ipmi_sol_and_one_without_is_refused(server, dsn):
    token = await token_for(server.url, dsn, "console-admin", ["admin"])
    emulator = await asyncio.to_thread(RedfishEmulator([fake_system(1)]).start)
    try:
        async with node_with_bmc(username=REDFISH_USERNAME, password=REDFISH_PASSWORD) as (line, bmc), \
                aiohttp.ClientSession() as http:
            proxy = await RedfishProxy(emulator.url, rewrite=offering_ipmi_sol(bmc.port)).start()
            try:
                await register_redfish(dsn, "node-rf", f"http://127.0.0.1:{proxy.port}")
                await register_redfish(dsn, "node-plain", emulator.url)
                problem, code = await refusal(http, ws_url(server, "node-plain"), token)
                assert code == 4409 and "only IPMI Serial-over-LAN is supported" in problem["detail"], problem
                async with http.ws_connect(ws_url(server, "node-rf"),
                                           headers={"Authorization": f"Bearer {token}"}) as ws:
                    hello = await ws.receive(timeout=WAIT_S)
                    assert json.loads(hello.data) == {"attached": "node-rf", "bmc": "bmc-node-rf"}, hello
                    await line.write(b"UEFI shell> ")
                    message = await ws.receive(timeout=WAIT_S)
                    assert message.type == aiohttp.WSMsgType.BINARY and b"UEFI" in message.data, message
            finally:
                await proxy.close()
    finally:
        await asyncio.to_thread(emulator.close)
    entries = await audit(dsn, "node-rf")
    assert json.loads(entries[0]["detail"]) == {"bmc": "bmc-node-rf", "via": "redfish"}


def test_tilde_dot_detaches_only_at_the_start_of_a_line():
    from cli.console import EscapeReader, websocket_url

    assert EscapeReader().feed(b"~.") == (b"", True)
    assert EscapeReader().feed(b"ls ~.\r") == (b"ls ~.\r", False)  # mid-line: typed as is
    assert EscapeReader().feed(b"echo\r~.rest") == (b"echo\r", True)
    assert EscapeReader().feed(b"~~x\n~y") == (b"~x\n~y", False)  # ~~ is one ~; ~ then anything passes both
    split = EscapeReader()  # the two keys arrive in separate reads
    assert split.feed(b"\n~") == (b"\n", False) and split.feed(b".") == (b"", True)
    assert websocket_url("https://admin.example:8443/", "node 1") == \
        "wss://admin.example:8443/console/v1/nodes/node%201"
