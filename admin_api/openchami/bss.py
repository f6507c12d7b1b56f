"""OpenCHAMI's Boot Script Service as ochami and coresmd speak it, under /openchami/boot/v1.

BSS names boot parameters by host, MAC or NID; Chamicore keeps one entry per scope in
bss.boot_params (a MAC, a component, a NID, a group, a role, or none: the site default).  The
spellings map one to one:

    hosts: ["x1000c1s7b0n0"]  the component's own entry (an xname is normalised as SMD stores it)
    hosts: ["Compute"]        the role's entry (BSS looks a node up by name, then its role, then Default)
    hosts: ["Default"]        the site default
    macs:  ["de:ad:..."]      the MAC's entry
    nids:  [1]                NID 1's entry: it applies to whichever node holds NID 1, now or later
                              (a renumbered node follows its new NID; a NID nobody holds yet waits)

`params` is the command line.  Group entries have no BSS spelling: this face neither shows nor
touches them.  Every write goes through the native write path (BOOT_PARAMS.write and .remove):
the same checks, events and change feed as /boot/v1/bootparams; its 422s come back as BSS's 400s.

The boot script is the boot path's own answer, fetched from it, so that there is one renderer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from admin_api import bootpath
from admin_api.bss.bootparams import BOOT_PARAMS, COLUMNS, BootParamsSpec
from admin_api.http import convert, json_response, problem
from admin_api.openchami.compat import (
    BODY_TYPES,
    PREFIX,
    json_body,
    json_object,
    key,
    query_value,
    query_values,
)
from admin_api.routing import Param, Router
from admin_api.service import version
from core import xname
from core.identity import Role, generate_id
from core.mac import normalize_mac, try_normalize_mac
from core.problems import ProblemError

BASE = f"{PREFIX}/boot/v1"
router = Router("openchami-bss")

DEFAULT_HOST = "Default"  # BSS's name for the entry every host falls back to
ROLE_HOSTS = frozenset(role.value for role in Role)
MAC_FORMAT = re.compile(r"([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}")  # BSS's BootParams.CheckMacs, which ochami runs too
# BSS answers with a cloud-init block in every entry, and ochami sends one in every body: these values, empty.
CLOUD_INIT = {"meta-data": None, "user-data": None,
              "phone-home": {"pub_key_dsa": "", "pub_key_rsa": "", "pub_key_ecdsa": "", "instance_id": "",
                             "hostname": "", "fqdn": ""}}
NO_CLOUD_INIT = ("Bad Request: Chamicore keeps cloud-init data apart from boot parameters; set it with the "
                 "cloud-init API (/openchami/cloud-init/admin/..., or the native /cloud-init/payloads)")
BOOTSCRIPT_QUERY = ("mac", "name", "nid", "arch", "retry", "ts", "json")
# Native field names in problems, as BSS's clients name them.
_BSS_NAMES = {"cmdline": "params", "componentId": "hosts", "role": "hosts", "mac": "macs", "nid": "nids"}


def bad_request(text: str) -> ProblemError:
    return problem(400, f"Bad Request: {text}")


@contextlib.contextmanager
def bss_errors() -> Iterator[None]:
    """The native checks' 422 problems as the 400s BSS answers, fields named as BSS names them."""
    try:
        yield
    except ProblemError as exc:
        if exc.problem.status != 422:
            raise
        found = exc.problem.errors or []
        text = "; ".join(f"{_bss_field(e.field)}: {e.detail}" for e in found) or exc.problem.detail or ""
        raise bad_request(text) from None


def _bss_field(path: str) -> str:
    name = path.removeprefix("$.spec.").removeprefix("$.")
    head = re.match(r"[^.\[]*", name)
    first = head.group() if head else name
    return _BSS_NAMES.get(first, first) + name[len(first):]


# -- BootParams bodies ----------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class BssParams:
    """A BootParams body: whom it names, and the values (empty: not given)."""

    hosts: list[str]
    macs: list[str]
    nids: list[int]
    params: str = ""
    kernel: str = ""
    initrd: str = ""

    @property
    def names_any(self) -> bool:
        return bool(self.hosts or self.macs or self.nids)


