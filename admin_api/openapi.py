"""/api/openapi.json, generated from the routes and the msgspec types they use."""

from __future__ import annotations

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
    paths: dict[str, dict] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": f"{op.method.lower()}_{op.endpoint.__name__}",
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
        if op.method == "PUT":
            entry["parameters"].append({"name": "If-Match", "in": "header", "required": True,
                                        "description": "the ETag of the version being replaced",
                                        "schema": {"type": "string"}})
        if op.scope:
            entry["security"] = [{"bearer": [op.scope]}]
            entry["x-required-scope"] = op.scope
            entry["responses"]["401"] = {"description": "no valid token (WWW-Authenticate: Bearer)",
                                         "content": {"application/problem+json": {"schema": problem_schema}}}
            entry["responses"]["403"] = {"description": "the token lacks the scope",
                                         "content": {"application/problem+json": {"schema": problem_schema}}}
        if op.request is not None:
            entry["requestBody"] = {"required": True, "content": {
                ct: {"schema": schema_of[id(op.request)]} for ct in op.content_types}}
        success: dict[str, Any] = {"description": "success"}
        if op.response is not None:
            success["content"] = {"application/json": {"schema": schema_of[id(op.response)]}}
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
