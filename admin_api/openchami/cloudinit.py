"""OpenCHAMI's cloud-init server as ochami speaks to it (`ochami cloud-init ...`), under /openchami/cloud-init.

A translation onto the native cloud-init payloads (cloudinit.payloads), written
through their one write path (PAYLOADS.write: the same checks, scope rules and
event as /cloud-init/payloads), so there is no second copy of anything:

- cluster defaults are keys of the site payload's meta-data; the boot path turns
  them into what a node sees (hotpath/answers.py: its host name from `short-name`
  and its NID, OpenCHAMI's `instance_data.v1`, ...);
- a group is the payload scoped to the SMD group of that name: its meta-data is
  the payload's, its file the payload's user-data, decoded.  OpenCHAMI's groups
  exist apart from SMD's, so a missing SMD group is created, empty, through the
  native group code (which needs write:smd too).  The description and the file's
  name and encoding, which a node never receives as such, have columns of their
  own (migration 0013), so that ochami reads back what it stored;
- instance info is keys of the component payload's meta-data;
- impersonation is what the boot path answers the node, asked of the boot path
  itself (not counted as the node asking), so it is the same bytes.

Error bodies stay Problem JSON: ochami only prints them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import resource
import socket
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api import bootpath
from admin_api.auth.guard import require_scopes
from admin_api.cloudinit.payloads import MAX_DOCUMENT, PAYLOADS, PayloadSpec
from admin_api.cloudinit.userdata import check_meta_data, check_user_data
from admin_api.http import check_values, convert, field_problem, json_response, problem
from admin_api.openchami.compat import BODY_TYPES, PREFIX, json_body, json_object, key
from admin_api.resources import path_key
from admin_api.routing import Router
from admin_api.service import version
from admin_api.smd.groups import Groups, GroupSpec
from core import migrate, xname
from core.identity import generate_id, is_valid_id
from core.problems import ProblemError

BASE = PREFIX + "/cloud-init"
router = Router("openchami-cloud-init")
routers = [router]
STARTED = time.monotonic()

Text = Annotated[str, msgspec.Meta(max_length=1024)]
Keys = Annotated[list[Annotated[str, msgspec.Meta(max_length=16 * 1024)]], msgspec.Meta(max_length=1024)]
MAX_CONTENT = MAX_DOCUMENT  # what a payload's user-data may hold


class ClusterDefaults(msgspec.Struct, omit_defaults=True, rename={
        "availability_zone": "availability-zone", "cluster_name": "cluster-name", "public_keys": "public-keys",
        "base_url": "base-url", "boot_subnet": "boot-subnet", "wg_subnet": "wg-subnet", "short_name": "short-name",
        "nid_length": "nid-length"}):
    """OpenCHAMI's cluster defaults: every key is kept in the site payload's meta-data under its name here."""

    cloud_provider: Text | None = None  # with an underscore, as OpenCHAMI spells it here
    region: Text | None = None
    availability_zone: Text | None = None
    cluster_name: Text | None = None
    public_keys: Keys | None = None
    base_url: Text | None = None
    boot_subnet: Text | None = None
    wg_subnet: Text | None = None
    short_name: Text | None = None
    nid_length: Annotated[int, msgspec.Meta(ge=0, le=19)] | None = None  # 0: not given (as in OpenCHAMI)


class InstanceInfo(msgspec.Struct, omit_defaults=True, rename="kebab"):
    """One node's own cloud-init keys: the component payload's meta-data under these names."""

    id: Text | None = None  # the path's id is the one that counts
    instance_id: Text | None = None  # Chamicore derives the instance-id from the node's data
    local_hostname: Text | None = None
    hostname: Text | None = None
    cluster_name: Text | None = None
    region: Text | None = None
    availability_zone: Text | None = None
    cloud_provider: Text | None = None
    instance_type: Text | None = None
    cloud_init_base_url: Text | None = None
    public_keys: Keys | None = None


class GroupFile(msgspec.Struct, omit_defaults=True):
    content: str | None = None  # the body cap bounds it; decoded, MAX_CONTENT
    filename: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    encoding: Literal["base64", "plain"] | None = None  # none given: plain


class GroupData(msgspec.Struct, omit_defaults=True, rename={"meta_data": "meta-data"}):
    name: Annotated[str, msgspec.Meta(max_length=255)] | None = None  # a POST needs it; a PUT names the path's
    description: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    meta_data: dict[str, Any] | None = None
    file: GroupFile | None = None


class VersionInfo(msgspec.Struct):
    process_name: str
    build_info: str
    uptime: str
    runtime_host: str
    bytes_allocated: int


DEFAULT_KEYS = tuple(f.encode_name for f in msgspec.structs.fields(ClusterDefaults))
INSTANCE_KEYS = tuple(f.encode_name for f in msgspec.structs.fields(InstanceInfo) if f.name not in ("id", "instance_id"))
GROUP_COLUMNS = "id, group_name, user_data, meta_data, vendor_data, description, file_name, file_encoding"
DOCUMENTS = frozenset(("user-data", "meta-data", "vendor-data"))
GROUPS = Groups("/hsm/v2/groups", exclusive=False)  # the native group writes, for a group that is not yet in SMD


# -- reading bodies ---------------------------------------------------------------


def _folded(obj: dict, type_: Any) -> dict:
    """The keys of `obj` that name fields of `type_`, matched in any case as Go's decoder does (an exact match
    first), under their exact names; other keys are dropped, as OpenCHAMI drops them."""
    present = {name.lower() for name in obj}
    return {f.encode_name: key(obj, f.encode_name) for f in msgspec.structs.fields(type_)
            if f.encode_name.lower() in present}


async def _read(request: Request, type_: Any) -> Any:
    body = json_object(await json_body(request))
    fields = _folded(body, type_)
    if isinstance(fields.get("file"), dict):
        fields["file"] = _folded(fields["file"], GroupFile)
    return convert(fields, type_)


@contextlib.contextmanager
def _unprocessable() -> Iterator[None]:
    """OpenCHAMI answers 422 to any group body it cannot take, JSON that does not parse included."""
    try:
        yield
    except ProblemError as exc:
        if exc.problem.status == 400:
            raise problem(422, exc.problem.detail or "the body is not a group") from None
        raise


def _given(value: Any) -> bool:
    """OpenCHAMI's "only non-empty fields count" (Go's omitempty)."""
    return value not in (None, "", [], 0)


def _component_id(raw: str) -> str:
    """An xname as SMD stores it (lower case, no leading zeros); any other id as it is."""
    parsed = xname.parse(raw)
    return parsed.id if parsed is not None else raw


# -- the payloads behind the face -------------------------------------------------


async def _locked_payload(conn, scope: str, condition: str, *args: Any):
    """The payload of one scope, locked for this transaction; the advisory lock also holds off a concurrent
    face write that would create the same one."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "cloudinit.payloads:" + scope)
    return await conn.fetchrow(f"SELECT {GROUP_COLUMNS} FROM cloudinit.payloads WHERE {condition} FOR UPDATE", *args)


