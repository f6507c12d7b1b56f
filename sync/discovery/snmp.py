"""The snmp driver's reading half: one switch's forwarding table, port names and LLDP neighbours.

Read over SNMP v2c or v3 (USM) with pysnmp's asyncio API, by numeric OID
(no MIB files are loaded):

- BRIDGE-MIB dot1dTpFdbTable and Q-BRIDGE-MIB dot1qTpFdbTable: learned MAC -> bridge port
  (a switch may fill either or both; entries the switch did not learn, its own MACs and
  multicast addresses are left out);
- dot1dBasePortIfIndex: bridge port -> ifIndex; IF-MIB ifName (ifDescr when absent): the port's name;
- LLDP-MIB lldpRemTable, where present: the neighbour on each port (its lldpRemLocalPortNum is the
  bridge port), its name, port id and whether it calls itself a bridge or a router.

What a switch says is input: names are checked as plain text and capped, and a
table longer than any access switch would hold fails the host (MAX_ROWS).
The community and the v3 keys are handed to pysnmp and nowhere else: no
message here quotes them (pysnmp's own reprs mask them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any

from pysnmp.error import PySnmpError  # type: ignore[import-untyped]  # pysnmp ships no type information
from pysnmp.hlapi.v3arch import asyncio as hlapi  # type: ignore[import-untyped]
from pysnmp.proto import errind  # type: ignore[import-untyped]

from core import fields
from core.switch_ports import PORT_NAME_MAX, SnmpSettings

MAX_ROWS = 65536      # per table; a core switch's table is not an access switch's, point the target lower
REPETITIONS = 25      # rows per GETBULK

SYS_NAME = "1.3.6.1.2.1.1.5.0"
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
BASE_PORT_IFINDEX = "1.3.6.1.2.1.17.1.4.1.2"
FDB_PORT, FDB_STATUS = "1.3.6.1.2.1.17.4.3.1.2", "1.3.6.1.2.1.17.4.3.1.3"
QFDB_PORT, QFDB_STATUS = "1.3.6.1.2.1.17.7.1.2.2.1.2", "1.3.6.1.2.1.17.7.1.2.2.1.3"
LLDP_REM = "1.0.8802.1.1.2.1.4.1.1"
LLDP_PORT_ID, LLDP_SYS_NAME, LLDP_CAP_ENABLED = f"{LLDP_REM}.7", f"{LLDP_REM}.9", f"{LLDP_REM}.12"
LEARNED = 3           # dot1dTpFdbStatus / dot1qTpFdbStatus learned(3); other(1) invalid(2) self(4) mgmt(5)
BRIDGE_OR_ROUTER = 0x20 | 0x08  # LldpSystemCapabilitiesMap bits 2 (bridge) and 4 (router), first octet

AUTH = {"MD5": hlapi.USM_AUTH_HMAC96_MD5, "SHA": hlapi.USM_AUTH_HMAC96_SHA, "SHA224": hlapi.USM_AUTH_HMAC128_SHA224,
        "SHA256": hlapi.USM_AUTH_HMAC192_SHA256, "SHA384": hlapi.USM_AUTH_HMAC256_SHA384,
        "SHA512": hlapi.USM_AUTH_HMAC384_SHA512}
PRIV = {"DES": hlapi.USM_PRIV_CBC56_DES, "3DES": hlapi.USM_PRIV_CBC168_3DES, "AES128": hlapi.USM_PRIV_CFB128_AES,
        "AES192": hlapi.USM_PRIV_CFB192_AES, "AES256": hlapi.USM_PRIV_CFB256_AES}
# The switch's answers that say the credential is wrong rather than the switch away.
REFUSALS = (errind.WrongDigest, errind.UnknownUserName, errind.UnknownSecurityName, errind.DecryptionError,
            errind.UnsupportedSecurityLevel, errind.AuthenticationError)


# SNMP engines per event loop, one per credential.  Making one compiles pysnmp's MIB modules (about 1 s of CPU:
# pysnmp runs them from source unless Python runs with -O), so an engine is made off the event loop, once, and
# then reads every switch of its credential, side by side.  One engine per credential, not one for all: pysnmp keys
# a v3 user by its name, so two credentials with one user name and different keys must not share an engine.
_ENGINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = weakref.WeakKeyDictionary()
_MAKING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


async def engine_for(credential_id: str):
    """This event loop's SNMP engine for the switches of this credential."""
    loop = asyncio.get_running_loop()
    engines = _ENGINES.setdefault(loop, {})
    if credential_id not in engines:
        async with _MAKING.setdefault(loop, asyncio.Lock()):  # one at a time: the CPU is the scan's too
            if credential_id not in engines:
                engines[credential_id] = await asyncio.to_thread(hlapi.SnmpEngine)
    return engines[credential_id]


