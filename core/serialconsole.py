"""A node's serial console through its BMC: IPMI 2.0 Serial-over-LAN (pyghmi), bridged to asyncio.

Which BMC, and how (`find_target`): the node's BMC is found as power control
finds it (core/power_targets.py), with the credential from the store.  A BMC
recorded as `ipmi://host:port` (core/ipmi.py) is asked for SOL directly.  A
Redfish BMC is asked whether one of its Managers offers a serial console over
IPMI (`SerialConsole.ConnectTypesSupported` lists "IPMI", or
`SerialConsole.IPMI.ServiceEnabled`); SOL is then opened at the same host, on
the port its `NetworkProtocol` gives for IPMI (623 by default), with the same
credential.  Redfish's own SSH and Telnet consoles and a BMC without IPMI are
not supported: the attach is refused, saying so.

pyghmi is not asyncio code: a packet is processed by whichever thread calls
`Session.wait_for_rsp`, and its callbacks (console output, errors) run there.
So every pyghmi call of this process goes through one thread, `_Pump`: it
runs the work the event loop hands it (open, send, close) between short
`wait_for_rsp` turns, and hands console output back with
`call_soon_threadsafe`.  The thread runs only while a console is open.  A
send waits in that thread for the BMC's acknowledgement (pyghmi retries for
up to about 15 s on a silent BMC): other consoles' keystrokes wait meanwhile,
their output does not.

The password lives in the `SolTarget` (never in its repr) and in pyghmi's
session while it is open; no error message carries it.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from core import power_targets
from core.crypto import SecretBox
from core.ipmi import DEFAULT_PORT, SCHEME, parse_address

log = logging.getLogger("chamicore.serialconsole")

ATTACH_TIMEOUT_S = 10.0   # logon and SOL activation; pyghmi itself gives up on a silent BMC after ~5 s
CLOSE_TIMEOUT_S = 10.0
PUMP_TURN_S = 0.02        # how long the pump waits for packets before it looks at new work (keystroke latency)
REDFISH_TIMEOUT_S = 10.0
MAX_TEXT = 300            # a BMC's words, clipped, before they reach a message or the audit


class ConsoleUnavailable(Exception):
    """Why a console cannot be attached, as an HTTP-like status and words an admin can act on."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclasses.dataclass(frozen=True, slots=True)
class SolTarget:
    node_id: str
    bmc_id: str
    host: str
    port: int
    username: str
    password: str = dataclasses.field(repr=False)
    via: str = "ipmi"  # "ipmi": an IPMI BMC; "redfish": a Redfish BMC whose manager offers IPMI SOL


# -- which BMC ----------------------------------------------------------------------------------------------


async def find_target(pool, box: SecretBox | None, node_id: str) -> SolTarget:
    """The BMC and credential of a node's serial console, or ConsoleUnavailable saying what is missing."""
    row = (await power_targets.fetch(pool, [node_id]))[0]
    if problem := power_targets.target_problem(row):
        raise ConsoleUnavailable(404 if row["type"] is None else 409, problem)
    if box is None:
        raise ConsoleUnavailable(503, "the admin API has no CHAMICORE_CREDENTIALS_KEY (or _FILE) to open BMC "
                                      "credentials")
    secret = await pool.fetchrow("SELECT username, secret_enc FROM auth.credentials WHERE id = $1",
                                 row["credential_id"])
    if secret is None:
        raise ConsoleUnavailable(409, f"credential {row['credential_id']!r} of BMC {row['bmc_id']!r} no longer "
                                      "exists")
    try:
        password = box.open(bytes(secret["secret_enc"]), row["credential_id"]).decode()
    except ValueError:
        raise ConsoleUnavailable(503, f"credential {row['credential_id']!r} cannot be decrypted with this admin "
                                      "API's CHAMICORE_CREDENTIALS_KEY") from None
    address: str = row["address"]
    if address.startswith(SCHEME):
        host, port = parse_address(address)
        return SolTarget(node_id, row["bmc_id"], host, port, secret["username"], password)
    host, port = await redfish_sol_port(address, secret["username"], password, insecure=row["insecure"],
                                        bmc_id=row["bmc_id"])
    return SolTarget(node_id, row["bmc_id"], host, port, secret["username"], password, via="redfish")


