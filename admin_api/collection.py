"""A collection of envelope resources: `/base` and `/base/{key}`, declared and served one way.

A resource is a subclass of `Collection` (its table, names, scopes and spec
types as class attributes) and one instance of it, whose `routes(router)`
declares list, create, get, replace (PUT), patch and delete.  The handlers
here are the same for every resource; what differs is in a few methods a
subclass writes:

    admit(body)                      -> (key, prepared): before any SQL; 422s
    insert(request, conn, key, prepared) -> row
    update(request, conn, key, spec, patch) -> row (patch: the merge patch, None for PUT)
    remove(request, conn, key, row)  (default: DELETE the row and emit `deleted`)
    where(request) -> Where          the list filters (default: none)
    resource(conn, row) / resources(conn, rows) -> Resource(s)  (default: to_resource(row))

Bodies are decoded by the dispatcher's operation (`request_body`), so each
type is written once, in the route declaration below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import (
    MAX_BODY,
    MERGE_PATCH_TYPES,
    check_if_match,
    field_problem,
    not_modified,
    patched,
    problem,
)
from admin_api.resources import answer, etag_of, fetch_one, list_answer, order_by, paging, path_key
from admin_api.routing import Endpoint, Param, Router, request_body, request_patch
from core import events
from core.envelope import Resource, ResourceList, ResourceRequest
from core.identity import generate_id, is_valid_id

HANDLERS = ("list", "create", "get", "replace", "patch", "delete")


class Where:
    """SQL conditions and their arguments, numbered as they are added: `add("nid = ANY({}::bigint[])", nids)`."""

    def __init__(self, condition: str | None = None, *args: object) -> None:
        self.conditions: list[str] = [condition] if condition else []
        self.args: list[object] = list(args)

    def add(self, condition: str, value: object) -> None:
        self.args.append(value)
        self.conditions.append(condition.format(f"${len(self.args)}"))

    def copy(self) -> Where:
        where = Where()
        where.conditions, where.args = list(self.conditions), list(self.args)
        return where

    def __str__(self) -> str:
        return (" WHERE " + " AND ".join(self.conditions)) if self.conditions else ""


async def write_row(conn, table: str, returning: str, key: str, values: dict[str, Any], *, create: bool):
    """INSERT the row `key` with these column values (`create`), or UPDATE them and its updated_at; the row, as
    `returning` (a column list) reads it.  Column names come from code, never from a request."""
    names = list(values)
    if create:
        sql = (f"INSERT INTO {table} (id, {', '.join(names)}) VALUES "
               f"($1, {', '.join(f'${i + 2}' for i in range(len(names)))}) RETURNING {returning}")
    else:
        sql = (f"UPDATE {table} SET {', '.join(f'{n} = ${i + 2}' for i, n in enumerate(names))}, "
               f"updated_at = now() WHERE id = $1 RETURNING {returning}")
    return await conn.fetchrow(sql, key, *values.values())


def _of(generic: Any, spec_type: type) -> Any:
    """`generic[spec_type]` for a spec type known only at run time (a type checker reads `X[y]` as a static type)."""
    return generic[spec_type]


class Collection:
    base: str
    table: str  # as it appears after FROM in the list queries (may carry an alias)
    select: str  # SELECT ... FROM table, to which the WHERE of one row or of a page is added
    kind: str
    api_version: str
    noun: str  # in problems: "no component 'x'"
    names: tuple[str, str]  # (one, many) in operation ids: get_component, list_components
    spec: type
    create_spec: type | None = None  # the spec a POST takes, when more than `spec`
    read_scope: str
    write_scope: str
    domain: str  # events: (domain, resource)
    events_as: str
    summaries: dict[str, str]
    handlers: tuple[str, ...] = HANDLERS
    key: str = "id"  # the path parameter, and the key column
    key_column: str = "id"
    id_prefix: str = ""  # generated ids: <prefix>-<8 hex>
    list_params: tuple[Param, ...] = ()
    sortable: dict[str, str] = {"id": "id"}
    create_body_limit: int = MAX_BODY

    # -- what a resource writes ----------------------------------------------

    def to_resource(self, row) -> Resource:
        raise NotImplementedError

    def admit(self, body) -> tuple[str, Any]:
        """The new resource's key and what `insert` takes, checked before any SQL runs."""
        key = body.metadata.id or generate_id(self.id_prefix)
        if not is_valid_id(key):
            raise field_problem("$.metadata.id", "not a valid id (ADR-010: letters, digits, . _ -; 2 to 255 long)")
        return key, body.spec

    async def insert(self, request: Request, conn, key: str, prepared: Any):
        raise NotImplementedError

    async def update(self, request: Request, conn, key: str, spec: Any, patch: dict | None):
        raise NotImplementedError

    async def remove(self, request: Request, conn, key: str, row) -> None:
        await conn.execute(f"DELETE FROM {self.table} WHERE {self.key_column} = $1", key)
        await events.emit(conn, self.domain, self.events_as, "deleted", key)

    def where(self, request: Request) -> Where:
        return Where()

    def taken(self, key: str) -> str:
        return f"{self.noun} {key!r} already exists"

    async def check_new(self, conn, key: str) -> None:
        """409 when the key is taken."""
        if await conn.fetchval(f"SELECT true FROM {self.table} WHERE {self.key_column} = $1", key):
            raise problem(409, self.taken(key))

    async def fetch(self, conn, key: str, *, lock: bool = False):
        return await fetch_one(conn, f"{self.select} WHERE {self.key_column} = $1", key, self.noun, lock=lock)

    async def resource(self, conn, row) -> Resource:
        return self.to_resource(row)

    async def resources(self, conn, rows) -> list[Resource]:
        return [self.to_resource(row) for row in rows]

    def path_key(self, request: Request) -> str:
        return path_key(request, self.noun, self.key)

    # -- the handlers ----------------------------------------------------------

    async def list(self, request: Request) -> Response:
        limit, offset = paging(request)
        where = self.where(request)
        async with request.app.state.pool.acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM {self.table}{where}", *where.args)
            rows = await conn.fetch(f"{self.select}{where} ORDER BY {order_by(request, self.sortable)} "
                                    f"LIMIT {limit} OFFSET {offset}", *where.args)
            items = await self.resources(conn, rows)
        return list_answer(request, f"{self.kind}List", self.api_version, items, total, limit, offset)

    async def create(self, request: Request) -> Response:
        key, prepared = self.admit(await request_body(request))
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            await self.check_new(conn, key)
            row = await self.insert(request, conn, key, prepared)
            created = await self.resource(conn, row)
        return answer(created, 201, f"{self.base}/{key}")

    async def get(self, request: Request) -> Response:
        async with request.app.state.pool.acquire() as conn:
            found = await self.resource(conn, await self.fetch(conn, self.path_key(request)))
        if found.metadata.etag is not None and not_modified(request, found.metadata.etag):
            return Response(status_code=304, headers={"ETag": found.metadata.etag})
        return answer(found)

    async def replace(self, request: Request) -> Response:
        key = self.path_key(request)
        body = await request_body(request)
        if body.metadata.id not in (None, key):
            raise field_problem("$.metadata.id", f"does not match the {self.key} in the path ({key!r})")
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            current = await self.fetch(conn, key, lock=True)
            check_if_match(request, etag_of(key, current))
            replaced = await self.resource(conn, await self.update(request, conn, key, body.spec, None))
        return answer(replaced)

    async def patch(self, request: Request) -> Response:
        key = self.path_key(request)
        patch = await request_patch(request)
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            current = await self.fetch(conn, key, lock=True)
            check_if_match(request, etag_of(key, current), required=False)
            spec: Any = patched((await self.resource(conn, current)).spec, patch, self.spec)
            changed = await self.resource(conn, await self.update(request, conn, key, spec, patch))
        return answer(changed)

    async def delete(self, request: Request) -> Response:
        key = self.path_key(request)
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            await self.remove(request, conn, key, await self.fetch(conn, key, lock=True))
        return Response(status_code=204)

    # -- the routes ------------------------------------------------------------

    def endpoint(self, handler: Callable, name: str) -> Endpoint:
        """`handler` under a name of its own (OpenAPI operation ids are made of it)."""
        async def endpoint(request: Request) -> Response:
            return await handler(request)

        endpoint.__name__ = name
        return endpoint

    def routes(self, router: Router) -> None:
        one, many = self.names
        item = f"{self.base}/{{{self.key}}}"
        resource, listed = _of(Resource, self.spec), _of(ResourceList, self.spec)
        declare: dict[str, Callable[[], Callable[[Endpoint], Endpoint]]] = {
            "list": lambda: router.get(self.base, scope=self.read_scope, summary=self.summaries["list"],
                                       response=listed, params=self.list_params),
            "create": lambda: router.post(self.base, scope=self.write_scope, summary=self.summaries["create"],
                                          request=_of(ResourceRequest, self.create_spec or self.spec),
                                          response=resource, body_limit=self.create_body_limit),
            "get": lambda: router.get(item, scope=self.read_scope, summary=self.summaries["get"], response=resource),
            "replace": lambda: router.put(item, scope=self.write_scope, summary=self.summaries["replace"],
                                          request=_of(ResourceRequest, self.spec), response=resource),
            "patch": lambda: router.patch(item, scope=self.write_scope, summary=self.summaries["patch"], request=dict,
                                          response=resource, content_types=MERGE_PATCH_TYPES),
            "delete": lambda: router.delete(item, scope=self.write_scope, summary=self.summaries["delete"]),
        }
        for handler in self.handlers:
            declare[handler]()(self.endpoint(getattr(self, handler), f"{handler}_{many if handler == 'list' else one}"))