class SwitchError(Exception):
    """The switch could not be read; the message says why and never holds a secret."""


@dataclasses.dataclass(frozen=True, slots=True)
class Neighbour:
    name: str          # lldpRemSysName, or "" when it gives none
    port: str          # lldpRemPortId as text
    forwards: bool     # it says it is a bridge or a router: another switch, not a node


@dataclasses.dataclass(slots=True)
class Port:
    number: int                                  # the bridge port
    name: str                                    # ifName, else ifDescr, else "bridge port N"
    macs: list[str] = dataclasses.field(default_factory=list)
    neighbour: Neighbour | None = None


@dataclasses.dataclass(slots=True)
class FoundSwitch:
    address: str                                 # snmp://host:port
    name: str | None                             # sysName
    ports: dict[int, Port]                       # by bridge port, those with MACs or a neighbour
    dropped: list[str] = dataclasses.field(default_factory=list)  # what the switch said that was not taken


def access(settings: SnmpSettings, username: str, secret: str, credential_id: str):
    """pysnmp's auth data for the target's version: the community (v2c), or a v3 user and its keys.

    A v3 secret is a JSON object {"authKey": ..., "privKey": ...} (privKey unless privProtocol is none).
    """
    if settings.version == "2c":
        return hlapi.CommunityData(secret, mpModel=1)
    try:
        keys = json.loads(secret)
    except ValueError:
        keys = None
    needs_priv = settings.priv_protocol != "none"
    if not (isinstance(keys, dict) and isinstance(keys.get("authKey"), str)
            and (isinstance(keys.get("privKey"), str) or not needs_priv)):
        shape = '{"authKey": "...", "privKey": "..."}' if needs_priv else '{"authKey": "..."}'
        raise SwitchError(f"credential {credential_id!r}: an SNMPv3 secret is a JSON object {shape}")
    if len(keys["authKey"]) < 8 or (needs_priv and len(keys["privKey"]) < 8):
        raise SwitchError(f"credential {credential_id!r}: SNMPv3 keys are at least 8 characters long")
    return hlapi.UsmUserData(username, keys["authKey"], keys["privKey"] if needs_priv else None,
                             authProtocol=AUTH[settings.auth_protocol],
                             privProtocol=PRIV[settings.priv_protocol] if needs_priv else None)


class SwitchReader:
    """One switch, read with its credential's SNMP engine (`engine_for`)."""

    def __init__(self, engine, address: str, auth, settings: SnmpSettings, credential_id: str | None,
                 request_timeout_s: float) -> None:
        self.address = address
        host, _, port = address.removeprefix("snmp://").rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.auth = auth
        self.context = hlapi.ContextData(contextName=settings.context_name.encode())
        self.credential_id = credential_id
        self.request_timeout_s = request_timeout_s
        self.engine = engine
        self.target: hlapi.UdpTransportTarget | hlapi.Udp6TransportTarget | None = None

    async def _target(self):
        if self.target is None:
            kind = hlapi.Udp6TransportTarget if ":" in self.host else hlapi.UdpTransportTarget
            try:
                self.target = await kind.create((self.host, self.port), timeout=self.request_timeout_s, retries=1)
            except PySnmpError:
                raise SwitchError(f"{self.address}: cannot resolve {self.host[:100]!r}") from None
        return self.target

    def _failure(self, indication) -> SwitchError:
        if isinstance(indication, errind.RequestTimedOut):
            return SwitchError(f"{self.address}: no SNMP answer (the switch is unreachable, or ignores credential "
                               f"{self.credential_id!r}: a wrong community or v3 user)")
        if isinstance(indication, REFUSALS):
            return SwitchError(f"{self.address}: the switch refused credential {self.credential_id!r} "
                               f"({type(indication).__name__}: check the v3 keys and protocols)")
        return SwitchError(f"{self.address}: SNMP error {str(indication)[:200]}")

    async def rows(self, column: str) -> AsyncIterator[tuple[tuple[int, ...], Any]]:
        """(index, value) of each row of a table column, in order; none for a table the switch lacks."""
        prefix = tuple(int(n) for n in column.split("."))
        target, count = await self._target(), 0
        walk = hlapi.bulk_walk_cmd(self.engine, self.auth, target, self.context, 0, REPETITIONS,
                                   hlapi.ObjectType(hlapi.ObjectIdentity(column)), lookupMib=False,
                                   lexicographicMode=False)
        async for indication, status, _, var_binds in walk:
            if indication:
                raise self._failure(indication)
            if status:
                raise SwitchError(f"{self.address}: the switch answered {status.prettyPrint()[:100]} for {column}")
            for name, value in var_binds:
                oid = tuple(name)
                if oid[:len(prefix)] != prefix:
                    return
                count += 1
                if count > MAX_ROWS:
                    raise SwitchError(f"{self.address}: {column} holds more than {MAX_ROWS} rows; "
                                      "point the target at an access switch")
                yield oid[len(prefix):], value

    async def get(self, oid: str):
        indication, status, _, var_binds = await hlapi.get_cmd(
            self.engine, self.auth, await self._target(), self.context,
            hlapi.ObjectType(hlapi.ObjectIdentity(oid)), lookupMib=False)
        if indication:
            raise self._failure(indication)
        if status or not var_binds:
            return None
        value = var_binds[0][1]
        return value if hasattr(value, "asOctets") else None  # noSuchObject and friends are not text


