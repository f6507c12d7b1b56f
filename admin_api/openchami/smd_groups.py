"""SMD's /groups as OpenCHAMI's clients speak them, over Chamicore's groups and partitions.

The writes are the native ones (admin_api/smd/groups.py): the same rows,
member checks, partition rule and events.  What differs is the shape
(`{"label", "description", "tags", "exclusiveGroup", "members": {"ids"}}`,
bare arrays, URI arrays on create) and SMD's naming rule: labels and tags
are lower-cased and must match `^[-a-z0-9:._]+$`, and a label must also be a
Chamicore id (no `:`, two characters at least, a letter or digit at each end).

exclusiveGroup.  In SMD a component belongs to at most one of the groups
that share an exclusiveGroup name.  Chamicore has one such set, its
partitions (a component is in one partition at most).  So a group posted
with any non-empty exclusiveGroup is created as a partition, and every
partition answers `"exclusiveGroup": "partitions"`; the name a client gave
is not kept, and two partitions may not share a member even if the client
named two different sets.  `?partition=` filters members by the partition
they are in (`NULL`: in none), as SMD does.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import convert, json_response, problem
from admin_api.openchami.compat import (
    BODY_TYPES,
    PREFIX,
    as_bad_request,
    json_body,
    json_object,
    key,
    message,
    no_content,
    query_values,
)
from admin_api.openchami.smd_values import normal_id
from admin_api.routing import Param, Router
from admin_api.smd.groups import GROUPS, PARTITIONS, Groups, GroupSpec
from core.identity import is_valid_id

router = Router("openchami-smd")
BASE = "/hsm/v2/groups"  # as SMD names it in URIs
ROUTE = PREFIX + BASE
EXCLUSIVE_SET = "partitions"  # the exclusiveGroup every Chamicore partition shows
_FIELD = re.compile(r"[-a-z0-9:._]+")  # SMD's rule for labels, tags and partition names
NO_PARTITION = "NULL"  # ?partition=NULL: members in no partition

FILTERS = (Param("group", "group labels"), Param("tag", "having any of these tags"),
           Param("partition", "only members in this partition (NULL: in none)"))
PARTITION = (FILTERS[2],)


def field(value: Any, what: str) -> str:
    """A label, tag or partition name lower-cased, or a 400 as SMD gives."""
    if not isinstance(value, str) or not _FIELD.fullmatch(value.strip().lower()):
        raise problem(400, f"Invalid {what}: {str(value)[:64]!r} (lower-case letters, digits and - : . _)")
    return value.strip().lower()


def label_of(value: Any) -> str:
    label = field(value, "group label")
    if not is_valid_id(label):
        raise problem(400, f"Invalid group label: {label[:64]!r} is not a Chamicore id (2 to 255 characters, a "
                           "letter or digit at each end, no ':')")
    return label


def _strings(value: Any, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise problem(400, f"{what} must be a JSON array")
    return value


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise problem(400, f"{what} must be a string")
    return value


def to_group(row, partition: str | None = None, partitioned: dict[str, str] | None = None) -> dict:
    """SMD's Group: tags and exclusiveGroup left out when empty, as SMD does."""
    members = list(row["members"])
    if partition is not None and partitioned is not None:
        members = [m for m in members if partitioned.get(m) == (None if partition == NO_PARTITION else partition)]
    group: dict[str, Any] = {"label": row["name"], "description": row["description"]}
    if row["tags"]:
        group["tags"] = list(row["tags"])
    if row["exclusive"]:
        group["exclusiveGroup"] = EXCLUSIVE_SET
    group["members"] = {"ids": members}
    return group


ROWS = """SELECT g.name, g.description, g.tags, g.exclusive,
       coalesce((SELECT array_agg(m.component_id ORDER BY m.component_id) FROM smd.group_members m
                 WHERE m.group_name = g.name), '{}') AS members
FROM smd.groups g"""


async def _partitioned(conn, partition: str | None) -> dict[str, str] | None:
    """component -> its partition, when a ?partition filter needs it."""
    if partition is None:
        return None
    rows = await conn.fetch("SELECT component_id, group_name FROM smd.group_members WHERE exclusive")
    return {r["component_id"]: r["group_name"] for r in rows}


def _partition_filter(request: Request) -> str | None:
    values = query_values(request, "partition")
    if not values:
        return None
    return values[0] if values[0] == NO_PARTITION else field(values[0], "partition name")


async def _found(conn, label: str, *, lock: bool = False) -> tuple[Groups, Any]:
    """The group or partition and the native collection that writes it; 404 as SMD says it."""
    exclusive = await conn.fetchval("SELECT exclusive FROM smd.groups WHERE name = $1" +
                                    (" FOR UPDATE" if lock else ""), label)
    if exclusive is None:
        raise problem(404, f"No such group: {label}")
    collection = PARTITIONS if exclusive else GROUPS
    return collection, await conn.fetchrow(ROWS + " WHERE g.name = $1", label)


async def _body(request: Request) -> dict:
    """The body as a JSON object; 400 for anything else (a control character included), as SMD answers."""
    with as_bad_request():
        return json_object(await json_body(request))


def _uris(uris: list[str]) -> Response:
    """SMD's create answer: an array of ResourceURI, and a Location this server resolves."""
    return json_response([{"URI": uri} for uri in uris], 201, {"Location": PREFIX + uris[0]})


@router.get(ROUTE, scope="read:smd", summary="List groups and partitions (SMD shape, bare array)", params=FILTERS,
            fold_query=True)