async def redfish_sol_port(address: str, username: str, password: str, *, insecure: bool,
                           bmc_id: str) -> tuple[str, int]:
    """(host, IPMI port) where a Redfish BMC offers SOL, or ConsoleUnavailable when none of its managers does."""
    host = urlsplit(address).hostname or ""
    timeout = aiohttp.ClientTimeout(total=REDFISH_TIMEOUT_S)
    auth = aiohttp.BasicAuth(username, password)
    try:
        async with aiohttp.ClientSession(timeout=timeout, auth=auth) as session:
            async def get(path: str) -> dict:
                async with session.get(address + path, ssl=False if insecure else True,
                                       headers={"Accept": "application/json"}) as answer:
                    if answer.status >= 400:
                        raise ConsoleUnavailable(502, f"BMC {bmc_id!r} answered {answer.status} to GET {path[:200]}")
                    body = await answer.json(content_type=None)
                    return body if isinstance(body, dict) else {}

            managers = await get("/redfish/v1/Managers")
            for member in (managers.get("Members") or [])[:16]:
                path = member.get("@odata.id") if isinstance(member, dict) else None
                if not isinstance(path, str) or not path.startswith("/redfish/v1/"):
                    continue
                manager = await get(path)
                if not _offers_ipmi_sol(manager.get("SerialConsole")):
                    continue
                if (port := await _ipmi_port(get, manager)) is None:
                    raise ConsoleUnavailable(409, f"BMC {bmc_id!r} offers its serial console over IPMI, but IPMI is "
                                                  "disabled in its NetworkProtocol")
                return host, port
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ConsoleUnavailable(504, f"BMC {bmc_id!r} at {address} did not answer about its Redfish managers "
                                      f"({type(exc).__name__})") from None
    raise ConsoleUnavailable(409, f"BMC {bmc_id!r} is a Redfish BMC whose managers offer no serial console over "
                                  "IPMI; only IPMI Serial-over-LAN is supported (not Redfish SSH or Telnet consoles)")


def _offers_ipmi_sol(serial: Any) -> bool:
    if not isinstance(serial, dict):
        return False
    types = serial.get("ConnectTypesSupported")
    ipmi = serial.get("IPMI")
    return ((isinstance(types, list) and "IPMI" in types and serial.get("ServiceEnabled", True) is not False)
            or (isinstance(ipmi, dict) and ipmi.get("ServiceEnabled") is True))


async def _ipmi_port(get: Callable, manager: dict) -> int | None:
    """The manager's IPMI port from its NetworkProtocol (623 when it does not say); None if IPMI is disabled."""
    link = manager.get("NetworkProtocol")
    path = link.get("@odata.id") if isinstance(link, dict) else None
    if not isinstance(path, str) or not path.startswith("/redfish/v1/"):
        return DEFAULT_PORT
    ipmi = (await get(path)).get("IPMI")
    if not isinstance(ipmi, dict):
        return DEFAULT_PORT
    if ipmi.get("ProtocolEnabled") is False:
        return None
    port = ipmi.get("Port")
    return port if isinstance(port, int) and 0 < port < 65536 else DEFAULT_PORT


# -- the one thread that talks pyghmi ------------------------------------------------------------------------


