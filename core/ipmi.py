"""A shared IPMI client (IPMI 2.0 / RMCP+ over UDP, through pyghmi) for discovery, power and the console.

pyghmi is blocking, so each call runs in a worker thread, and two bounds
keep one BMC from holding up the rest:

- concurrency: at most `CONCURRENCY` pyghmi calls run at once (per event
  loop, so per daemon).  A slot is taken before a call starts and given back only when its
  thread has really returned, so a call abandoned at its deadline still
  counts until pyghmi lets go of it (pyghmi gives up on a silent BMC within
  a few seconds by itself);
- a deadline per call (`timeout_s`, counted from when the call starts, not
  while it waits for a slot): past it the caller gets an `IpmiError` saying
  which BMC did not answer, and moves on.

What a BMC answers is outside input: a GUID must be a UUID, FRU text is
plain text of at most `fields.LABEL_MAX` characters, a MAC and an IP must be
one.  A value that fails is dropped with a note in `BmcFacts.dropped`
(never stored), and a FRU image larger than `MAX_FRU_BYTES` is not read.

Errors say whether the request may have been acted on all the same (no
answer came after it was sent), like sync/redfish.py's, so that the power
engine's at-most-once rule holds over IPMI too.  Secrets never appear in an
error message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import ipaddress
import re
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from core import fields
from core.mac import normalize_mac

DEFAULT_PORT = 623
CONCURRENCY = 64          # pyghmi calls in flight at once
MAX_FRU_BYTES = 4096      # FRU 0 of a real board is a few hundred bytes
FRU_CHUNK = 32            # bytes per Read FRU Data: many BMCs (and ipmi_sim) answer no more
SCHEME = "ipmi://"
_HOST_PORT_RE = re.compile(r"[A-Za-z0-9._%\[\]:-]{1,300}")  # a name, an IPv4 or a [IPv6], and a port

# The engine's steps name Redfish ResetTypes; these are the chassis controls pyghmi sends for them.
POWER_STATES = {"On": "on", "ForceOff": "off", "GracefulShutdown": "shutdown", "ForceRestart": "reset",
                "Nmi": "diag"}

T = TypeVar("T")


class IpmiError(Exception):
    def __init__(self, message: str, *, retryable: bool = False, may_have_acted: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.may_have_acted = may_have_acted


class CredentialsRejected(IpmiError):
    pass


def endpoint_address(host: str, port: int) -> str:
    """How an IPMI BMC is recorded as an endpoint: `ipmi://host:port` (the scheme tells power to speak IPMI)."""
    return f"{SCHEME}[{host}]:{port}" if ":" in host else f"{SCHEME}{host}:{port}"


def parse_address(address: str) -> tuple[str, int]:
    """`ipmi://host:port`, `host:port`, `[v6]:port` or a bare host -> (host, port); ValueError if not one."""
    text = address.strip()
    if not text.startswith(SCHEME):
        if "://" in text:
            raise ValueError(f"not an IPMI address: {text[:100]!r}")
        if text.count(":") > 1 and not text.startswith("["):
            text = f"[{text}]"
        text = SCHEME + text
    if not _HOST_PORT_RE.fullmatch(text.removeprefix(SCHEME)):
        raise ValueError(f"not a host or host:port: {address[:100]!r}")
    try:
        parts = urlsplit(text)
        port = DEFAULT_PORT if parts.port is None else parts.port
    except ValueError:
        raise ValueError(f"not a host or host:port: {address[:100]!r}") from None
    if not parts.hostname or parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"not a host or host:port: {address[:100]!r}")
    host = parts.hostname
    if not 0 < port < 65536:
        raise ValueError(f"not a UDP port: {port}")
    if not all(c.isalnum() or c in ".-:%_" for c in host) or len(host) > 253:
        raise ValueError(f"not a host name or IP address: {host[:100]!r}")
    return host, port


@dataclasses.dataclass(slots=True)
class BmcFacts:
    """What discovery reads from one IPMI BMC, checked."""

    guid: str | None
    manufacturer: str | None
    product: str | None
    serial: str | None
    mac: str | None
    ip: str | None
    power_state: str | None              # "On", "Off", or None when the BMC does not say
    dropped: list[str] = dataclasses.field(default_factory=list)


# One bound per event loop (tests run several loops in one process; an asyncio.Semaphore belongs to one).
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _load_pyghmi() -> None:
    """Import pyghmi (about 0.8 s, once) in the calling thread, so that no worker thread imports: CPython 3.11
    can fail an import that compiles in one thread while another parses (SystemError, AST recursion depth)."""
    import pyghmi.exceptions  # noqa: F401
    import pyghmi.ipmi.command  # noqa: F401
    import pyghmi.ipmi.fru  # noqa: F401
    import pyghmi.ipmi.private.util  # noqa: F401


async def _in_thread(call: Callable[[], T], deadline_s: float, what: str) -> T:
    """Run a blocking call in its own thread with a deadline; its slot is given back when the thread ends."""
    _load_pyghmi()
    loop = asyncio.get_running_loop()
    slots = _slots.setdefault(loop, asyncio.Semaphore(CONCURRENCY))
    await slots.acquire()
    future: asyncio.Future[T] = loop.create_future()
    future_abandoned = False  # then an outcome nobody reads is not set (an unread exception would warn)

    def settle(setter: Callable[[Any], None], value: Any) -> None:
        slots.release()
        if not future.done() and not future_abandoned:
            setter(value)

    def run() -> None:
        outcome: tuple[Callable[[Any], None], Any]
        try:
            outcome = (future.set_result, call())
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task as is
            outcome = (future.set_exception, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    try:
        threading.Thread(target=run, name=f"ipmi {what}", daemon=True).start()
    except BaseException:
        slots.release()
        raise
    try:
        async with asyncio.timeout(deadline_s):
            return await asyncio.shield(future)
    except TimeoutError:
        raise IpmiError(f"{what}: no answer within {deadline_s:g} s", retryable=True, may_have_acted=True) from None
    finally:
        future_abandoned = not future.done()  # timed out or cancelled: the thread's outcome goes unread


def _label(what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if isinstance(value, (bytes, bytearray)):
            raise fields.InvalidField(f"{what} is binary, not text")
        return fields.plain_text(str(value).strip(), fields.LABEL_MAX, what)
    return check


def _ipv4(value: Any) -> str:
    """`10.0.0.5/24` (pyghmi's form) or `10.0.0.5` -> `10.0.0.5`; 0.0.0.0 means none."""
    text = value.split("/", 1)[0] if isinstance(value, str) else value
    checked = fields.ip_address(text)
    if ipaddress.ip_address(checked).is_unspecified:
        raise fields.InvalidField("no address (0.0.0.0)")
    return checked


class _Session:
    """One pyghmi session, shared by every client of the same BMC, user and password.

    pyghmi caches sessions itself, but a second Command() for a BMC whose
    session another thread opened waits forever on that cache (seen with
    pyghmi 1.6 against ipmi_sim); so each is made once here, and calls on it
    take turns (one chassis, one conversation).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.command: Any = None


_sessions: dict[tuple[str, int, str, str], _Session] = {}
_sessions_lock = threading.Lock()


class IpmiClient:
    """One BMC over IPMI 2.0.  A session is opened on first use, and kept for the next client of the same BMC.

    pyghmi keeps each session alive itself; a session that lost its BMC is
    dropped and the next call logs on afresh.
    """

    def __init__(self, address: str, username: str, password: str, *, timeout_s: float = 10.0,
                 credential_id: str | None = None, bmc_id: str | None = None) -> None:
        self.host, self.port = parse_address(address)
        self.address = endpoint_address(self.host, self.port)
        self.username = username
        self._password = password
        self.timeout_s = timeout_s
        self.credential_id = credential_id
        self.bmc_id = bmc_id
        digest = hashlib.sha256(password.encode()).hexdigest()  # the key of the shared session, not the secret
        with _sessions_lock:
            self._shared = _sessions.setdefault((self.host, self.port, username, digest), _Session())

    def __repr__(self) -> str:  # never the password
        return f"IpmiClient({self.address!r}, user={self.username!r})"

    # -- the blocking side, run in threads -----------------------------------------------------------------

    def _session(self):
        from pyghmi.exceptions import IpmiException
        from pyghmi.ipmi import command

        if self._shared.command is None:
            try:
                fresh = command.Command(bmc=self.host, userid=self.username, password=self._password,
                                        port=self.port)
                # A logon another thread had under way for the same BMC and user is joined, not retried, and
                # pyghmi returns it without raising even when it failed: its reason is on the session.
                joined = getattr(fresh, "ipmi_session", None)
                if getattr(joined, "broken", False):
                    raise IpmiException(getattr(joined, "errormsg", None) or "")
                self._shared.command = fresh
            except IpmiException as exc:
                raise self._logon_error(exc) from None
            except OSError as exc:  # a name that does not resolve, say
                raise IpmiError(f"{self.address}: cannot reach it ({exc.__class__.__name__})", retryable=True) \
                    from None
            except Exception as exc:  # noqa: BLE001 - pyghmi's logon can trip over a BMC's odd answer
                raise IpmiError(f"{self.address}: the IPMI logon failed ({exc.__class__.__name__}); check the BMC "
                                "and its credential", retryable=True) from None
        return self._shared.command

    def _logon_error(self, exc: Exception) -> IpmiError:
        text = str(exc.args[0]) if exc.args and exc.args[0] else ""
        lowered = text.lower()
        if any(word in lowered for word in ("password", "unauthorized", "username", "privilege", "rakp")):
            which = f"credential {self.credential_id!r}" if self.credential_id else "the credentials"
            return CredentialsRejected(
                f"{self.address} rejected {which} ({text[:120]}); fix the username or secret with "
                f"PATCH /auth/v1/credentials/{self.credential_id or '<id>'}")
        # No session: nothing was sent that could act.
        return IpmiError(f"{self.address}: no IPMI session ({text[:120] or 'no answer'}); is it an IPMI BMC, "
                         "reachable over UDP from the sync daemon?", retryable=True)

    def _call(self, what: str, act: Callable[[Any], T], *, reads: bool = True) -> T:
        """`act` on the shared session.  A read on a kept session that turns out lost (the BMC rebooted, say)
        is tried once more on a fresh logon; a chassis control is not (it may have been acted on)."""
        from pyghmi.exceptions import IpmiException

        with self._shared.lock:
            kept = self._shared.command is not None
            while True:
                command = self._session()
                try:
                    return act(command)
                except IpmiException as exc:
                    text = str(exc.args[0]) if exc.args and exc.args[0] else "no answer"
                    lost = text in ("timeout", "no answer", "Session no longer connected")
                    if lost:  # the session is no good any more: the next call logs on afresh
                        self._shared.command = None
                        if kept and reads:
                            kept = False
                            continue
                        if not kept:
                            text += " (right after logging on: check the BMC and the credential)"
                    raise IpmiError(f"{self.address}: {what}: {text[:200]}", retryable=lost,
                                    may_have_acted=lost) from None
                except IpmiError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a malformed answer broke pyghmi's parsing
                    self._shared.command = None
                    raise IpmiError(f"{self.address}: {what}: malformed answer ({exc.__class__.__name__})",
                                    may_have_acted=True) from None

    def _read_fru(self, command) -> bytes | None:
        """FRU 0 in small chunks; None when the BMC has none."""
        info = command.raw_command(netfn=0x0A, command=0x10, data=[0])
        if "error" in info:
            return None
        data = info["data"]
        size = data[0] | (data[1] << 8) if len(data) >= 2 else 0
        if size > MAX_FRU_BYTES:
            raise IpmiError(f"{self.address}: FRU 0 claims {size} bytes; at most {MAX_FRU_BYTES} are read")
        image = bytearray()
        while len(image) < size:
            want = min(FRU_CHUNK, size - len(image))
            answer = command.raw_command(netfn=0x0A, command=0x11,
                                         data=[0, len(image) & 0xFF, len(image) >> 8, want])
            if "error" in answer:
                raise IpmiError(f"{self.address}: reading FRU 0 at byte {len(image)}: {answer['error']}")
            got = answer["data"][1:1 + answer["data"][0]] if answer["data"] else b""
            if not got:
                break
            image += got
        return bytes(image[:size])

    def _lan(self, command) -> dict[str, str]:
        """The LAN channel's MAC and IPv4 address: two Get LAN Configuration Parameters (pyghmi's
        get_net_configuration asks for nine, and a BMC answers each at its own pace)."""
        channel = command.get_network_channel()
        found: dict[str, str] = {}
        for name, parameter, size in (("ipv4_address", 3, 4), ("mac_address", 5, 6)):
            answer = command.raw_command(netfn=0x0C, command=0x02, data=[channel, parameter, 0, 0])
            data = bytes(answer.get("data") or b"")[1:]  # after the parameter revision
            if "error" in answer or len(data) != size:
                continue
            found[name] = ".".join(str(b) for b in data) if size == 4 else ":".join(f"{b:02x}" for b in data)
        return found

    def _facts(self, command) -> BmcFacts:
        from pyghmi.ipmi import fru
        from pyghmi.ipmi.private import util

        notes: list[str] = []
        guid = None
        answer = command.raw_command(netfn=0x06, command=0x37)  # Get System GUID
        if "error" not in answer and len(answer["data"]) == 16:
            guid = fields.kept(fields.system_uuid, util.decode_wireformat_uuid(answer["data"]).lower(), notes,
                            "system GUID")
        elif "error" not in answer:
            notes.append(f"dropped system GUID: {len(answer['data'])} bytes, not 16")
        info: dict = {}
        image = self._read_fru(command)
        if image:
            try:
                info = fru.FRU(rawdata=image).info or {}
            except Exception as exc:  # noqa: BLE001 - a malformed FRU is the BMC's fault, reported, not fatal
                notes.append(f"dropped FRU 0: not a valid FRU image ({type(exc).__name__})")
        manufacturer = info.get("Manufacturer") or info.get("Board manufacturer")
        product = info.get("Product name") or info.get("Board product name")
        serial = info.get("Serial Number") or info.get("Board serial number")
        net: dict = {}
        try:
            net = self._lan(command)
        except Exception as exc:  # noqa: BLE001 - a BMC without LAN parameters still registers
            notes.append(f"no LAN configuration ({type(exc).__name__}: {str(exc)[:80]})")
        power = command.get_power().get("powerstate")
        return BmcFacts(
            guid=guid,
            manufacturer=fields.kept(_label("FRU manufacturer"), manufacturer, notes, "FRU manufacturer"),
            product=fields.kept(_label("FRU product name"), product, notes, "FRU product name"),
            serial=fields.kept(_label("FRU serial number"), serial, notes, "FRU serial number"),
            mac=fields.kept(normalize_mac, net.get("mac_address"), notes, "LAN MAC address"),
            ip=fields.kept(_ipv4, net.get("ipv4_address"), notes, "LAN IPv4 address"),
            power_state={"on": "On", "off": "Off"}.get(power) if isinstance(power, str) else None,
            dropped=notes)

    # -- the asynchronous side --------------------------------------------------------------------------------

    async def facts(self) -> BmcFacts:
        return await _in_thread(lambda: self._call("reading facts", self._facts), self.timeout_s,
                                f"{self.address} discovery")

    async def power_state(self) -> str | None:
        """"On", "Off", or None when the answer says neither."""
        state = await _in_thread(lambda: self._call("reading chassis status", lambda c: c.get_power()),
                                 self.timeout_s, f"{self.address} chassis status")
        return {"on": "On", "off": "Off"}.get(state.get("powerstate"))

    async def set_power(self, reset_type: str) -> None:
        """Send the chassis control for a Redfish ResetType; verification is the caller's (read power_state)."""
        wanted = POWER_STATES.get(reset_type)
        if wanted is None:
            raise IpmiError(f"{self.address}: {reset_type} has no IPMI chassis control")
        await _in_thread(lambda: self._call(f"chassis control {wanted}", lambda c: c.set_power(wanted, wait=False),
                                            reads=False), self.timeout_s, f"{self.address} chassis control")
