"""GET /hsm/v2/summary: how many components there are, by type, and each type by state and role.

Counted by PostgreSQL in one GROUP BY (a few dozen groups whatever the size of
the inventory), so a dashboard never pages through 100k components to count them.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import json_response
from admin_api.routing import Router

router = Router("components")
API_VERSION = "hsm/v2"


class TypeCounts(msgspec.Struct, rename="camel"):
    total: int
    disabled: int
    by_state: dict[str, int]
    by_role: dict[str, int]  # components with a role; the others are counted in without_role
    without_role: int


class ComponentSummary(msgspec.Struct, rename="camel"):
    kind: str
    api_version: str
    total: int
    by_type: dict[str, TypeCounts]


@router.get("/hsm/v2/summary", scope="read:smd", summary="Component counts by type, and by state and role per type",
            response=ComponentSummary)
async def summary(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        rows = await conn.fetch("SELECT type, state, role, count(*) AS n, count(*) FILTER (WHERE NOT enabled) AS off "
                                "FROM smd.components GROUP BY type, state, role ORDER BY type, state, role")
    by_type: dict[str, TypeCounts] = {}
    for row in rows:
        counts = by_type.setdefault(row["type"], TypeCounts(total=0, disabled=0, by_state={}, by_role={},
                                                             without_role=0))
        counts.total += row["n"]
        counts.disabled += row["off"]
        counts.by_state[row["state"]] = counts.by_state.get(row["state"], 0) + row["n"]
        if row["role"]:
            counts.by_role[row["role"]] = counts.by_role.get(row["role"], 0) + row["n"]
        else:
            counts.without_role += row["n"]
    return json_response(ComponentSummary(kind="ComponentSummary", api_version=API_VERSION,
                                          total=sum(c.total for c in by_type.values()), by_type=by_type))
