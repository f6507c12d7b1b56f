"""/discovery/v1/targets: what discovery scans (a Redfish host, range or CIDR; or a csv/json node list)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.auth.binding import check_binding
from admin_api.collection import Collection, Where
from admin_api.http import MAX_BULK_BODY, field_problem, json_response
from admin_api.resources import metadata
from admin_api.routing import PAGING, Param, Router
from admin_api.smd.schemas import Id
from core import events, switch_ports
from core.discovery import DRIVERS, HOST_URLS, BadAddress, expand, scan_hosts, snmp_address
from core.envelope import Resource
from core.nodelist import NodeListError, parse
from core.switch_ports import SnmpSettings

KIND, API_VERSION = "DiscoveryTarget", "discovery/v1"
BASE = "/discovery/v1/targets"
router = Router("discovery")


class TargetSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    driver: Literal["redfish", "csv", "json", "ipmi", "snmp"]
    address: Annotated[str, msgspec.Meta(max_length=300, description="redfish: host, host:port, URL, "
                                                                     "first-last range or CIDR; snmp: the switch, "
                                                                     "host or host:port")] = ""
    document: str | None = msgspec.field(default=None)  # csv/json: the node list
    credential_id: Id | None = None
    insecure: bool = msgspec.field(default=False)  # skip TLS verification: an explicit choice, never the default
    schedule_s: Annotated[int, msgspec.Meta(ge=60, le=31_536_000)] | None = None
    enabled: bool = True
    description: Annotated[str, msgspec.Meta(max_length=1024)] = ""
    snmp: SnmpSettings | None = None  # snmp: SNMP version and v3 protocols, and the port -> node mapping rule


class DriverInfo(msgspec.Struct):
    name: str
    description: str


COLUMNS = ("id, driver, address, document, credential_id, insecure, schedule_s, enabled, description, last_scan_at, "
           "created_at, updated_at, snmp")


def _resource(row) -> Resource[TargetSpec]:
    spec = TargetSpec(driver=row["driver"], address=row["address"], document=row["document"],
                      credential_id=row["credential_id"], insecure=row["insecure"], schedule_s=row["schedule_s"],
                      enabled=row["enabled"], description=row["description"],
                      snmp=switch_ports.decode(row["snmp"]) if row["snmp"] is not None else None)
    return Resource(kind=KIND, api_version=API_VERSION, metadata=metadata(row["id"], row), spec=spec)


async def _check(request: Request, conn, spec: TargetSpec) -> None:
    if (spec.snmp is None) != (spec.driver != "snmp"):
        raise field_problem("$.spec.snmp", "the snmp driver needs its snmp settings (mapping rule); no other "
                                           "driver takes them")
    if spec.driver == "snmp":
        _check_switch(spec)
    elif spec.driver in ("redfish", "ipmi"):
        if spec.document is not None:
            raise field_problem("$.spec.document", "only the csv and json drivers take a document")
        try:
            expand(spec.address, HOST_URLS[spec.driver])
        except BadAddress as exc:
            raise field_problem("$.spec.address", str(exc)) from None
    else:
        if spec.document is None:
            raise field_problem("$.spec.document", f"the {spec.driver} driver needs the node list as document")
        if spec.address:
            raise field_problem("$.spec.address", f"the {spec.driver} driver reads its document, not an address")
        try:
            parse(spec.driver, spec.document)
        except NodeListError as exc:
            raise field_problem("$.spec.document", str(exc)) from None
    if spec.driver == "ipmi" and not spec.credential_id:
        raise field_problem("$.spec.credentialId", "the ipmi driver needs a credential: the BMC's IPMI user")
    if spec.driver == "ipmi" and spec.insecure:
        raise field_problem("$.spec.insecure", "the ipmi driver has no TLS to skip; leave insecure false")
    if spec.credential_id and not await conn.fetchval("SELECT true FROM auth.credentials WHERE id = $1",
                                                      spec.credential_id):
        raise field_problem("$.spec.credentialId", f"no credential {spec.credential_id!r}")
    if spec.driver in ("redfish", "snmp", "ipmi"):  # the node-list drivers send no credential anywhere
        await check_binding(request, conn, spec.credential_id, scan_hosts(_row(spec)), spec.insecure, "the target")


def _check_switch(spec: TargetSpec) -> None:
    assert spec.snmp is not None
    if spec.document is not None:
        raise field_problem("$.spec.document", "only the csv and json drivers take a document")
    try:
        snmp_address(spec.address)
    except BadAddress as exc:
        raise field_problem("$.spec.address", str(exc)) from None
    if not spec.credential_id:
        raise field_problem("$.spec.credentialId", "the snmp driver needs a credential: the community (v2c), or "
                                                   'the v3 user with the secret {"authKey": ..., "privKey": ...}')
    try:
        switch_ports.check(spec.snmp)
    except switch_ports.BadRule as exc:
        raise field_problem(f"$.spec.snmp.{exc.field}", str(exc)) from None


def _row(spec: TargetSpec) -> dict:
    return {"driver": spec.driver, "address": spec.address}


def _values(spec: TargetSpec) -> tuple:
    return (spec.driver, spec.address.strip(), spec.document, spec.credential_id, spec.insecure, spec.schedule_s,
            spec.enabled, spec.description, switch_ports.encode(spec.snmp) if spec.snmp is not None else None)


@router.get("/discovery/v1/drivers", scope="read:discovery", summary="Discovery drivers", response=list[DriverInfo])
async def list_drivers(request: Request) -> Response:
    return json_response([DriverInfo(name, text) for name, text in DRIVERS.items()])


class Targets(Collection):
    base, table, select = BASE, "discovery.targets", f"SELECT {COLUMNS} FROM discovery.targets"
    kind, api_version, noun, names = KIND, API_VERSION, "discovery target", ("target", "targets")
    spec, domain, events_as, read_scope, write_scope = TargetSpec, "discovery", "targets", "read:discovery", \
        "write:discovery"
    id_prefix, create_body_limit = "target", MAX_BULK_BODY  # a csv/json node list comes in the body
    handlers = ("list", "create", "get", "patch", "delete")
    list_params = (*PAGING, Param("driver", "only this driver"))
    summaries = {"list": "List discovery targets", "create": "Create a discovery target",
                 "get": "Get a discovery target", "patch": "Change a discovery target (JSON merge patch)",
                 "delete": "Delete a discovery target (its scans stay)"}

    def to_resource(self, row) -> Resource[TargetSpec]:
        return _resource(row)

    def where(self, request: Request) -> Where:
        where = Where()
        if (driver := request.query_params.get("driver")) is not None:
            where.add("driver = {}", driver)
        return where

    async def insert(self, request: Request, conn, key: str, prepared: TargetSpec):
        await _check(request, conn, prepared)
        row = await conn.fetchrow(
            f"INSERT INTO discovery.targets (id, driver, address, document, credential_id, insecure, schedule_s, "
            f"enabled, description, snmp) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}",
            key, *_values(prepared))
        await events.emit(conn, "discovery", "targets", "created", key)
        return row

    async def update(self, request: Request, conn, key: str, spec: TargetSpec, patch: dict | None):
        await _check(request, conn, spec)
        row = await conn.fetchrow(
            f"UPDATE discovery.targets SET driver = $2, address = $3, document = $4, credential_id = $5, "
            f"insecure = $6, schedule_s = $7, enabled = $8, description = $9, snmp = $10, updated_at = now() "
            f"WHERE id = $1 "
            f"RETURNING {COLUMNS}", key, *_values(spec))
        await events.emit(conn, "discovery", "targets", "updated", key)
        return row


Targets().routes(router)