class _Pump:
    """Runs pyghmi work and pyghmi's event loop in one thread, while at least one console is open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work: collections.deque[tuple[Callable[[], Any], concurrent.futures.Future]] = collections.deque()
        self._open = 0
        self._thread: threading.Thread | None = None

    def hold(self) -> None:
        with self._lock:
            self._open += 1

    def release(self) -> None:
        with self._lock:
            self._open -= 1

    def submit(self, work: Callable[[], Any]) -> asyncio.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._work.append((work, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="chamicore-sol", daemon=True)
                self._thread.start()
        return asyncio.wrap_future(future)

    def _run(self) -> None:
        from pyghmi.ipmi.private import session

        while True:
            with self._lock:
                if not self._work and self._open <= 0:
                    self._thread = None
                    return
                batch = list(self._work)
                self._work.clear()
            for work, future in batch:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(work())
                    except Exception as exc:  # handed to the awaiting coroutine, which says what failed
                        future.set_exception(exc)
            try:
                session.Session.wait_for_rsp(PUMP_TURN_S)
            except Exception:  # a pyghmi fault in one session's callback must not stop every console
                log.exception("serial console: pyghmi event loop")


_pump = _Pump()


# -- one attached console ------------------------------------------------------------------------------------


class SolConsole:
    """An active SOL session: `output()` yields what the node writes, `send()` types into it.

    Output arrives as bytes; the end (the BMC closed it, or it broke) as a final
    None, with `ended` saying why."""

    def __init__(self, target: SolTarget) -> None:
        self.target = target
        self.ended: str | None = None
        self.bytes_from_node = 0
        self.bytes_to_node = 0
        self._loop = asyncio.get_running_loop()
        self._output: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._attached: asyncio.Future[None] = self._loop.create_future()
        self._console: Any = None
        self._closed = False

    @classmethod
    async def attach(cls, target: SolTarget, timeout_s: float = ATTACH_TIMEOUT_S) -> SolConsole:
        """Log on to the BMC and activate SOL; ConsoleUnavailable (502 refused, 504 silent) otherwise."""
        console = cls(target)
        _pump.hold()
        try:
            await _pump.submit(console._start)
            async with asyncio.timeout(timeout_s):
                await console._attached
        except TimeoutError:
            await console.close()
            raise ConsoleUnavailable(504, f"BMC {target.bmc_id!r} at {target.host}:{target.port} did not activate "
                                          f"Serial-over-LAN within {timeout_s:g} s") from None
        except ConsoleUnavailable as exc:
            log.info("serial console of %s: %s", target.node_id, exc.detail)
            await console.close()
            raise
        except BaseException:
            await console.close()
            raise
        log.debug("serial console of %s: SOL active at %s:%s", target.node_id, target.host, target.port)
        return console

    # pump thread ------------------------------------------------------------------------------------------

    def _start(self) -> None:
        from pyghmi.ipmi.console import Console

        try:
            self._console = Console(self.target.host, self.target.username, self.target.password,
                                    self._from_bmc, port=self.target.port)
        except Exception as exc:  # a name that does not resolve, a socket error: never the credential
            self._from_bmc({"error": f"{type(exc).__name__}: {exc}"})
            return
        self._watch_attached()

    def _watch_attached(self) -> None:
        """Called on every pump turn until SOL is active (pyghmi has no callback for it)."""
        if self._closed or self._attached.done():
            return
        if self._console is not None and self._console.connected:
            self._loop.call_soon_threadsafe(_settle, self._attached, None)
            return
        with _pump._lock:
            _pump._work.append((self._watch_attached, concurrent.futures.Future()))

    def _from_bmc(self, data: Any) -> None:
        if isinstance(data, bytes | bytearray | str):
            chunk = data.encode() if isinstance(data, str) else bytes(data)
            self._loop.call_soon_threadsafe(self._deliver, chunk)
            return
        if isinstance(data, dict) and "error" in data:
            reason = _clip(str(data["error"]))
            self._loop.call_soon_threadsafe(self._end, reason)
        elif isinstance(data, dict) and "info" in data:
            log.info("serial console of %s: %s", self.target.node_id, _clip(str(data["info"])))

    def _send_now(self, data: bytes) -> None:
        if self._console is not None and not self._console.broken:
            self._console.send_data(data)

    def _stop(self) -> None:
        from pyghmi.ipmi.private import session

        console, self._console = self._console, None
        if console is None:
            return
        ipmi_session = console.ipmi_session
        try:
            console.close()  # deactivates the SOL payload: the BMC frees it for the next attach
            if ipmi_session is not None and ipmi_session.logged:
                ipmi_session.logout()
        except Exception as exc:
            log.warning("serial console of %s: closing: %s", self.target.node_id, _clip(str(exc)))
        # pyghmi keeps a half-initialised session per (BMC, user, password) and, finding it again, would hand
        # the next attach a dead session; it also holds the password.  Forget it.
        target = self.target
        session.Session.initting_sessions.pop((target.host, target.username, target.password, target.port, None),
                                              None)

    # event loop -------------------------------------------------------------------------------------------

    def _deliver(self, chunk: bytes) -> None:
        self.bytes_from_node += len(chunk)
        self._output.put_nowait(chunk)

    def _end(self, reason: str) -> None:
        if not self._attached.done():
            status = 504 if reason == "timeout" else 409 if "another client" in reason else 502
            words = ("did not answer" if reason == "timeout" else f"refused Serial-over-LAN: {reason}")
            self._attached.set_exception(ConsoleUnavailable(
                status, f"BMC {self.target.bmc_id!r} at {self.target.host}:{self.target.port} {words}"))
            return
        if self.ended is None:
            self.ended = reason
            self._output.put_nowait(None)

    async def output(self) -> bytes | None:
        """The next bytes the node wrote; None once the console has ended."""
        if self.ended is not None and self._output.empty():
            return None
        return await self._output.get()

    async def send(self, data: bytes) -> None:
        """Type `data` into the node's serial line (returns once the BMC acknowledged it)."""
        if self.ended is not None or self._closed:
            return
        self.bytes_to_node += len(data)
        await _pump.submit(lambda: self._send_now(data))

    async def close(self) -> None:
        """Deactivate SOL and log out (idempotent); the console then ends."""
        if self._closed:
            return
        self._closed = True
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.shield(_pump.submit(self._stop))
        except TimeoutError:
            log.warning("serial console of %s: the BMC did not confirm the close", self.target.node_id)
        finally:
            _pump.release()
            if self.ended is None:
                self.ended = "closed"
                self._output.put_nowait(None)


def _settle(future: asyncio.Future, value: None) -> None:
    if not future.done():
        future.set_result(value)


def _clip(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)[:MAX_TEXT]
