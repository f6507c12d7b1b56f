"""Building envelope answers: one resource, a page of them, ETags, sorting, sparse fields."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import (
    field_problem,
    json_response,
    not_modified,
    problem,
    query_int,
    query_list,
)
from core.envelope import ListMetadata, Resource, ResourceList, ResourceMetadata, etag_for
from core.identity import is_valid_id

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


def metadata(resource_id: str, row) -> ResourceMetadata:
    return ResourceMetadata(id=resource_id, etag=etag_of(resource_id, row),
                            created_at=row["created_at"], updated_at=row["updated_at"])


def etag_of(resource_id: str, row) -> str:
    return etag_for(resource_id, row["updated_at"].isoformat())


def path_key(request: Request, what: str, key: str = "id") -> str:
    """The `{key}` of the path; a 404 naming `what` when it cannot be an ADR-010 id (so never reaches SQL)."""
    value = request.path_params[key]
    if not is_valid_id(value):
        raise problem(404, f"no {what} {value[:255]!r} (not a valid {key})")
    return value


async def fetch_one(conn, select: str, key, what: str, *, lock: bool = False):
    """The row `select` (one `$1` parameter) finds, locked FOR UPDATE if asked, or a 404 naming `what`."""
    row = await conn.fetchrow(select + (" FOR UPDATE" if lock else ""), key)
    if row is None:
        raise problem(404, f"no {what} {str(key)[:255]!r}")
    return row


def answer(resource: Resource, status: int = 200, location: str | None = None) -> Response:
    etag = resource.metadata.etag
    if etag is None:  # metadata() always sets one: a resource without it is not for answer()
        raise ValueError(f"{resource.kind} {resource.metadata.id!r} has no ETag to answer with")
    headers = {"ETag": etag}
    if location:
        headers["Location"] = location
    return json_response(resource, status, headers)


def paging(request: Request) -> tuple[int, int]:
    return (query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
            query_int(request, "offset", 0, 0))


async def child_page(conn, table: str, parent: str, parent_id: str, states: list[str], order: str, limit: int,
                     offset: int) -> tuple[dict[str, int], list]:
    """The per-state counts of a parent's rows (a scan's hosts, a transition's tasks) and one page of them in
    the states asked for (all when none): a page that follows thousands live asks for these, not for all."""
    by_state = dict(await conn.fetch(f"SELECT state, count(*) FROM {table} WHERE {parent} = $1 GROUP BY state",
                                     parent_id))
    rows = await conn.fetch(f"SELECT * FROM {table} WHERE {parent} = $1 AND (cardinality($2::text[]) = 0 "
                            f"OR state = ANY($2::text[])) ORDER BY {order} LIMIT {limit} OFFSET {offset}",
                            parent_id, states)
    return by_state, rows


def order_by(request: Request, columns: dict[str, str], default: str = "id") -> str:
    """`?sort=nid,-id` -> "nid ASC, id DESC", over an allowed set of fields only."""
    terms = []
    for field in query_list(request, "sort") or [default]:
        descending = field.startswith("-")
        name = field.lstrip("+-")
        if name not in columns:
            raise field_problem("sort", f"cannot sort by {name[:40]!r}; choose from {', '.join(sorted(columns))}", 400)
        terms.append(f"{columns[name]} {'DESC' if descending else 'ASC'}")
    if "id" in columns and not any(t.startswith(columns["id"] + " ") for t in terms):
        terms.append(f"{columns['id']} ASC")  # a stable order for paging
    return ", ".join(terms)


def sparse_fields(request: Request, allowed: frozenset[str]) -> list[str] | None:
    fields = query_list(request, "fields")
    if not fields:
        return None
    unknown = [f for f in fields if f not in allowed]
    if unknown:
        raise field_problem("fields", f"unknown field {unknown[0][:40]!r}; choose from {', '.join(sorted(allowed))}",
                            400)
    return fields


def list_answer(request: Request, kind: str, api_version: str, items: list[Resource], total: int, limit: int,
                offset: int, fields: list[str] | None = None) -> Response:
    digest = hashlib.blake2b(digest_size=10)
    digest.update(f"{total}|{limit}|{offset}|{fields}".encode())
    for item in items:
        digest.update(f"|{item.metadata.id}|{item.metadata.etag}".encode())
    etag = f'"{digest.hexdigest()}"'
    if not_modified(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    body: Any = ResourceList(kind=kind, api_version=api_version,
                             metadata=ListMetadata(total=total, limit=limit, offset=offset), items=items)
    if fields is not None:
        body = msgspec.to_builtins(body)
        for item in body["items"]:
            item["spec"] = {k: v for k, v in item["spec"].items() if k in fields}
    return json_response(body, headers={"ETag": etag})