def _text(value, what: str, notes: list[str]) -> str | None:
    try:
        text = bytes(value.asOctets()).decode("utf-8")
        return fields.plain_text(text, PORT_NAME_MAX, what).strip() or None
    except (AttributeError, UnicodeDecodeError, fields.InvalidField) as exc:
        notes.append(f"dropped {what}: {exc if isinstance(exc, fields.InvalidField) else 'not text'}")
        return None


def _int(value) -> int | None:
    """An INTEGER's value; None for anything else a switch put in its place."""
    try:
        return int(value) if not hasattr(value, "asOctets") else None
    except (TypeError, ValueError):
        return None


def _mac(index: tuple[int, ...]) -> str | None:
    """The MAC a forwarding table's row index ends with; None for a multicast or malformed one."""
    octets = index[-6:]
    if len(octets) != 6 or any(not 0 <= n <= 255 for n in octets) or octets[0] & 1 or not any(octets):
        return None
    return ":".join(f"{n:02x}" for n in octets)


async def _fdb(reader: SwitchReader, port_column: str, status_column: str) -> dict[str, int]:
    """MAC -> bridge port of one forwarding table, learned entries only (a table without status: all)."""
    status = {index: _int(value) async for index, value in reader.rows(status_column)}
    found: dict[str, int] = {}
    async for index, value in reader.rows(port_column):
        mac, number = _mac(index), _int(value)
        if mac and number and number > 0 and status.get(index, LEARNED) == LEARNED:
            found.setdefault(mac, number)
    return found


async def read_switch(reader: SwitchReader) -> FoundSwitch:
    notes: list[str] = []
    sys_name = await reader.get(SYS_NAME)
    # Q-BRIDGE first: it is what VLAN-aware switches fill; a MAC learned in two VLANs keeps its first port.
    learned = await _fdb(reader, QFDB_PORT, QFDB_STATUS)
    for mac, number in (await _fdb(reader, FDB_PORT, FDB_STATUS)).items():
        learned.setdefault(mac, number)
    if_index = {index[0]: _int(value) async for index, value in reader.rows(BASE_PORT_IFINDEX) if len(index) == 1}
    names: dict[int, str | None] = {}
    for column, what in ((IF_NAME, "ifName"), (IF_DESCR, "ifDescr")):
        async for index, value in reader.rows(column):
            if len(index) == 1 and names.get(index[0]) is None:
                names[index[0]] = _text(value, f"{what}.{index[0]}", notes)

    ports: dict[int, Port] = {}

    def port_at(number: int) -> Port:
        if number not in ports:
            name = names.get(if_index.get(number) or -1)
            ports[number] = Port(number, name or f"bridge port {number}")
        return ports[number]

    for mac, number in sorted(learned.items()):
        port_at(number).macs.append(mac)
    lldp: dict[tuple[int, ...], dict[str, object]] = {}
    for column in (LLDP_SYS_NAME, LLDP_PORT_ID, LLDP_CAP_ENABLED):
        async for index, value in reader.rows(column):
            if len(index) == 3:  # lldpRemTimeMark, lldpRemLocalPortNum, lldpRemIndex
                lldp.setdefault(index, {})[column] = value
    for (_, local_port, _), columns in sorted(lldp.items()):
        caps = columns.get(LLDP_CAP_ENABLED)
        octets = bytes(caps.asOctets()) if hasattr(caps, "asOctets") else b""
        where = f"LLDP neighbour on bridge port {local_port}"
        name = _text(columns[LLDP_SYS_NAME], f"{where} name", notes) if LLDP_SYS_NAME in columns else None
        port_id = _text(columns[LLDP_PORT_ID], f"{where} port", notes) if LLDP_PORT_ID in columns else None
        port_at(local_port).neighbour = Neighbour(name or "", port_id or "", bool(octets and octets[0] & BRIDGE_OR_ROUTER))
    return FoundSwitch(address=reader.address, name=_text(sys_name, "sysName", notes) if sys_name is not None else None,
                       ports=ports, dropped=list(dict.fromkeys(notes)))
