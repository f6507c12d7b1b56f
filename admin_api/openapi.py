"""/api/openapi.json, generated from the routes and the msgspec types they use.

Each create (a POST answering 201) carries OpenAPI links to the operations
below its path that take the new resource's id (`/things` -> `/things/{id}`,
`/things/{id}/more`), found from the paths and the answer's type, so that
clients and stateful fuzzers can follow a create to what it made.
"""

from __future__ import annotations

import collections
import re
from typing import Any

import msgspec

from admin_api.routing import Operation, Router
from core.problems import Problem

REF = "#/components/schemas/{name}"


def _schema_of(types: list[type]) -> tuple[list[dict], dict]:
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    return list(schemas), components


def build(routers: list[Router], version: str) -> dict[str, Any]:
    operations: list[Operation] = [op for r in routers for op in r.operations]
    typed = [t for op in operations for t in (op.request, op.response) if t is not None]
    schemas, components = _schema_of([*typed, Problem])
    schema_of = {id(t): s for t, s in zip(typed, schemas, strict=False)}
    problem_schema = schemas[-1]
    operation_ids = _operation_ids(operations)
    links = _links(operations, operation_ids)
    paths: dict[str, dict] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": operation_ids[id(op)],
            "parameters": [
                {"name": p.name, "in": p.location, "required": False, "description": p.description,
                 "schema": p.json_schema()} for p in op.params
            ] + [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in _path_names(op.path)
            ],
            "responses": {
                "default": {"description": "a problem (RFC 9457)",
                            "content": {"application/problem+json": {"schema": problem_schema}}},
            },
        }
        if op.method == "PUT" and "etag" in _field_types(_field_types(op.response).get("metadata")):
            entry["parameters"].append({"name": "If-Match", "in": "header", "required": True,
                                        "description": "the ETag of the version being replaced",
                                        "schema": {"type": "string"}})
        if op.scope:
            entry["security"] = [{"bearer": [op.scope]}]
            entry["x-required-scope"] = op.scope
            if op.public_read:  # without a token only when CHAMICORE_OPENCHAMI_PUBLIC_READS is on
                entry["security"].append({})
                entry["x-public-read"] = "CHAMICORE_OPENCHAMI_PUBLIC_READS"
            entry["responses"]["401"] = {"description": "no valid token (WWW-Authenticate: Bearer)",
                                         "content": {"application/problem+json": {"schema": problem_schema}}}
            entry["responses"]["403"] = {"description": "the token lacks the scope",
                                         "content": {"application/problem+json": {"schema": problem_schema}}}
        if op.request is not None:
            # "" (a body sent with no Content-Type, as ochami does) is no media type OpenAPI can name.
            entry["requestBody"] = {"required": True, "content": {
                ct: {"schema": schema_of[id(op.request)]} for ct in op.content_types if ct}}
        success: dict[str, Any] = {"description": "success"}
        if op.response is not None:
            success["content"] = {"application/json": {"schema": schema_of[id(op.response)]}}
        if id(op) in links:
            success["links"] = links[id(op)]
        entry["responses"][str(op.status)] = success
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Chamicore admin API", "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _operation_ids(operations: list[Operation]) -> dict[int, str]:
    """`<method>_<handler>`; where routes share a handler (groups and partitions, the scoped tables),
    `<method>_<path>`, since an operationId must be unique."""
    plain = {id(op): f"{op.method.lower()}_{op.endpoint.__name__}" for op in operations}
    uses = collections.Counter(plain.values())
    return {id(op): plain[id(op)] if uses[plain[id(op)]] == 1 else _path_id(op) for op in operations}


def _path_id(op: Operation) -> str:
    # A path served with and without a trailing slash (SMD's clients send both) is two operations.
    slash = "_slash" if op.path.endswith("/") else ""
    return f"{op.method.lower()}_{re.sub('[^a-z0-9]+', '_', op.path.lower()).strip('_')}{slash}"


def _links(operations: list[Operation], operation_ids: dict[int, str]) -> dict[int, dict[str, dict]]:
    """Per create operation, its links to the operations under its path that take the created id."""
    links: dict[int, dict[str, dict]] = {}
    for create in operations:
        if create.method != "POST" or create.status != 201:
            continue
        prefix = create.path + "/{"
        for op in operations:
            if not op.path.startswith(prefix):
                continue
            name = op.path[len(prefix):].split("}", 1)[0]
            pointer = _id_pointer(create.response, name)
            if pointer is None:
                continue
            parameters = {outer: f"$request.path.{outer}" for outer in _path_names(create.path)}
            parameters[name] = f"$response.body#{pointer}"
            target = operation_ids[id(op)]
            links.setdefault(id(create), {})[target] = {"operationId": target, "parameters": parameters}
    return links


def _id_pointer(answer: type | None, name: str) -> str | None:
    """Where the created id sits in a create's answer: `metadata.id` of an envelope, else a field named like
    the path parameter, else `id`, else the one field named `...Id`."""
    fields = _field_types(answer)
    if "id" in _field_types(fields.get("metadata")):
        return "/metadata/id"
    for candidate in (name, "id"):
        if candidate in fields:
            return f"/{candidate}"
    ids = [field for field in fields if field.endswith("Id")]
    return f"/{ids[0]}" if len(ids) == 1 else None


def _field_types(type_: Any) -> dict[str, Any]:
    """JSON name -> type of a msgspec struct's fields ({} for anything else)."""
    try:
        return {field.encode_name: field.type for field in msgspec.structs.fields(type_)}
    except TypeError:
        return {}
