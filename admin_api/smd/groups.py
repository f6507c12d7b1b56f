"""/hsm/v2/groups and /hsm/v2/partitions: named sets of components.

A partition is an exclusive group: a component belongs to at most one
(the database enforces it; a second one is a 409).
"""

from __future__ import annotations

from typing import Annotated

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.auth.guard import require_scopes
from admin_api.http import (
    check_if_match,
    field_problem,
    json_response,
    patched,
    problem,
    query_list,
    read_json,
    read_patch,
)
from admin_api.resources import answer, etag_of, list_answer, metadata, order_by, paging, path_key
from admin_api.routing import PAGING, Param, Router, sort_param
from admin_api.scoped import entry_scopes
from admin_api.smd.schemas import Id
from core import events
from core.envelope import Resource, ResourceList, ResourceRequest
from core.identity import is_valid_id

API_VERSION = "hsm/v2"
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class GroupSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    name: Id | None = None  # defaults to metadata.id on create; always filled in answers
    description: Annotated[str, msgspec.Meta(max_length=4096)] = ""
    tags: Annotated[list[Tag], msgspec.Meta(max_length=256)] = msgspec.field(default_factory=list)
    members: list[Id] = msgspec.field(default_factory=list)


class MemberRequest(msgspec.Struct, forbid_unknown_fields=True):
    id: Id


class MemberList(msgspec.Struct):
    group: str
    members: list[str]


SORTABLE = {"id": "name", "name": "name", "createdAt": "created_at", "updatedAt": "updated_at"}
QUERY = """
SELECT g.name, g.description, g.tags, g.created_at, g.updated_at,
       coalesce((SELECT array_agg(m.component_id ORDER BY m.component_id) FROM smd.group_members m
                 WHERE m.group_name = g.name), '{}') AS members
FROM smd.groups g
"""


