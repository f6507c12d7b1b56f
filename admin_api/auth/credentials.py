"""/auth/v1/credentials: BMC and device credentials, the secret AES-GCM encrypted at rest.

Listing and getting redact the secret; reading it takes the separate
`read:credentials` scope (admins only by default).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.http import field_problem, json_response, problem, query_list
from admin_api.routing import Param, Router, request_body
from admin_api.smd.schemas import Id
from core.crypto import SecretBox
from core.identity import generate_id

router = Router("credentials")
BASE = "/auth/v1/credentials"
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class CredentialSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    secret: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    tags: list[Tag] = msgspec.field(default_factory=list)
    description: Annotated[str, msgspec.Meta(max_length=1024)] = ""
    id: Id | None = None


class CredentialChange(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    secret: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    tags: list[Tag] | None = None
    description: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


class Credential(msgspec.Struct, rename="camel"):
    id: str
    username: str
    secret: str  # always "****" here
    tags: list[str]
    description: str
    created_at: str
    updated_at: str


class CredentialSecret(msgspec.Struct, rename="camel"):
    id: str
    username: str
    secret: str


def _box(request: Request) -> SecretBox:
    box = request.app.state.credentials_box
    if box is None:
        raise problem(503, "device credentials need CHAMICORE_CREDENTIALS_KEY (or _FILE)")
    return box


def _redacted(row) -> Credential:
    return Credential(id=row["id"], username=row["username"], secret="****", tags=list(row["tags"]),
                      description=row["description"], created_at=row["created_at"].isoformat(),
                      updated_at=row["updated_at"].isoformat())


async def insert_credential(request: Request, conn, credential_id: str, spec: CredentialSpec):
    """A new credential, its secret sealed; its row.  The one way a secret is stored, whichever route brings it
    (this API, or an OpenCHAMI RedfishEndpoint's User/Password)."""
    sealed = _box(request).seal(spec.secret.encode(), credential_id)
    return await conn.fetchrow("INSERT INTO auth.credentials (id, username, secret_enc, tags, description) "
                               "VALUES ($1, $2, $3, $4, $5) RETURNING *", credential_id, spec.username, sealed,
                               spec.tags, spec.description)


async def update_credential(request: Request, conn, credential_id: str, change: CredentialChange):
    """The given fields of an existing credential (a new secret sealed); its row."""
    sealed = _box(request).seal(change.secret.encode(), credential_id) if change.secret is not None else None
    return await conn.fetchrow(
        "UPDATE auth.credentials SET username = coalesce($2, username), secret_enc = coalesce($3, secret_enc), "
        "tags = coalesce($4, tags), description = coalesce($5, description), updated_at = now() "
        "WHERE id = $1 RETURNING *", credential_id, change.username, sealed, change.tags, change.description)


async def _fetch(conn, credential_id: str):
    row = await conn.fetchrow("SELECT * FROM auth.credentials WHERE id = $1", credential_id)
    if row is None:
        raise problem(404, f"no credential {credential_id[:255]!r}")
    return row


@router.get(BASE, scope="read:smd", summary="List device credentials (secrets redacted)", response=list[Credential],
            params=(Param("tag", "having any of these tags"),))
async def list_credentials(request: Request) -> Response:
    tags = query_list(request, "tag")
    async with request.app.state.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM auth.credentials WHERE cardinality($1::text[]) = 0 OR tags && $1 "
                                "ORDER BY id", tags)
    return json_response([_redacted(r) for r in rows])


@router.post(BASE, scope="write:credentials", request=CredentialSpec, response=Credential,
             summary="Store a device credential (the secret is encrypted)")
async def create(request: Request) -> Response:
    body = await request_body(request)
    credential_id = body.id or generate_id("cred")
    async with request.app.state.pool.acquire() as conn:
        if await conn.fetchval("SELECT true FROM auth.credentials WHERE id = $1", credential_id):
            raise problem(409, f"credential {credential_id!r} already exists")
        row = await insert_credential(request, conn, credential_id, body)
    return json_response(_redacted(row), 201, {"Location": f"{BASE}/{credential_id}"})


@router.get(BASE + "/{id}", scope="read:smd", summary="Get a device credential (secret redacted)",
            response=Credential)
async def get(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        return json_response(_redacted(await _fetch(conn, request.path_params["id"])))


@router.get(BASE + "/{id}/secret", scope="read:credentials", summary="Read a device credential's secret",
            response=CredentialSecret)
async def reveal(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        row = await _fetch(conn, request.path_params["id"])
    try:
        secret = _box(request).open(bytes(row["secret_enc"]), row["id"]).decode()
    except ValueError:
        raise problem(503, "the stored secret cannot be decrypted: CHAMICORE_CREDENTIALS_KEY is not the key it "
                           "was stored with") from None
    return json_response(CredentialSecret(id=row["id"], username=row["username"], secret=secret),
                         headers={"Cache-Control": "no-store"})


@router.patch(BASE + "/{id}", scope="write:credentials", request=CredentialChange, response=Credential,
              summary="Change a device credential")
async def change(request: Request) -> Response:
    body = await request_body(request)
    credential_id = request.path_params["id"]
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await _fetch(conn, credential_id)
        row = await update_credential(request, conn, credential_id, body)
    return json_response(_redacted(row))


@router.delete(BASE + "/{id}", scope="write:credentials", summary="Delete a device credential")
async def delete(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        done = await conn.execute("DELETE FROM auth.credentials WHERE id = $1", request.path_params["id"])
    if done == "DELETE 0":
        raise field_problem("id", f"no credential {request.path_params['id'][:255]!r}", 404)
    return Response(status_code=204)
