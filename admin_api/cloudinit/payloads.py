"""/cloud-init/payloads: user-data, meta-data and vendor-data by scope."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from admin_api.cloudinit.userdata import check_meta_data, check_user_data
from admin_api.http import field_problem
from admin_api.resources import metadata
from admin_api.routing import Router
from admin_api.scoped import ScopedEntries
from admin_api.smd.schemas import Id
from core.envelope import Resource
from core.identity import Role

KIND, API_VERSION = "CloudInitPayload", "cloud-init/v1"
BASE = "/cloud-init/payloads"
router = Router("payloads")
COLUMNS = "id, component_id, group_name, role, user_data, meta_data, vendor_data, created_at, updated_at"
MAX_DOCUMENT = 512 * 1024  # characters of user-data or vendor-data
Document = Annotated[str, msgspec.Meta(max_length=MAX_DOCUMENT)]


class PayloadSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    component_id: Id | None = None
    group: Id | None = None
    role: Role | None = None
    user_data: Document | None = None
    meta_data: dict[str, Any] = msgspec.field(default_factory=dict)
    vendor_data: Document | None = None


class Payloads(ScopedEntries):
    base, table, columns, kind, api_version = BASE, "cloudinit.payloads", COLUMNS, KIND, API_VERSION
    noun, names, id_prefix = "cloud-init payload", ("payloads", "payloads"), "ci"
    spec, scope_fields = PayloadSpec, ("componentId", "group", "role")
    domain, events_as, read_scope, write_scope = "cloudinit", "payloads", "read:cloudinit", "write:cloudinit"

    def to_resource(self, row) -> Resource[PayloadSpec]:
        spec = PayloadSpec(component_id=row["component_id"], group=row["group_name"],
                           role=Role(row["role"]) if row["role"] else None, user_data=row["user_data"],
                           meta_data=row["meta_data"], vendor_data=row["vendor_data"])
        return Resource(kind=KIND, api_version=API_VERSION, metadata=metadata(row["id"], row), spec=spec)

    def check(self, spec: PayloadSpec) -> None:
        check_user_data(spec.user_data, "$.spec.userData")
        check_user_data(spec.vendor_data, "$.spec.vendorData")
        if "instance-id" in spec.meta_data:
            raise field_problem("$.spec.metaData.instance-id",
                                "is computed by Chamicore from the node's cloud-init data; leave it out")
        check_meta_data(spec.meta_data, "$.spec.metaData")

    def fields(self, spec: PayloadSpec) -> dict[str, Any]:
        return {"user_data": spec.user_data, "meta_data": spec.meta_data, "vendor_data": spec.vendor_data}

    def event_data(self, row, scope: dict) -> dict:
        # Scope only: user-data may hold secrets that have no business in an event stream.
        return {"componentId": scope.get("component_id"), "group": scope.get("group_name"),
                "role": scope.get("role")}


# The one instance: the native routes, and the OpenCHAMI face's writes (admin_api/openchami/cloudinit.py).
PAYLOADS = Payloads()
PAYLOADS.routes(router)