def make_router(base: str, exclusive: bool) -> Router:
    noun = "partition" if exclusive else "group"
    kind = "Partition" if exclusive else "Group"
    domain_resource = "partitions" if exclusive else "groups"
    router = Router(domain_resource)

    def to_resource(row) -> Resource[GroupSpec]:
        spec = GroupSpec(name=row["name"], description=row["description"], tags=list(row["tags"]),
                         members=list(row["members"]))
        return Resource(kind=kind, api_version=API_VERSION, metadata=metadata(row["name"], row), spec=spec)

    def path_name(request: Request) -> str:
        return path_key(request, noun, "name")

    async def fetch_row(conn, name: str, *, lock: bool = False):
        if lock:
            await conn.execute("SELECT 1 FROM smd.groups WHERE name = $1 AND exclusive = $2 FOR UPDATE", name,
                               exclusive)
        row = await conn.fetchrow(QUERY + " WHERE g.name = $1 AND g.exclusive = $2", name, exclusive)
        if row is None:
            raise problem(404, f"no {noun} {name!r}")
        return row

    async def set_members(conn, name: str, members: list[str], path: str) -> None:
        """Make `members` exactly the members of the group."""
        if len(set(members)) != len(members):
            raise field_problem(path, "a member is listed twice")
        if members:
            known = {r["id"] for r in await conn.fetch("SELECT id FROM smd.components WHERE id = ANY($1::text[])",
                                                       members)}
            missing = [m for m in members if m not in known]
            if missing:
                raise field_problem(f"{path}[{members.index(missing[0])}]", f"no component {missing[0]!r}")
        await conn.execute("DELETE FROM smd.group_members WHERE group_name = $1 AND NOT component_id = ANY($2::text[])",
                           name, members)
        await add_members(conn, name, members)

    async def add_members(conn, name: str, members: list[str]) -> None:
        if exclusive and members:
            clash = await conn.fetchrow(
                "SELECT component_id, group_name FROM smd.group_members WHERE exclusive AND group_name <> $1 "
                "AND component_id = ANY($2::text[]) LIMIT 1", name, members)
            if clash:
                raise problem(409, f"component {clash['component_id']!r} is already in partition "
                                   f"{clash['group_name']!r}; a component belongs to one partition at most")
        try:
            await conn.executemany(
                "INSERT INTO smd.group_members (group_name, exclusive, component_id) VALUES ($1, $2, $3) "
                "ON CONFLICT (group_name, component_id) DO NOTHING", [(name, exclusive, m) for m in members])
        except asyncpg.UniqueViolationError:
            raise problem(409, "a component belongs to one partition at most") from None

    @router.get(base, scope="read:smd", summary=f"List {noun}s", response=ResourceList[GroupSpec],
                params=(Param("tag", "having any of these tags"), *PAGING, sort_param(SORTABLE)))
    async def list_groups(request: Request) -> Response:
        limit, offset = paging(request)
        where = ["g.exclusive = $1"]
        args: list[object] = [exclusive]
        if tags := query_list(request, "tag"):
            args.append(tags)
            where.append(f"g.tags && ${len(args)}::text[]")
        condition = " WHERE " + " AND ".join(where)
        async with request.app.state.pool.acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM smd.groups g{condition}", *args)
            order = order_by(request, SORTABLE).replace("name", "g.name")
            rows = await conn.fetch(f"{QUERY}{condition} ORDER BY {order} LIMIT {limit} OFFSET {offset}", *args)
        return list_answer(request, f"{kind}List", API_VERSION, [to_resource(r) for r in rows], total, limit, offset)

    @router.post(base, scope="write:smd", summary=f"Create a {noun}", request=ResourceRequest[GroupSpec],
                 response=Resource[GroupSpec])
    async def create_group(request: Request) -> Response:
        body = await read_json(request, ResourceRequest[GroupSpec])
        name = body.metadata.id or body.spec.name
        if name is None:
            raise field_problem("$.spec.name", f"a {noun} needs a name")
        if body.spec.name not in (None, name) or not is_valid_id(name):
            raise field_problem("$.spec.name", "must be a valid id and match metadata.id")
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval("SELECT true FROM smd.groups WHERE name = $1", name):
                raise problem(409, f"a group or partition named {name!r} already exists")
            await conn.execute("INSERT INTO smd.groups (name, description, tags, exclusive) VALUES ($1, $2, $3, $4)",
                               name, body.spec.description, body.spec.tags, exclusive)
            await set_members(conn, name, body.spec.members, "$.spec.members")
            row = await fetch_row(conn, name)
            await events.emit(conn, "smd", domain_resource, "created", name, msgspec.to_builtins(to_resource(row).spec))
        return answer(to_resource(row), 201, f"{base}/{name}")

    @router.get(base + "/{name}", scope="read:smd", summary=f"Get one {noun}", response=Resource[GroupSpec])
    async def get_group(request: Request) -> Response:
        async with request.app.state.pool.acquire() as conn:
            return answer(to_resource(await fetch_row(conn, path_name(request))))

    async def update(conn, name: str, spec: GroupSpec):
        if spec.name not in (None, name):
            raise field_problem("$.spec.name", "a name cannot change; create a new one and move the members")
        await conn.execute("UPDATE smd.groups SET description = $2, tags = $3, updated_at = now() WHERE name = $1",
                           name, spec.description, spec.tags)
        await set_members(conn, name, spec.members, "$.spec.members")
        row = await fetch_row(conn, name)
        await events.emit(conn, "smd", domain_resource, "updated", name, msgspec.to_builtins(to_resource(row).spec))
        return row

    @router.put(base + "/{name}", scope="write:smd", summary=f"Replace a {noun} (If-Match required)",
                request=ResourceRequest[GroupSpec], response=Resource[GroupSpec])
    async def replace_group(request: Request) -> Response:
        name = path_name(request)
        body = await read_json(request, ResourceRequest[GroupSpec])
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            current = await fetch_row(conn, name, lock=True)
            check_if_match(request, etag_of(name, current))
            row = await update(conn, name, body.spec)
        return answer(to_resource(row))

    @router.patch(base + "/{name}", scope="write:smd", summary=f"Change a {noun} (JSON merge patch)",
                  request=dict, response=Resource[GroupSpec], content_types=("application/merge-patch+json",
                                                                             "application/json"))
    async def patch_group(request: Request) -> Response:
        name = path_name(request)
        patch = await read_patch(request)
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            current = await fetch_row(conn, name, lock=True)
            check_if_match(request, etag_of(name, current), required=False)
            row = await update(conn, name, patched(to_resource(current).spec, patch, GroupSpec))
        return answer(to_resource(row))

    @router.delete(base + "/{name}", scope="write:smd", summary=f"Delete a {noun} (its members stay)")
    async def delete_group(request: Request) -> Response:
        name = path_name(request)
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            await fetch_row(conn, name, lock=True)
            require_scopes(request, await entry_scopes(conn, "group_name", name),
                           f"the {noun} has boot parameters or a cloud-init payload, which go with it")
            await conn.execute("DELETE FROM smd.groups WHERE name = $1", name)
            await events.emit(conn, "smd", domain_resource, "deleted", name)
        return Response(status_code=204)

    @router.get(base + "/{name}/members", scope="read:smd", summary=f"Members of a {noun}", response=MemberList)
    async def list_members(request: Request) -> Response:
        name = path_name(request)
        async with request.app.state.pool.acquire() as conn:
            row = await fetch_row(conn, name)
        return json_response(MemberList(group=name, members=list(row["members"])))

    @router.post(base + "/{name}/members", scope="write:smd", summary=f"Add a member to a {noun}",
                 request=MemberRequest, response=MemberList)
    async def add_member(request: Request) -> Response:
        name = path_name(request)
        body = await read_json(request, MemberRequest)
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            await fetch_row(conn, name, lock=True)
            if not await conn.fetchval("SELECT true FROM smd.components WHERE id = $1", body.id):
                raise field_problem("$.id", f"no component {body.id!r}")
            if await conn.fetchval("SELECT true FROM smd.group_members WHERE group_name = $1 AND component_id = $2",
                                   name, body.id):
                raise problem(409, f"{body.id!r} is already a member of {noun} {name!r}")
            await add_members(conn, name, [body.id])
            await conn.execute("UPDATE smd.groups SET updated_at = now() WHERE name = $1", name)
            await events.emit(conn, "smd", domain_resource, "member-added", name, {"id": body.id})
            row = await fetch_row(conn, name)
        return json_response(MemberList(group=name, members=list(row["members"])), 201,
                             {"Location": f"{base}/{name}/members/{body.id}"})

    @router.delete(base + "/{name}/members/{id}", scope="write:smd", summary=f"Remove a member from a {noun}")
    async def remove_member(request: Request) -> Response:
        name = path_name(request)
        member = request.path_params["id"]
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            await fetch_row(conn, name, lock=True)
            done = await conn.execute("DELETE FROM smd.group_members WHERE group_name = $1 AND component_id = $2",
                                      name, member)
            if done == "DELETE 0":
                raise problem(404, f"{member[:255]!r} is not a member of {noun} {name!r}")
            await conn.execute("UPDATE smd.groups SET updated_at = now() WHERE name = $1", name)
            await events.emit(conn, "smd", domain_resource, "member-removed", name, {"id": member})
        return Response(status_code=204)

    return router


groups_router = make_router("/hsm/v2/groups", exclusive=False)
partitions_router = make_router("/hsm/v2/partitions", exclusive=True)
