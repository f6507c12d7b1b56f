"""/boot/v1/effective/{id}: which boot parameters apply to a node, and which the boot path serves.

The precedence is the boot path's (hotpath/answers.py): MAC, component, NID, group (the
first by name), role, site.  A MAC entry is for that MAC only, so the winner is given per
interface, and for the node asked by name or NID (no MAC).  Read from the same tables the
boot path loads; the admin API does not import hotpath (they meet only in the database).
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api import bootpath
from admin_api.auth.guard import missing_scopes
from admin_api.http import json_response, problem
from admin_api.resources import path_key
from admin_api.routing import Param, Router
from core.mac import try_normalize_mac

router = Router("bootparams")
BASE = "/boot/v1/effective"
SCOPES = ("mac", "component", "nid", "group", "role", "site")

# Every entry that can apply to the node, most specific first (groups by name, as the boot path orders them).
CANDIDATES = """
SELECT p.id, p.scope, p.mac, p.kernel, p.initrd, p.cmdline,
       CASE WHEN p.mac IS NOT NULL THEN 0 WHEN p.component_id IS NOT NULL THEN 1 WHEN p.nid IS NOT NULL THEN 2
            WHEN p.group_name IS NOT NULL THEN 3 WHEN p.role IS NOT NULL THEN 4 ELSE 5 END AS rank
FROM bss.boot_params p, smd.components c
WHERE c.id = $1
  AND (p.mac IN (SELECT i.mac FROM smd.ethernet_interfaces i WHERE i.component_id = c.id)
       OR p.component_id = c.id OR p.nid = c.nid
       OR p.group_name IN (SELECT m.group_name FROM smd.group_members m WHERE m.component_id = c.id)
       OR p.role = c.role OR p.scope = 'site')
ORDER BY rank, p.group_name, p.mac
"""
NODE = """
SELECT c.type, c.enabled,
       coalesce((SELECT array_agg(i.mac ORDER BY i.created_at, i.mac) FROM smd.ethernet_interfaces i
                 WHERE i.component_id = c.id), '{}') AS macs
FROM smd.components c WHERE c.id = $1
"""


class Candidate(msgspec.Struct, rename="camel"):
    id: str
    scope: str  # as the entry names it: mac:<mac>, component:<id>, nid:<n>, group:<name>, role:<role> or site
    scope_kind: str  # one of SCOPES
    kernel: str
    initrd: str
    cmdline: str


class MacWinner(msgspec.Struct, rename="camel"):
    mac: str
    winner: str | None  # the candidate's id


class EffectiveBoot(msgspec.Struct, rename="camel"):
    kind: str
    component_id: str
    served: bool  # False: the boot path gives this component no boot parameters at all (see `reason`)
    reason: str | None
    candidates: list[Candidate]
    winner: str | None  # asked by name or NID
    by_mac: list[MacWinner]


@router.get(BASE + "/{id}", scope="read:bss", response=EffectiveBoot,
            summary="The boot parameters that apply to a node, most specific first, and which one wins")
async def effective_boot(request: Request) -> Response:
    component_id = path_key(request, "component")
    async with request.app.state.pool.acquire() as conn:
        node = await conn.fetchrow(NODE, component_id)
        if node is None:
            raise problem(404, f"no component {component_id!r}")
        rows = await conn.fetch(CANDIDATES, component_id)
    candidates = [Candidate(id=r["id"], scope=r["scope"], scope_kind=SCOPES[r["rank"]], kernel=r["kernel"],
                            initrd=r["initrd"], cmdline=r["cmdline"]) for r in rows]
    reason = None
    if node["type"] != "Node":
        reason = f"only nodes boot through the boot path; this is a {node['type']}"
    elif not node["enabled"]:
        reason = "the node is disabled: the boot path answers it with a script that waits"
    elif not candidates:
        reason = "no boot parameters apply"
    broad = next((r["id"] for r in rows if r["rank"] > 0), None) if reason is None else None
    by_mac = [MacWinner(mac=mac, winner=None if reason else next(
        (r["id"] for r in rows if r["rank"] > 0 or r["mac"] == mac), None)) for mac in node["macs"]]
    return json_response(EffectiveBoot(kind="EffectiveBoot", component_id=component_id, served=reason is None,
                                       reason=reason, candidates=candidates, winner=broad, by_mac=by_mac))


@router.get(BASE + "/{id}/script", scope="read:bss",
            params=(Param("mac", "as the boot path answers this MAC of the node (default: asked by name)"),),
            summary="The iPXE script the boot path gives a node, asked as a preview (not counted as it booting)")
async def script_preview(request: Request) -> Response:
    component_id = path_key(request, "component")
    query = [("name", component_id)]
    if asked := request.query_params.get("mac"):
        mac = try_normalize_mac(asked)
        async with request.app.state.pool.acquire() as conn:
            owner = mac and await conn.fetchval("SELECT component_id FROM smd.ethernet_interfaces WHERE mac = $1",
                                                mac)
        if mac is None or owner != component_id:
            raise problem(404, f"{component_id!r} has no interface with MAC {asked[:64]!r}")
        query = [("mac", mac)]
    answer = await bootpath.fetch(request.app.state.config, "/boot/v1/bootscript", query, preview=True)
    if answer.status != 200:
        raise problem(502, f"the boot path answered {answer.status} for {component_id!r}")
    # The seed token opens the node's cloud-init documents: shown only to who may read those.
    hidden = missing_scopes(request, [bootpath.SEED_SCOPE])
    script = bootpath.hide_seed_tokens(answer.body) if hidden else answer.body
    return Response(script, media_type="text/plain", headers={"Cache-Control": "no-store"})