def _kept(row) -> tuple[str | None, dict, str | None]:
    """(user-data, meta-data, vendor-data) of a payload, or of none yet."""
    return (row["user_data"], row["meta_data"], row["vendor_data"]) if row is not None else (None, {}, None)


async def _save(conn, row, spec: PayloadSpec):
    """Create or replace the payload through the native write path."""
    if row is None:
        return await PAYLOADS.write(conn, generate_id(PAYLOADS.id_prefix), spec, create=True)
    return await PAYLOADS.write(conn, row["id"], spec, create=False)


# -- cluster defaults -------------------------------------------------------------


@router.get(BASE + "/admin/cluster-defaults", scope="read:cloudinit", response=ClusterDefaults,
            summary="OpenCHAMI cloud-init: the cluster defaults (keys of the site payload's meta-data)")
async def get_defaults(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        meta = await conn.fetchval("SELECT meta_data FROM cloudinit.payloads WHERE scope = 'site'") or {}
    return json_response({name: meta[name] for name in DEFAULT_KEYS if name in meta})


@router.post(BASE + "/admin/cluster-defaults", scope="write:cloudinit", request=ClusterDefaults,
             content_types=BODY_TYPES, summary="OpenCHAMI cloud-init: set cluster defaults (non-empty keys only)")
async def set_defaults(request: Request) -> Response:
    given = msgspec.to_builtins(await _read(request, ClusterDefaults))
    changes = {name: value for name, value in given.items() if _given(value)}
    if "base-url" in changes:
        changes["base-url"] = changes["base-url"].rstrip("/")
    check_meta_data(changes, "$")
    if changes:
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            row = await _locked_payload(conn, "site", "scope = 'site'")
            user_data, meta, vendor_data = _kept(row)
            await _save(conn, row, PayloadSpec(user_data=user_data, vendor_data=vendor_data,
                                               meta_data={**meta, **changes}))
    return Response(status_code=201)


# -- groups -----------------------------------------------------------------------


def _group_data(row) -> dict:
    text = row["user_data"] or ""
    encoded = row["file_encoding"] == "base64"
    data: dict[str, Any] = {"name": row["group_name"]}
    if row["description"]:
        data["description"] = row["description"]
    if row["meta_data"]:
        data["meta-data"] = row["meta_data"]
    data["file"] = {"content": base64.b64encode(text.encode()).decode() if encoded else text,
                    "filename": row["file_name"], "encoding": row["file_encoding"]}
    return data


def _file_text(file: GroupFile | None) -> tuple[str | None, str, str]:
    """(user-data, file name, encoding) of a group's file: base64 decoded, and checked as native user-data is."""
    if file is None or not file.content:
        return None, (file.filename or "") if file else "", (file.encoding or "plain") if file else "plain"
    encoding = file.encoding or "plain"
    text = file.content
    if encoding == "base64":
        try:  # Go's decoder, which OpenCHAMI uses, skips line breaks
            raw = base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
        except (binascii.Error, ValueError):
            raise field_problem("$.file.content", "is not valid base64 (the encoding says base64)") from None
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise field_problem("$.file.content", "decodes to bytes that are not UTF-8 text") from None
    if len(text) > MAX_CONTENT:
        raise field_problem("$.file.content", f"holds more than {MAX_CONTENT // 1024} KiB of user-data")
    check_values(text, "$.file.content")
    check_user_data(text, "$.file.content")
    return text, file.filename or "", encoding


async def _write_group(request: Request, name: str, data: GroupData, *, create_only: bool) -> None:
    """The group's payload made to hold `data` (created if missing; 409 if it exists and `create_only`), and the
    SMD group created, empty, if there is none: all in one transaction, all checked before the first write."""
    if not is_valid_id(name):
        raise field_problem("$.name", "not a valid group name (letters, digits, . _ -; 2 to 255 long)")
    user_data, file_name, encoding = _file_text(data.file)
    meta = data.meta_data or {}
    check_meta_data(meta, "$.meta-data")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        row = await _locked_payload(conn, "group:" + name, "group_name = $1", name)
        if row is not None and create_only:
            raise problem(409, f"group '{name}' not added as it already exists")
        if not await conn.fetchval("SELECT true FROM smd.groups WHERE name = $1", name):
            require_scopes(request, ["write:smd"], f"there is no SMD group {name!r}; it is created with the data")
            await GROUPS.insert(request, conn, name, GroupSpec(name=name))
        saved = await _save(conn, row, PayloadSpec(group=name, user_data=user_data, meta_data=meta,
                                                   vendor_data=row["vendor_data"] if row is not None else None))
        await conn.execute("UPDATE cloudinit.payloads SET description = $2, file_name = $3, file_encoding = $4 "
                           "WHERE id = $1", saved["id"], data.description or "", file_name, encoding)


@router.get(BASE + "/admin/groups", scope="read:cloudinit", response=dict[str, GroupData],
            summary="OpenCHAMI cloud-init: every group's data, keyed by name")
async def list_groups(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT {GROUP_COLUMNS} FROM cloudinit.payloads WHERE group_name IS NOT NULL "
                                "ORDER BY group_name")
    return json_response({row["group_name"]: _group_data(row) for row in rows})


@router.post(BASE + "/admin/groups", scope="write:cloudinit", request=GroupData, content_types=BODY_TYPES,
             summary="OpenCHAMI cloud-init: add a group's data (409 if it has some)")
async def add_group(request: Request) -> Response:
    with _unprocessable():
        data = await _read(request, GroupData)
    if not data.name:
        raise field_problem("$.name", "a group needs a name")
    await _write_group(request, data.name, data, create_only=True)
    return Response(status_code=201, headers={"Location": f"/groups/{data.name}"})


@router.get(BASE + "/admin/groups/{name}", scope="read:cloudinit", response=GroupData,
            summary="OpenCHAMI cloud-init: one group's data")
async def get_group(request: Request) -> Response:
    name = path_key(request, "group", "name")
    async with request.app.state.pool.acquire() as conn:
        row = await conn.fetchrow(f"SELECT {GROUP_COLUMNS} FROM cloudinit.payloads WHERE group_name = $1", name)
    if row is None:
        raise problem(404, f"group {name!r} has no cloud-init data")
    return json_response(_group_data(row))


@router.put(BASE + "/admin/groups/{name}", scope="write:cloudinit", request=GroupData, content_types=BODY_TYPES,
            status=201, summary="OpenCHAMI cloud-init: set a group's data (create or replace)")
async def set_group(request: Request) -> Response:
    name = request.path_params["name"]
    with _unprocessable():
        data = await _read(request, GroupData)
    if data.name not in (None, "", name):
        raise field_problem("$.name", f"does not match the group in the path ({name[:255]!r})")
    await _write_group(request, name, data, create_only=False)
    return Response(status_code=201, headers={"Location": f"/groups/{name}"})


@router.delete(BASE + "/admin/groups/{name}", scope="write:cloudinit", status=200,
               summary="OpenCHAMI cloud-init: delete a group's data (the SMD group stays)")
async def delete_group(request: Request) -> Response:
    name = request.path_params["name"]
    if is_valid_id(name):
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            row = await _locked_payload(conn, "group:" + name, "group_name = $1", name)
            if row is not None:
                await PAYLOADS.remove(request, conn, row["id"], row)
    return Response(status_code=200)


# -- one node ---------------------------------------------------------------------


@router.put(BASE + "/admin/instance-info/{id}", scope="write:cloudinit", request=InstanceInfo,
            content_types=BODY_TYPES, status=201,
            summary="OpenCHAMI cloud-init: set a node's instance info (keys of its own payload's meta-data)")
async def set_instance_info(request: Request) -> Response:
    component_id = _component_id(path_key(request, "component"))
    given = msgspec.to_builtins(await _read(request, InstanceInfo))
    # Instance info is replaced whole: what is not given is no longer the node's own.
    values = {name: given[name] for name in INSTANCE_KEYS if _given(given.get(name))}
    check_meta_data(values, "$")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT true FROM smd.components WHERE id = $1", component_id):
            raise problem(404, f"no component {component_id!r}")
        row = await _locked_payload(conn, "component:" + component_id, "component_id = $1", component_id)
        user_data, meta, vendor_data = _kept(row)
        meta = {name: value for name, value in meta.items() if name not in INSTANCE_KEYS}
        await _save(conn, row, PayloadSpec(component_id=component_id, user_data=user_data, vendor_data=vendor_data,
                                           meta_data={**meta, **values}))
    return Response(status_code=201)


@router.get(BASE + "/admin/impersonation/{id}/{document}", scope="read:cloudinit",
            summary="OpenCHAMI cloud-init: what a node gets (user-data, meta-data, vendor-data or <group>.yaml), "
                    "not counted as the node asking")
async def impersonate(request: Request) -> Response:
    component_id = _component_id(path_key(request, "component"))
    document = request.path_params["document"]
    group = document.removesuffix(".yaml") if document.endswith(".yaml") else None
    if document not in DOCUMENTS and not is_valid_id(group):
        raise problem(404, "ask for user-data, meta-data, vendor-data or <group>.yaml")
    async with request.app.state.pool.acquire() as conn:
        token = await conn.fetchval("SELECT cloud_init_token FROM smd.components WHERE id = $1", component_id)
        if token is None:
            raise problem(404, f"no component {component_id!r}")
        if group is not None:
            return await _group_file(conn, component_id, group)
    # The node's own seed URL: the boot path answers it as it answers the node (the token is never shown).
    answer = await bootpath.fetch(request.app.state.config, f"/cloud-init/{component_id}/{token}/{document}", ())
    if answer.status == 404:
        raise problem(404, f"the boot path has no cloud-init data for {component_id!r} (is it a node?)")
    if answer.status != 200:
        raise problem(502, f"the boot path answered {answer.status} for {component_id!r}'s {document}")
    return Response(answer.body, media_type=answer.content_type.split(";")[0].strip(),
                    headers={"Cache-Control": "no-store"})


async def _group_file(conn, component_id: str, group: str) -> Response:
    """OpenCHAMI's `<group>.yaml` for a node: the group's file, decoded; a node outside the group gets none."""
    if not await conn.fetchval("SELECT true FROM smd.group_members WHERE group_name = $1 AND component_id = $2",
                               group, component_id):
        raise problem(404, f"{component_id!r} is not in group {group!r}")
    text = await conn.fetchval("SELECT user_data FROM cloudinit.payloads WHERE group_name = $1", group)
    return Response(text or "#cloud-config", media_type="text/plain", headers={"Cache-Control": "no-store"})


# -- the service ------------------------------------------------------------------


@router.get(BASE + "/version", scope=None, response=VersionInfo,
            summary="OpenCHAMI cloud-init: version and uptime (`ochami cloud-init service status`)")
async def version_info(request: Request) -> Response:
    bundled = migrate.bundled_migrations()
    build = f"Version: {version()}, Schema: {bundled[-1].version if bundled else 0}"
    # Peak resident memory: what Python can tell without tracing allocations (KiB on Linux).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return json_response(VersionInfo(process_name="chamicore", build_info=build,
                                     uptime=_go_duration(time.monotonic() - STARTED),
                                     runtime_host=socket.gethostname(), bytes_allocated=peak))


@router.get(BASE + "/openapi.json", scope=None, summary="OpenCHAMI cloud-init: this API, as OpenAPI 3.1")
async def openapi(request: Request) -> Response:
    return Response(request.app.state.openapi, media_type="application/json")


def _go_duration(seconds: float) -> str:
    """How Go prints a duration (`1h2m3.5s`), which is what OpenCHAMI answers."""
    hours, rest = divmod(seconds, 3600)
    minutes, rest = divmod(rest, 60)
    text = f"{rest:.6f}".rstrip("0").rstrip(".") + "s"
    if hours or minutes:
        text = f"{int(minutes)}m{text}"
    return f"{int(hours)}h{text}" if hours else text