async def list_groups(request: Request) -> Response:
    labels = [field(v, "group label") for v in query_values(request, "group")]
    tags = [field(v, "tag") for v in query_values(request, "tag")]
    partition = _partition_filter(request)
    async with request.app.state.pool.acquire() as conn:
        rows = await conn.fetch(ROWS + " WHERE (cardinality($1::text[]) = 0 OR g.name = ANY($1::text[])) "
                                "AND (cardinality($2::text[]) = 0 OR g.tags && $2::text[]) ORDER BY g.name",
                                labels, tags)
        partitioned = await _partitioned(conn, partition)
    return json_response([to_group(r, partition, partitioned) for r in rows])


@router.post(ROUTE, scope="write:smd", summary="Create a group (an exclusiveGroup makes it a partition)",
             content_types=BODY_TYPES, fold_query=True)
async def create_group(request: Request) -> Response:
    body = await _body(request)
    label = label_of(key(body, "label"))
    exclusive_group = _text(key(body, "exclusiveGroup"), "exclusiveGroup")
    if exclusive_group:
        field(exclusive_group, "exclusiveGroup")
    members = key(body, "members")
    if members is not None and not isinstance(members, dict):
        raise problem(400, "members must be an object: {\"ids\": [...]}")
    ids = [normal_id(v, "member id") for v in _strings(key(members or {}, "ids"), "members.ids")]
    tags = [field(t, "tag") for t in _strings(key(body, "tags"), "tags")]
    with as_bad_request():
        spec = convert({"name": label, "description": _text(key(body, "description"), "description"),
                        "tags": tags, "members": ids}, GroupSpec)
        collection = PARTITIONS if exclusive_group else GROUPS
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            await collection.check_new(conn, label)
            await collection.insert(request, conn, label, spec)
    return _uris([f"{BASE}/{label}"])


@router.get(ROUTE + "/{label}", scope="read:smd", summary="Get one group (SMD shape)", params=PARTITION,
            fold_query=True)
async def get_group(request: Request) -> Response:
    label = field(request.path_params["label"], "group label")
    partition = _partition_filter(request)
    async with request.app.state.pool.acquire() as conn:
        _, row = await _found(conn, label)
        partitioned = await _partitioned(conn, partition)
    return json_response(to_group(row, partition, partitioned))


@router.delete(ROUTE + "/{label}", scope="write:smd", summary="Delete a group (its members stay)", status=200,
               fold_query=True)
async def delete_group(request: Request) -> Response:
    label = field(request.path_params["label"], "group label")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        collection, row = await _found(conn, label, lock=True)
        await collection.remove(request, conn, label, row)
    return message("deleted 1 entry")


@router.patch(ROUTE + "/{label}", scope="write:smd", summary="Change a group's description and tags (not members)",
              content_types=BODY_TYPES, status=204, fold_query=True)
async def patch_group(request: Request) -> Response:
    label = field(request.path_params["label"], "group label")
    body = await _body(request)
    description, tags = key(body, "description"), key(body, "tags")
    if description is None and tags is None:
        raise problem(400, "Request must have at least one patch field.")
    new_tags = [field(t, "tag") for t in _strings(tags, "tags")] if tags is not None else None
    with as_bad_request():
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            collection, row = await _found(conn, label, lock=True)
            spec = convert({"name": label,
                            "description": row["description"] if description is None else _text(description,
                                                                                                 "description"),
                            "tags": list(row["tags"]) if new_tags is None else new_tags,
                            "members": list(row["members"])}, GroupSpec)
            await collection.update(request, conn, label, spec, msgspec.to_builtins(spec))
    return no_content()


@router.get(ROUTE + "/{label}/members", scope="read:smd", summary="A group's members (SMD shape)", params=PARTITION,
            fold_query=True)
async def list_members(request: Request) -> Response:
    label = field(request.path_params["label"], "group label")
    partition = _partition_filter(request)
    async with request.app.state.pool.acquire() as conn:
        _, row = await _found(conn, label)
        partitioned = await _partitioned(conn, partition)
    return json_response(to_group(row, partition, partitioned)["members"])


@router.post(ROUTE + "/{label}/members", scope="write:smd", summary="Add a member to a group",
             content_types=BODY_TYPES, fold_query=True)
async def add_member(request: Request) -> Response:
    label = field(request.path_params["label"], "group label")
    member = normal_id(key(await _body(request), "id"))
    with as_bad_request():
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            collection, _ = await _found(conn, label, lock=True)
            await collection.join(conn, label, member)
    return _uris([f"{BASE}/{label}/members/{member}"])


@router.put(ROUTE + "/{label}/members", scope="write:smd", summary="Replace a group's members",
            content_types=BODY_TYPES, status=201, fold_query=True)
async def set_members(request: Request) -> Response:
    label = field(request.path_params["label"], "group label")
    body = await _body(request)
    named = key(body, "group")
    if named not in (None, "") and field(named, "group label") != label:
        raise problem(400, f"the body names group {str(named)[:64]!r}, the path {label!r}")
    ids = [normal_id(v, "member id") for v in _strings(key(body, "ids"), "ids")]
    with as_bad_request():
        async with request.app.state.pool.acquire() as conn, conn.transaction():
            collection, row = await _found(conn, label, lock=True)
            spec = convert({"name": label, "description": row["description"], "tags": list(row["tags"]),
                            "members": ids}, GroupSpec)
            await collection.update(request, conn, label, spec, {"members": ids})
    if not ids:
        return no_content()
    return _uris([f"{BASE}/{label}/members/{m}" for m in ids])


@router.delete(ROUTE + "/{label}/members/{id}", scope="write:smd", summary="Remove a member from a group",
               status=200, fold_query=True)
async def remove_member(request: Request) -> Response:
    label = field(request.path_params["label"], "group label")
    member = normal_id(request.path_params["id"])
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        collection, _ = await _found(conn, label, lock=True)
        await collection.leave(conn, label, member)
    return message("deleted 1 entry")


routers: list[Router] = [router]
