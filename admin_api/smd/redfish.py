"""/hsm/v2/Inventory/RedfishEndpoints: where each BMC's Redfish service answers, and the nodes it manages.

Discovery fills these in; an admin may also write them by hand (a BMC that
discovery cannot reach, or a node it cannot tell apart), and bulk import
declares them for the nodes it brings (`address_of`, `insert_endpoints`).
Power control finds a node's BMC through `systems` here, or through the
node's parentId.  An address is a Redfish base URL (`https://host[:port]`,
a bare host meaning https) or an IPMI BMC's `ipmi://host:port`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec
from starlette.requests import Request

from admin_api.auth.binding import check_binding
from admin_api.collection import Collection
from admin_api.http import field_problem, problem
from admin_api.resources import metadata
from admin_api.routing import PAGING, Router
from admin_api.smd.schemas import Id
from core import events, fields
from core.discovery import BadAddress, endpoint_url
from core.envelope import Resource
from core.identity import is_valid_id

KIND, API_VERSION = "RedfishEndpoint", "hsm/v2"
BASE = "/hsm/v2/Inventory/RedfishEndpoints"
router = Router("redfish-endpoints")

SystemPath = Annotated[str, msgspec.Meta(pattern=fields.REDFISH_PATH)]
SystemUuid = Annotated[str, msgspec.Meta(pattern=fields.UUID_PATTERN)]
Label = Annotated[str, msgspec.Meta(max_length=fields.LABEL_MAX, pattern=fields.PLAIN_TEXT)]


class RedfishSystem(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    component_id: Id
    path: SystemPath
    uuid: SystemUuid | None = None
    serial: Label | None = None
    manufacturer: Label | None = None
    model: Label | None = None


ADDRESS_MAX = 300


class RedfishEndpointSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    address: Annotated[str, msgspec.Meta(min_length=1, max_length=ADDRESS_MAX,
                                         description="the Redfish service: https://host[:port] (or a bare host); "
                                                     "an IPMI BMC: ipmi://host:port")]
    credential_id: Id | None = None
    insecure: bool = False
    systems: list[RedfishSystem] = msgspec.field(default_factory=list)
    discovered_at: str | None = None  # read-only: set by discovery


ENDPOINT_COLUMNS = "id, address, credential_id, insecure, discovered_at, created_at, updated_at"


def _spec(row, systems) -> RedfishEndpointSpec:
    return RedfishEndpointSpec(
        address=row["address"], credential_id=row["credential_id"], insecure=row["insecure"],
        discovered_at=row["discovered_at"].isoformat() if row["discovered_at"] else None,
        systems=[RedfishSystem(component_id=s["component_id"], path=s["path"], uuid=s["uuid"], serial=s["serial"],
                               manufacturer=s["manufacturer"], model=s["model"]) for s in systems])


def _resource(row, systems) -> Resource[RedfishEndpointSpec]:
    return Resource(kind=KIND, api_version=API_VERSION, metadata=metadata(row["id"], row), spec=_spec(row, systems))


async def _systems(conn, endpoint_ids: list[str]) -> dict[str, list]:
    rows = await conn.fetch("SELECT * FROM smd.redfish_systems WHERE endpoint_id = ANY($1::text[]) "
                            "ORDER BY endpoint_id, component_id", endpoint_ids)
    by_endpoint: dict[str, list] = {}
    for row in rows:
        by_endpoint.setdefault(row["endpoint_id"], []).append(row)
    return by_endpoint


def address_of(text: str) -> str:
    """An endpoint's address as stored: `ipmi://host:port` for IPMI, else the Redfish base URL (BadAddress if neither),
    normalised as discovery and credential bindings normalise it (core.discovery.endpoint_url)."""
    address = endpoint_url(text)
    if "@" in address:  # a user or password here would be stored, and shown, in the clear
        raise BadAddress("a user or password does not go in the address: store a credential and name it")
    if len(address) > ADDRESS_MAX:  # a bare host gains its scheme: what is stored is read back by the same schema
        raise BadAddress(f"the address as stored ({address[:60]}...) is longer than {ADDRESS_MAX} characters")
    return address


async def insert_endpoints(conn, endpoints: Sequence[tuple[str, str, str | None, bool]]) -> None:
    """New endpoints (BMC id, address as `address_of` gives it, credential id, insecure) and their events.

    The caller has checked them (the BMC component exists, the address is free, the credential exists and the
    caller may bind it there)."""
    if not endpoints:
        return
    await conn.execute(
        "INSERT INTO smd.redfish_endpoints (id, address, credential_id, insecure) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[])",
        *([e[i] for e in endpoints] for i in range(4)))
    await events.emit_many(conn, "smd", "redfish-endpoints", "created", [e[0] for e in endpoints],
                           [{"address": e[1]} for e in endpoints])


async def _checked(request: Request, conn, endpoint_id: str, spec: RedfishEndpointSpec) -> str:
    """The normalised address, once the references are known good and the caller may bind the credential there."""
    try:
        address = address_of(spec.address)
    except BadAddress as exc:
        raise field_problem("$.spec.address", str(exc)) from None
    kind = await conn.fetchval("SELECT type FROM smd.components WHERE id = $1", endpoint_id)
    if kind is None:
        raise field_problem("$.metadata.id", f"no component {endpoint_id!r}: create the BMC component first")
    if kind != "BMC":
        raise field_problem("$.metadata.id", f"component {endpoint_id!r} is a {kind}, not a BMC")
    if spec.credential_id and not await conn.fetchval("SELECT true FROM auth.credentials WHERE id = $1",
                                                      spec.credential_id):
        raise field_problem("$.spec.credentialId", f"no credential {spec.credential_id!r}")
    await check_binding(request, conn, spec.credential_id, [address], spec.insecure, "the endpoint")
    taken = await conn.fetchval("SELECT id FROM smd.redfish_endpoints WHERE address = $1 AND id <> $2",
                                address, endpoint_id)
    if taken:
        raise problem(409, f"{address} is already the endpoint of {taken!r}")
    ids = [s.component_id for s in spec.systems]
    if len(set(ids)) != len(ids) or len({s.path for s in spec.systems}) != len(ids):
        raise field_problem("$.spec.systems", "each node and each system path may appear once")
    found = {r["id"]: r["type"] for r in await conn.fetch("SELECT id, type FROM smd.components WHERE id = ANY($1)",
                                                          ids)}
    for i, system in enumerate(spec.systems):
        if found.get(system.component_id) != "Node":
            raise field_problem(f"$.spec.systems[{i}].componentId", f"no Node component {system.component_id!r}")
    return address


async def _write_systems(conn, endpoint_id: str, systems: list[RedfishSystem]) -> None:
    await conn.execute("DELETE FROM smd.redfish_systems WHERE endpoint_id = $1", endpoint_id)
    await conn.executemany(
        "INSERT INTO smd.redfish_systems (component_id, endpoint_id, path, uuid, serial, manufacturer, model) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (component_id) DO UPDATE SET endpoint_id = excluded.endpoint_id, "
        "path = excluded.path, uuid = excluded.uuid, serial = excluded.serial, manufacturer = excluded.manufacturer, "
        "model = excluded.model, updated_at = now()",
        [(s.component_id, endpoint_id, s.path, s.uuid, s.serial, s.manufacturer, s.model) for s in systems])


class RedfishEndpoints(Collection):
    base, table, select = BASE, "smd.redfish_endpoints", f"SELECT {ENDPOINT_COLUMNS} FROM smd.redfish_endpoints"
    kind, api_version, noun, names = KIND, API_VERSION, "Redfish endpoint", ("endpoint", "endpoints")
    spec, domain, events_as, read_scope, write_scope = RedfishEndpointSpec, "smd", "redfish-endpoints", "read:smd", \
        "write:smd"
    handlers = ("list", "create", "get", "patch", "delete")
    list_params = PAGING
    summaries = {"list": "List Redfish endpoints",
                 "create": "Declare a BMC's Redfish endpoint (metadata.id is the BMC component)",
                 "get": "Get a Redfish endpoint", "patch": "Change a Redfish endpoint (JSON merge patch)",
                 "delete": "Forget a Redfish endpoint (the BMC component stays)"}

    async def resource(self, conn, row) -> Resource[RedfishEndpointSpec]:
        return _resource(row, (await _systems(conn, [row["id"]])).get(row["id"], []))

    async def resources(self, conn, rows) -> list[Resource]:
        systems = await _systems(conn, [r["id"] for r in rows])
        return [_resource(r, systems.get(r["id"], [])) for r in rows]

    def admit(self, body) -> tuple[str, RedfishEndpointSpec]:
        if not body.metadata.id or not is_valid_id(body.metadata.id):
            raise field_problem("$.metadata.id", "the id of the BMC component is required")
        return body.metadata.id, body.spec

    def taken(self, key: str) -> str:
        return f"BMC {key!r} already has a Redfish endpoint; PATCH it"

    async def insert(self, request: Request, conn, key: str, prepared: RedfishEndpointSpec):
        address = await _checked(request, conn, key, prepared)
        await insert_endpoints(conn, [(key, address, prepared.credential_id, prepared.insecure)])
        await _write_systems(conn, key, prepared.systems)
        return await conn.fetchrow(f"SELECT {ENDPOINT_COLUMNS} FROM smd.redfish_endpoints WHERE id = $1", key)

    async def update(self, request: Request, conn, key: str, spec: RedfishEndpointSpec, patch: dict | None):
        address = await _checked(request, conn, key, spec)
        row = await conn.fetchrow(
            f"UPDATE smd.redfish_endpoints SET address = $2, credential_id = $3, insecure = $4, updated_at = now() "
            f"WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}", key, address, spec.credential_id, spec.insecure)
        if patch is None or "systems" in patch:
            await _write_systems(conn, key, spec.systems)
        await events.emit(conn, "smd", "redfish-endpoints", "updated", key, {"address": address})
        return row


ENDPOINTS = RedfishEndpoints()
ENDPOINTS.routes(router)