def read_params(body: Any) -> BssParams:
    """Keys matched in any case and unknown keys ignored, as Go's decoder does; cloud-init is checked apart."""
    obj = json_object({} if body is None else body, "the BootParams body")
    return BssParams(_strings(obj, "hosts"), _strings(obj, "macs"), _nids(obj), _text(obj, "params"),
                     _text(obj, "kernel"), _text(obj, "initrd"))


def check_cloud_init(body: Any) -> None:
    """ochami sends `"cloud-init"` with null maps and empty strings in every body: that is accepted and
    ignored.  Data in it is refused rather than dropped: Chamicore keeps it in its cloud-init payloads."""
    value = key(body, "cloud-init") if isinstance(body, dict) else None
    if value is None:
        return
    if not isinstance(value, dict):
        raise bad_request("cloud-init must be an object")
    phone_home = key(value, "phone-home")
    if (key(value, "meta-data") or key(value, "user-data")
            or (phone_home is not None and (not isinstance(phone_home, dict) or any(phone_home.values())))):
        raise problem(400, NO_CLOUD_INIT)


def _strings(obj: dict, name: str) -> list[str]:
    value = key(obj, name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{name} must be a list of strings")
    return [v for v in value if v]


def _nids(obj: dict) -> list[int]:
    value = key(obj, "nids")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and
                                              -(1 << 31) <= v < 1 << 31 for v in value):
        raise bad_request("nids must be a list of whole numbers (32-bit)")
    return value


