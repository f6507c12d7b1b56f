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
from admin_api.collection import Collection, Where
from admin_api.http import field_problem, json_response, problem, query_list
from admin_api.resources import metadata
from admin_api.routing import PAGING, Param, Router, request_body, sort_param
from admin_api.scoped import entry_scopes
from admin_api.smd.schemas import Id
from core import events
from core.envelope import Resource
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


class Groups(Collection):
    """Groups, or (exclusive) partitions: the same resource over the same table, told apart by `exclusive`."""

    table, select, key, key_column = "smd.groups g", QUERY, "name", "g.name"
    api_version, spec, read_scope, write_scope, domain = API_VERSION, GroupSpec, "read:smd", "write:smd", "smd"
    sortable = {name: f"g.{column}" for name, column in SORTABLE.items()}
    list_params = (Param("tag", "having any of these tags"), *PAGING, sort_param(SORTABLE))

    def __init__(self, base: str, *, exclusive: bool) -> None:
        self.base, self.exclusive = base, exclusive
        self.noun = "partition" if exclusive else "group"
        self.kind = self.noun.capitalize()
        self.events_as = self.noun + "s"
        self.names = (self.noun, self.events_as)
        noun = self.noun
        self.summaries = {"list": f"List {noun}s", "create": f"Create a {noun}", "get": f"Get one {noun}",
                          "replace": f"Replace a {noun} (If-Match required)",
                          "patch": f"Change a {noun} (JSON merge patch)", "delete": f"Delete a {noun} (its members stay)"}

    def to_resource(self, row) -> Resource[GroupSpec]:
        spec = GroupSpec(name=row["name"], description=row["description"], tags=list(row["tags"]),
                         members=list(row["members"]))
        return Resource(kind=self.kind, api_version=API_VERSION, metadata=metadata(row["name"], row), spec=spec)

    def taken(self, key: str) -> str:
        return f"a group or partition named {key!r} already exists"

    async def fetch(self, conn, key: str, *, lock: bool = False):
        if lock:
            await conn.execute("SELECT 1 FROM smd.groups WHERE name = $1 AND exclusive = $2 FOR UPDATE", key,
                               self.exclusive)
        row = await conn.fetchrow(QUERY + " WHERE g.name = $1 AND g.exclusive = $2", key, self.exclusive)
        if row is None:
            raise problem(404, f"no {self.noun} {key!r}")
        return row

    def where(self, request: Request) -> Where:
        where = Where("g.exclusive = $1", self.exclusive)
        if tags := query_list(request, "tag"):
            where.add("g.tags && {}::text[]", tags)
        return where

    def admit(self, body) -> tuple[str, GroupSpec]:
        name = body.metadata.id or body.spec.name
        if name is None:
            raise field_problem("$.spec.name", f"a {self.noun} needs a name")
        if body.spec.name not in (None, name) or not is_valid_id(name):
            raise field_problem("$.spec.name", "must be a valid id and match metadata.id")
        return name, body.spec

    async def insert(self, request: Request, conn, key: str, prepared: GroupSpec):
        await conn.execute("INSERT INTO smd.groups (name, description, tags, exclusive) VALUES ($1, $2, $3, $4)",
                           key, prepared.description, prepared.tags, self.exclusive)
        return await self._members_and_event(conn, key, prepared.members, "created")

    async def update(self, request: Request, conn, key: str, spec: GroupSpec, patch: dict | None):
        if spec.name not in (None, key):
            raise field_problem("$.spec.name", "a name cannot change; create a new one and move the members")
        await conn.execute("UPDATE smd.groups SET description = $2, tags = $3, updated_at = now() WHERE name = $1",
                           key, spec.description, spec.tags)
        return await self._members_and_event(conn, key, spec.members, "updated")

    async def remove(self, request: Request, conn, key: str, row) -> None:
        require_scopes(request, await entry_scopes(conn, "group_name", key),
                       f"the {self.noun} has boot parameters or a cloud-init payload, which go with it")
        await super().remove(request, conn, key, row)

    async def _members_and_event(self, conn, name: str, members: list[str], action: str):
        await self.set_members(conn, name, members, "$.spec.members")
        row = await self.fetch(conn, name)
        await events.emit(conn, "smd", self.events_as, action, name, msgspec.to_builtins(self.to_resource(row).spec))
        return row

    async def set_members(self, conn, name: str, members: list[str], path: str) -> None:
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
        await self.add_members(conn, name, members)

    async def add_members(self, conn, name: str, members: list[str]) -> None:
        if self.exclusive and members:
            clash = await conn.fetchrow(
                "SELECT component_id, group_name FROM smd.group_members WHERE exclusive AND group_name <> $1 "
                "AND component_id = ANY($2::text[]) LIMIT 1", name, members)
            if clash:
                raise problem(409, f"component {clash['component_id']!r} is already in partition "
                                   f"{clash['group_name']!r}; a component belongs to one partition at most")
        try:
            await conn.execute(  # one statement: an import adds thousands
                "INSERT INTO smd.group_members (group_name, exclusive, component_id) "
                "SELECT $1, $2, unnest($3::text[]) ON CONFLICT (group_name, component_id) DO NOTHING",
                name, self.exclusive, members)
        except asyncpg.UniqueViolationError:
            raise problem(409, "a component belongs to one partition at most") from None

    # -- members ----------------------------------------------------------------

    async def list_members(self, request: Request) -> Response:
        name = self.path_key(request)
        async with request.app.state.pool.acquire() as conn:
            row = await self.fetch(conn, name)
        return json_response(MemberList(group=name, members=list(row["members"])))

    async def join(self, conn, name: str, member: str) -> None:
        """One more member (409 if it is one already, or, for a partition, is in another), and its event.
        The caller holds a transaction; the OpenCHAMI face adds members through here too."""
        await self.fetch(conn, name, lock=True)
        if not await conn.fetchval("SELECT true FROM smd.components WHERE id = $1", member):
            raise field_problem("$.id", f"no component {member!r}")
        if await conn.fetchval("SELECT true FROM smd.group_members WHERE group_name = $1 AND component_id = $2",
                               name, member):
            raise problem(409, f"{member!r} is already a member of {self.noun} {name!r}")
        await self.admit_members(conn, name, [member])

    async def admit_members(self, conn, name: str, members: list[str]) -> None:
        """New members, known to exist and not to be members yet (bulk import brings thousands), and one
        `member-added` event each, as `join` writes them; the caller holds a transaction and the group's lock."""
        await self.add_members(conn, name, members)
        await conn.execute("UPDATE smd.groups SET updated_at = now() WHERE name = $1", name)
        await events.emit_many(conn, "smd", self.events_as, "member-added", [name] * len(members),
                               [{"id": member} for member in members])

    async def leave(self, conn, name: str, member: str) -> None:
        """One member fewer (404 if it is not one), and its event; inside the caller's transaction."""
        await self.fetch(conn, name, lock=True)
        done = await conn.execute("DELETE FROM smd.group_members WHERE group_name = $1 AND component_id = $2",
                                  name, member)
        if done == "DELETE 0":
            raise problem(404, f"{member[:255]!r} is not a member of {self.noun} {name!r}")
        await conn.execute("UPDATE smd.groups SET updated_at = now() WHERE name = $1", name)
        await events.emit(conn, "smd", self.events_as, "member-removed", name, {"id": member})

    async def add_member(self, request: Request) -> Response:
        name = self.path_key(request)
        body = await request_body(request)
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            await self.join(conn, name, body.id)
            row = await self.fetch(conn, name)
        return json_response(MemberList(group=name, members=list(row["members"])), 201,
                             {"Location": f"{self.base}/{name}/members/{body.id}"})

    async def remove_member(self, request: Request) -> Response:
        name = self.path_key(request)
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            await self.leave(conn, name, request.path_params["id"])
        return Response(status_code=204)

    def routes(self, router: Router) -> None:
        super().routes(router)
        members, noun = f"{self.base}/{{name}}/members", self.noun
        router.get(members, scope="read:smd", summary=f"Members of a {noun}", response=MemberList)(
            self.endpoint(self.list_members, f"list_{noun}_members"))
        router.post(members, scope="write:smd", summary=f"Add a member to a {noun}", request=MemberRequest,
                    response=MemberList)(self.endpoint(self.add_member, f"add_{noun}_member"))
        router.delete(members + "/{id}", scope="write:smd", summary=f"Remove a member from a {noun}")(
            self.endpoint(self.remove_member, f"remove_{noun}_member"))


groups_router, partitions_router = Router("groups"), Router("partitions")
GROUPS = Groups("/hsm/v2/groups", exclusive=False)
PARTITIONS = Groups("/hsm/v2/partitions", exclusive=True)
GROUPS.routes(groups_router)
PARTITIONS.routes(partitions_router)
