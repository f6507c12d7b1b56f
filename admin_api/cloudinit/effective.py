"""/cloud-init/effective/{id}: which cloud-init payloads apply to a node, and what each gives it.

The boot path's rules (hotpath/answers.py), most specific first: component, groups (by
name), role, site.  Vendor-data: the first entry that has some.  User-data: the
component's own; else every group's that has some (combined); else the role's; else the
site's.  Meta-data: merged, the more specific key winning.  The documents themselves are
the boot path's to render (/openchami/cloud-init/admin/impersonation shows them).
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import json_response, problem
from admin_api.resources import path_key
from admin_api.routing import Router

router = Router("payloads")
BASE = "/cloud-init/effective"
SCOPES = ("component", "group", "role", "site")

CANDIDATES = """
SELECT p.id, p.scope, p.user_data IS NOT NULL AS has_user_data, p.vendor_data IS NOT NULL AS has_vendor_data,
       (SELECT coalesce(array_agg(k ORDER BY k), '{}') FROM jsonb_object_keys(p.meta_data) k) AS meta_keys,
       CASE WHEN p.component_id IS NOT NULL THEN 0 WHEN p.group_name IS NOT NULL THEN 1
            WHEN p.role IS NOT NULL THEN 2 ELSE 3 END AS rank
FROM cloudinit.payloads p, smd.components c
WHERE c.id = $1
  AND (p.component_id = c.id
       OR p.group_name IN (SELECT m.group_name FROM smd.group_members m WHERE m.component_id = c.id)
       OR p.role = c.role OR p.scope = 'site')
ORDER BY rank, p.group_name
"""


class PayloadCandidate(msgspec.Struct, rename="camel"):
    id: str
    scope: str
    scope_kind: str  # one of SCOPES
    gives: list[str]  # the documents the node takes from this entry: userData, vendorData, metaData
    meta_keys: list[str]  # its meta-data keys that the node gets (a more specific entry's win)


class EffectiveCloudInit(msgspec.Struct, rename="camel"):
    kind: str
    component_id: str
    candidates: list[PayloadCandidate]


@router.get(BASE + "/{id}", scope="read:cloudinit", response=EffectiveCloudInit,
            summary="The cloud-init payloads that apply to a node, most specific first, and what each gives it")
async def effective_cloud_init(request: Request) -> Response:
    component_id = path_key(request, "component")
    async with request.app.state.pool.acquire() as conn:
        if not await conn.fetchval("SELECT true FROM smd.components WHERE id = $1", component_id):
            raise problem(404, f"no component {component_id!r}")
        rows = await conn.fetch(CANDIDATES, component_id)
    vendor = next((r["id"] for r in rows if r["has_vendor_data"]), None)
    first_user = next((r for r in rows if r["has_user_data"]), None)
    if first_user is not None and first_user["rank"] == 1:
        users = {r["id"] for r in rows if r["rank"] == 1 and r["has_user_data"]}
    else:
        users = {first_user["id"]} if first_user is not None else set()
    taken: set[str] = set()
    candidates = []
    for row in rows:
        keys = [key for key in row["meta_keys"] if key not in taken and key != "instance-id"]
        taken.update(key for key in row["meta_keys"] if key != "public-keys")  # keys are gathered from all
        gives = [name for name, yes in (("userData", row["id"] in users), ("vendorData", row["id"] == vendor),
                                        ("metaData", bool(keys))) if yes]
        candidates.append(PayloadCandidate(id=row["id"], scope=row["scope"], scope_kind=SCOPES[row["rank"]],
                                           gives=gives, meta_keys=keys))
    return json_response(EffectiveCloudInit(kind="EffectiveCloudInit", component_id=component_id,
                                            candidates=candidates))