def _text(obj: dict, name: str) -> str:
    value = key(obj, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string")
    return value


# -- what a host, MAC or NID names ------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """One host, MAC or NID of a request and the scope of the entry it names."""

    listed_as: str  # "hosts", "macs" or "nids": where BSS lists it
    item: str | int  # as BSS shows it
    mac: str | None = None
    component_id: str | None = None
    nid: int | None = None
    role: str | None = None

    @property
    def scope(self) -> tuple[str | None, str | None, int | None, str | None]:
        return self.mac, self.component_id, self.nid, self.role

    def spec(self, kernel: str, initrd: str, cmdline: str) -> BootParamsSpec:
        """The native spec of this entry, converted (so checked) as a native body is."""
        scope = {"mac": self.mac, "componentId": self.component_id, "nid": self.nid, "role": self.role}
        return convert({**{k: v for k, v in scope.items() if v is not None},
                        "kernel": kernel, "initrd": initrd, "cmdline": cmdline}, BootParamsSpec)


def host_target(host: str) -> Target:
    if host == DEFAULT_HOST:
        return Target("hosts", host)
    if host in ROLE_HOSTS:
        return Target("hosts", host, role=host)
    found = xname.parse(host)
    component_id = found.id if found else host
    return Target("hosts", component_id, component_id=component_id)


def listed(row) -> tuple[str, str | int]:
    """Where an entry appears in a full listing, under its own spelling."""
    if row["mac"]:
        return "macs", row["mac"]
    if row["component_id"]:
        return "hosts", row["component_id"]
    if row["nid"] is not None:
        return "nids", row["nid"]
    return "hosts", row["role"] or DEFAULT_HOST


def write_targets(params: BssParams) -> list[Target]:
    """The entries a write names, each once.  A MAC must be spelt as BSS requires.  A NID names its own
    entry, kept by number: no component need hold it yet, and a renumbered node takes its new NID's."""
    targets = [host_target(host) for host in params.hosts]
    for mac in params.macs:
        if not MAC_FORMAT.fullmatch(mac):
            raise bad_request(f"invalid MAC address format: {mac}")
        targets.append(Target("macs", normalize_mac(mac), mac=normalize_mac(mac)))
    negative = [str(nid) for nid in params.nids if nid < 0]
    if negative:
        raise bad_request(f"invalid NID {', '.join(negative)}: a NID is a whole number, 0 or more")
    targets += [Target("nids", nid, nid=nid) for nid in params.nids]
    unique: dict[tuple, Target] = {}
    for target in targets:
        unique.setdefault(target.scope, target)
    return list(unique.values())


async def entries(conn, targets: Sequence[Target], *, lock: bool = False) -> dict[tuple, Any]:
    """The entries stored for these targets (no fallback to role or site), by scope."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM bss.boot_params WHERE group_name IS NULL AND (mac = ANY($1::text[]) "
        f"OR component_id = ANY($2::text[]) OR nid = ANY($3::bigint[]) OR role = ANY($4::text[]) "
        f"OR ($5 AND num_nonnulls(mac, component_id, nid, role) = 0)){' FOR UPDATE' if lock else ''}",
        [t.mac for t in targets if t.mac], [t.component_id for t in targets if t.component_id],
        [t.nid for t in targets if t.nid is not None], [t.role for t in targets if t.role],
        any(t.scope == (None, None, None, None) for t in targets))
    return {(row["mac"], row["component_id"], row["nid"], row["role"]): row for row in rows}


async def entries_with(conn, kernel: str, initrd: str, cmdline: str, *, lock: bool = False) -> list:
    """The entries (not group ones) whose values are all those given (empty: any)."""
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM bss.boot_params WHERE group_name IS NULL AND ($1 = '' OR kernel = $1) "
        f"AND ($2 = '' OR initrd = $2) AND ($3 = '' OR cmdline = $3) ORDER BY id{' FOR UPDATE' if lock else ''}",
        kernel, initrd, cmdline)


class Listing:
    """Entries grouped by identical values, each group listing its hosts, MACs and NIDs (as BSS on Postgres)."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str, str], dict[str, list]] = {}

    def add(self, row, listed_as: str, item: str | int) -> None:
        group = self.groups.setdefault((row["cmdline"], row["kernel"], row["initrd"]),
                                       {"hosts": [], "macs": [], "nids": []})
        if item not in group[listed_as]:
            group[listed_as].append(item)

    def answer(self) -> list[dict]:
        answer = []
        for (cmdline, kernel, initrd), items in self.groups.items():
            entry: dict[str, Any] = {name: values for name, values in items.items() if values}
            entry.update((name, value) for name, value in (("params", cmdline), ("kernel", kernel),
                                                           ("initrd", initrd)) if value)
            entry["cloud-init"] = CLOUD_INIT
            answer.append(entry)
        return answer


# -- /bootparameters ----------------------------------------------------------------

PARAMS = "/bootparameters"
FILTERS = (Param("name", "host names (xname, role name, or Default), repeated or comma-separated"),
           Param("mac", "MAC addresses, repeated or comma-separated"),
           Param("nid", "node numbers, repeated or comma-separated"))


@router.get(BASE + PARAMS, scope="read:bss", summary="Boot parameters by host, MAC or NID (BSS)", params=FILTERS,
            content_types=BODY_TYPES, fold_query=True)
async def get_bootparameters(request: Request) -> Response:
    names, macs, nid_texts = (query_values(request, name) for name in ("name", "mac", "nid"))
    raw = await json_body(request)
    if raw is None and not (names or macs or nid_texts):
        async with request.app.state.pool.acquire() as conn:
            rows = await conn.fetch(f"SELECT {COLUMNS} FROM bss.boot_params WHERE group_name IS NULL ORDER BY "
                                    f"mac IS NOT NULL, nid IS NOT NULL, component_id IS NOT NULL, role NULLS FIRST, "
                                    f"component_id, nid, mac")
        listing = Listing()
        for row in rows:
            listing.add(row, *listed(row))
        return json_response(listing.answer())
    try:
        body = read_params(raw)
    except ProblemError:
        if not (names or macs or nid_texts):
            raise
        body = BssParams([], [], [])  # a query was given: BSS reads it and lets an unreadable body be
    nids = body.nids + [_nid(text) for text in nid_texts]
    hosts, macs = body.hosts + names, body.macs + macs
    targets = [host_target(host) for host in hosts]
    targets += [Target("macs", mac, mac=mac) for mac in map(try_normalize_mac, macs) if mac]
    targets += [Target("nids", nid, nid=nid) for nid in nids if 0 <= nid < 1 << 63]  # others name no entry
    async with request.app.state.pool.acquire() as conn:
        stored = await entries(conn, targets)
        by_values = await entries_with(conn, body.kernel, body.initrd, "") if body.kernel or body.initrd else []
    listing = Listing()
    for target in targets:
        if (row := stored.get(target.scope)) is not None:
            listing.add(row, target.listed_as, target.item)
    for row in by_values:
        listing.add(row, *listed(row))
    asked = [what for what, given in (("Hosts", hosts), ("MACs", macs), ("NIDs", nids),
                                      ("kernel", body.kernel), ("initrd", body.initrd)) if given]
    if not asked:
        raise problem(400, "No specified data requested")
    if not listing.groups:
        raise problem(404, "Cannot find boot parameters for requested "
                      + ", ".join(asked[:-1]) + (" or " if len(asked) > 1 else "") + asked[-1])
    return json_response(listing.answer())


def _nid(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise problem(400, f"Bad Request - Invalid nid '{text[:40]}'") from None


async def _written_params(request: Request) -> BssParams:
    raw = await json_body(request)
    check_cloud_init(raw)
    return read_params(raw)


@router.post(BASE + PARAMS, scope="write:bss", summary="Create boot parameters for hosts, MACs or NIDs (BSS)",
             content_types=BODY_TYPES)
async def post_bootparameters(request: Request) -> Response:
    body = await _written_params(request)
    with bss_errors():
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            targets = _named(body)
            existing = await entries(conn, targets, lock=True)
            for target in targets:
                if target.scope in existing:
                    raise bad_request(f"Already exists: {target.item}")
            for target in targets:
                await BOOT_PARAMS.write(conn, generate_id(BOOT_PARAMS.id_prefix),
                                        target.spec(body.kernel, body.initrd, body.params), create=True)
    return Response(status_code=201)


@router.put(BASE + PARAMS, scope="write:bss", summary="Set boot parameters for hosts, MACs or NIDs (BSS)",
            content_types=BODY_TYPES)
async def put_bootparameters(request: Request) -> Response:
    body = await _written_params(request)
    with bss_errors():
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            targets = _named(body)
            existing = await entries(conn, targets, lock=True)
            for target in targets:
                row = existing.get(target.scope)
                await BOOT_PARAMS.write(conn, row["id"] if row else generate_id(BOOT_PARAMS.id_prefix),
                                        target.spec(body.kernel, body.initrd, body.params), create=row is None)
    return Response(status_code=200)


@router.patch(BASE + PARAMS, scope="write:bss", summary="Change some boot parameters of hosts, MACs or NIDs (BSS)",
              content_types=BODY_TYPES)
async def patch_bootparameters(request: Request) -> Response:
    body = await _written_params(request)
    if not (body.kernel or body.initrd or body.params):
        raise bad_request("give at least one of params, kernel or initrd to change")
    with bss_errors():
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            targets = _named(body)
            existing = await entries(conn, targets, lock=True)
            missing = [str(t.item) for t in targets if t.scope not in existing]
            if missing:
                raise problem(404, f"Not Found: no boot parameters are stored for {', '.join(missing)}")
            for target in targets:
                row = existing[target.scope]
                spec = target.spec(body.kernel or row["kernel"], body.initrd or row["initrd"],
                                   body.params or row["cmdline"])
                await BOOT_PARAMS.write(conn, row["id"], spec, create=False)
    return Response(status_code=200)


@router.delete(BASE + PARAMS, scope="write:bss", summary="Delete boot parameters of hosts, MACs or NIDs, or by "
               "kernel, initrd or params (BSS)", content_types=BODY_TYPES, status=200)
async def delete_bootparameters(request: Request) -> Response:
    # Hosts, MACs or NIDs name what goes (the values ochami also sends are not a condition, as in BSS on
    # Postgres); without them, the entries whose values are all those given go.
    body = read_params(await json_body(request))
    with bss_errors():
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            if body.names_any:
                targets = write_targets(body)
                existing = await entries(conn, targets, lock=True)
                missing = [str(t.item) for t in targets if t.scope not in existing]
                if missing:
                    raise bad_request(f"no boot parameters are stored for {', '.join(missing)}")
                rows = [existing[t.scope] for t in targets]
            elif body.kernel or body.initrd or body.params:
                rows = await entries_with(conn, body.kernel, body.initrd, body.params, lock=True)
                if not rows:
                    raise bad_request("no boot parameters have the kernel, initrd and params given")
            else:
                raise bad_request("give hosts, macs or nids, or the kernel, initrd or params of the entries to delete")
            for row in rows:
                await BOOT_PARAMS.remove(request, conn, row["id"], row)
    return Response(status_code=200)


def _named(body: BssParams) -> list[Target]:
    if not body.names_any:
        raise bad_request("Nothing to Store: give hosts, macs or nids")
    return write_targets(body)


# -- /bootscript ------------------------------------------------------------------


@router.get(BASE + "/bootscript", scope=None, summary="A node's iPXE boot script, as the boot path answers it (BSS)",
            params=(*(Param(name, f"BSS bootscript `{name}`") for name in BOOTSCRIPT_QUERY),
                    Param("timestamp", "sent by ochami, ignored (BSS reads ts)")), fold_query=True)
async def get_bootscript(request: Request) -> Response:
    """The boot path's answer, relayed: one renderer, and the answer a node gets is the one shown.  Open
    like the boot path.  A person running `ochami bss boot script get` is not counted as the node booting."""
    query = [(name, value) for name in BOOTSCRIPT_QUERY if (value := query_value(request, name)) is not None]
    if not any(name in ("mac", "name", "nid") for name, _ in query):
        raise problem(400, "Need a mac=, name=, or nid= parameter")
    hops = [request.headers.get("x-forwarded-for"), request.client.host if request.client else None]
    headers = {"X-Forwarded-For": ", ".join(hop for hop in hops if hop)} if any(hops) else {}
    preview = request.headers.get("user-agent", "").startswith("ochami/")
    answer = await bootpath.fetch(request.app.state.config, "/boot/v1/bootscript", query, preview=preview,
                                  headers=headers)
    return Response(answer.body, status_code=answer.status, headers={"Content-Type": answer.content_type})


# -- /service ---------------------------------------------------------------------


async def _answers(request: Request, table: str) -> bool:
    """Whether the database answers a read of `table` (BSS's storage and its HSM both live there)."""
    try:
        async with request.app.state.pool.acquire(timeout=3) as conn:
            await conn.fetchval(f"SELECT 1 FROM {table} LIMIT 1", timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    return True


def _storage(ok: bool) -> dict[str, str]:
    return {"name": "postgres", "status": "connected" if ok else "error"}


@router.get(BASE + "/service/status", scope=None, summary="BSS status")
async def service_status(request: Request) -> Response:
    return json_response({"bss-status": "running"})


@router.get(BASE + "/service/status/all", scope=None, summary="BSS status, version, HSM and storage")
async def service_status_all(request: Request) -> Response:
    hsm, storage = await _answers(request, "smd.components"), await _answers(request, "bss.boot_params")
    return json_response({"bss-version": version(), "bss-status": "running",
                          "bss-status-hsm": "connected" if hsm else "error",
                          "bss-storage-backend": _storage(storage)}, 200 if hsm and storage else 500)


@router.get(BASE + "/service/storage/status", scope=None, summary="BSS storage status")
async def service_storage(request: Request) -> Response:
    ok = await _answers(request, "bss.boot_params")
    return json_response({"bss-storage-backend": _storage(ok)}, 200 if ok else 500)


@router.get(BASE + "/service/hsm", scope=None, summary="BSS's HSM (SMD) status")
async def service_hsm(request: Request) -> Response:
    ok = await _answers(request, "smd.components")
    return json_response({"bss-status-hsm": "connected" if ok else "error"}, 200 if ok else 500)


@router.get(BASE + "/service/version", scope=None, summary="BSS version")
async def service_version(request: Request) -> Response:
    return json_response({"bss-version": version()})


routers: list[Router] = [router]
