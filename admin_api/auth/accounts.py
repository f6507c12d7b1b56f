"""Service accounts, roles (role -> scopes) and policies (outside subject -> roles).

A change that takes something away from a subject (deleting or disabling its
account, a new secret, fewer scopes through its roles, its policy deleted)
revokes the subject's tokens in the same transaction: a token never outlives
what it was issued on by more than the second the revocation takes to reach
every admin process.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.auth.revocations import revoke_subjects
from admin_api.http import field_problem, json_response, problem
from admin_api.routing import Router, request_body
from admin_api.smd.schemas import Id
from core.crypto import hash_secret

router = Router("auth")
RoleName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
Scope = Annotated[str, msgspec.Meta(pattern=r"^[a-z]+:[a-z]+$")]


class AccountSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    client_id: Id
    description: Annotated[str, msgspec.Meta(max_length=1024)] = ""
    roles: list[RoleName] = msgspec.field(default_factory=list)
    enabled: bool = True


class AccountChange(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    description: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    roles: list[RoleName] | None = None
    enabled: bool | None = None


class Account(msgspec.Struct, rename="camel"):
    client_id: str
    description: str
    roles: list[str]
    enabled: bool
    created_at: str
    updated_at: str


class AccountWithSecret(Account):
    client_secret: str  # shown once: only its hash is kept


class RoleSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    scopes: list[Scope]
    description: Annotated[str, msgspec.Meta(max_length=1024)] = ""


class Role(msgspec.Struct, rename="camel"):
    name: str
    description: str
    scopes: list[str]
    builtin: bool


class PolicySpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    issuer: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    roles: list[RoleName]
    id: Id | None = None


class Policy(msgspec.Struct, rename="camel"):
    id: str
    issuer: str
    subject: str
    roles: list[str]


def _account(row) -> Account:
    return Account(client_id=row["client_id"], description=row["description"], roles=list(row["roles"]),
                   enabled=row["enabled"], created_at=row["created_at"].isoformat(),
                   updated_at=row["updated_at"].isoformat())


async def check_roles(conn, roles: list[str], path: str) -> None:
    known = {r["name"] for r in await conn.fetch("SELECT name FROM auth.roles WHERE name = ANY($1::text[])", roles)}
    for i, role in enumerate(roles):
        if role not in known:
            raise field_problem(f"{path}[{i}]", f"no role {role!r}")


async def scopes_of(conn, roles: list[str]) -> set[str]:
    rows = await conn.fetch("SELECT scopes FROM auth.roles WHERE name = ANY($1::text[])", roles)
    return {scope for row in rows for scope in row["scopes"]}


async def _revoke(request: Request, conn, subjects: list[str]) -> None:
    await revoke_subjects(conn, subjects, request.app.state.auth.config.token_lifetime_s)


async def create_account(conn, client_id: str, roles: list[str], description: str = "") -> str:
    """Create a service account; returns its secret (never stored, only hashed)."""
    secret = secrets.token_urlsafe(32)
    digest = await asyncio.to_thread(hash_secret, secret)
    await conn.execute("INSERT INTO auth.service_accounts (client_id, description, secret_hash, roles) "
                       "VALUES ($1, $2, $3, $4)", client_id, description, digest, roles)
    return secret


async def _fetch(conn, client_id: str, *, lock: bool = False):
    row = await conn.fetchrow("SELECT * FROM auth.service_accounts WHERE client_id = $1"
                              + (" FOR UPDATE" if lock else ""), client_id)
    if row is None:
        raise problem(404, f"no service account {client_id[:255]!r}")
    return row


@router.get("/auth/v1/service-accounts", scope="read:auth", summary="List service accounts", response=list[Account])
async def list_accounts(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM auth.service_accounts ORDER BY client_id")
    return json_response([_account(r) for r in rows])


@router.post("/auth/v1/service-accounts", scope="write:auth", request=AccountSpec, response=AccountWithSecret,
             summary="Create a service account (its secret is shown once, in this answer)")
async def create(request: Request) -> Response:
    spec = await request_body(request)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT true FROM auth.service_accounts WHERE client_id = $1", spec.client_id):
            raise problem(409, f"service account {spec.client_id!r} already exists")
        await check_roles(conn, spec.roles, "$.roles")
        secret = await create_account(conn, spec.client_id, spec.roles, spec.description)
        if not spec.enabled:
            await conn.execute("UPDATE auth.service_accounts SET enabled = false WHERE client_id = $1", spec.client_id)
        row = await _fetch(conn, spec.client_id)
    account = _account(row)
    return json_response(AccountWithSecret(**msgspec.structs.asdict(account), client_secret=secret), 201,
                         {"Location": f"/auth/v1/service-accounts/{spec.client_id}", "Cache-Control": "no-store"})


@router.get("/auth/v1/service-accounts/{id}", scope="read:auth", summary="Get a service account", response=Account)
async def get(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        return json_response(_account(await _fetch(conn, request.path_params["id"])))


@router.patch("/auth/v1/service-accounts/{id}", scope="write:auth", request=AccountChange, response=Account,
              summary="Change a service account's roles, description or enabled flag")
async def change(request: Request) -> Response:
    body = await request_body(request)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        row = await _fetch(conn, request.path_params["id"], lock=True)
        if body.roles is not None:
            await check_roles(conn, body.roles, "$.roles")
        narrowed = body.roles is not None and bool(
            await scopes_of(conn, list(row["roles"])) - await scopes_of(conn, body.roles))
        if narrowed or (row["enabled"] and body.enabled is False):
            await _revoke(request, conn, [row["client_id"]])
        row = await conn.fetchrow(
            "UPDATE auth.service_accounts SET description = coalesce($2, description), roles = coalesce($3, roles), "
            "enabled = coalesce($4, enabled), updated_at = now() WHERE client_id = $1 RETURNING *",
            row["client_id"], body.description, body.roles, body.enabled)
    await request.app.state.auth.reload()  # this process at once; the others on the NOTIFY
    return json_response(_account(row))


@router.post("/auth/v1/service-accounts/{id}/secret", scope="write:auth", status=200, response=AccountWithSecret,
             summary="Replace a service account's secret (shown once)")
async def new_secret(request: Request) -> Response:
    secret = secrets.token_urlsafe(32)
    digest = await asyncio.to_thread(hash_secret, secret)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await _fetch(conn, request.path_params["id"])
        row = await conn.fetchrow("UPDATE auth.service_accounts SET secret_hash = $2, updated_at = now() "
                                  "WHERE client_id = $1 RETURNING *", request.path_params["id"], digest)
        await _revoke(request, conn, [row["client_id"]])  # whoever held the old secret holds nothing now
    await request.app.state.auth.reload()
    account = _account(row)
    return json_response(AccountWithSecret(**msgspec.structs.asdict(account), client_secret=secret),
                         headers={"Cache-Control": "no-store"})


@router.delete("/auth/v1/service-accounts/{id}", scope="write:auth", summary="Delete a service account")
async def delete(request: Request) -> Response:
    return await _delete_revoking(request, "DELETE FROM auth.service_accounts WHERE client_id = $1 RETURNING client_id",
                                  "service account")


@router.get("/auth/v1/roles", scope="read:auth", summary="Roles and the scopes they grant", response=list[Role])
async def list_roles(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM auth.roles ORDER BY name")
    return json_response([Role(name=r["name"], description=r["description"], scopes=list(r["scopes"]),
                               builtin=r["builtin"]) for r in rows])


@router.put("/auth/v1/roles/{name}", scope="write:auth", request=RoleSpec, response=Role,
            summary="Create or replace a custom role (the built-in ones are fixed)")
async def put_role(request: Request) -> Response:
    name = request.path_params["name"]
    body = await request_body(request)
    try:
        msgspec.convert(name, RoleName)
    except msgspec.ValidationError:
        raise field_problem("name", "a role name is lowercase letters, digits, - and _") from None
    unknown = sorted(set(body.scopes) - request.app.state.known_scopes)
    if unknown:
        raise field_problem("$.scopes", f"unknown scope {unknown[0]!r}")
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        current = await conn.fetchrow("SELECT builtin, scopes FROM auth.roles WHERE name = $1 FOR UPDATE", name)
        if current and current["builtin"]:
            raise problem(409, f"{name!r} is a built-in role; create a new one instead")
        if current and set(current["scopes"]) - set(body.scopes):
            # Every holder's tokens carry the scopes taken away (a holder may have them through another
            # role too: it gets a new token, as after any revocation).
            holders = await conn.fetch("SELECT client_id AS subject FROM auth.service_accounts WHERE $1 = ANY(roles) "
                                       "UNION SELECT subject FROM auth.policies WHERE $1 = ANY(roles)", name)
            await _revoke(request, conn, [r["subject"] for r in holders])
        row = await conn.fetchrow(
            "INSERT INTO auth.roles (name, description, scopes) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE "
            "SET description = excluded.description, scopes = excluded.scopes, updated_at = now() RETURNING *",
            name, body.description, body.scopes)
    await request.app.state.auth.reload()
    return json_response(Role(name=row["name"], description=row["description"], scopes=list(row["scopes"]),
                              builtin=False))


@router.get("/auth/v1/policies", scope="read:auth", summary="Roles given to outside identities", response=list[Policy])
async def list_policies(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM auth.policies ORDER BY issuer, subject")
    return json_response([Policy(id=r["id"], issuer=r["issuer"], subject=r["subject"], roles=list(r["roles"]))
                          for r in rows])


@router.post("/auth/v1/policies", scope="write:auth", request=PolicySpec, response=Policy,
             summary="Give an outside identity (issuer + subject) roles, for token exchange")
async def create_policy(request: Request) -> Response:
    body = await request_body(request)
    policy_id = body.id or f"policy-{secrets.token_hex(4)}"
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await check_roles(conn, body.roles, "$.roles")
        if await conn.fetchval("SELECT true FROM auth.policies WHERE (issuer, subject) = ($1, $2) OR id = $3",
                               body.issuer, body.subject, policy_id):
            raise problem(409, "a policy for this issuer and subject (or with this id) exists")
        await conn.execute("INSERT INTO auth.policies (id, issuer, subject, roles) VALUES ($1, $2, $3, $4)",
                           policy_id, body.issuer, body.subject, body.roles)
    return json_response(Policy(id=policy_id, issuer=body.issuer, subject=body.subject, roles=body.roles), 201)


@router.delete("/auth/v1/policies/{id}", scope="write:auth", summary="Delete a policy")
async def delete_policy(request: Request) -> Response:
    # The subject's tokens exchanged under it go with it.
    return await _delete_revoking(request, "DELETE FROM auth.policies WHERE id = $1 RETURNING subject", "policy")


async def _delete_revoking(request: Request, delete: str, what: str) -> Response:
    """Delete by the path's id and revoke the subject `delete` returns: whoever held it holds nothing now."""
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        subject = await conn.fetchval(delete, request.path_params["id"])
        if subject is None:
            raise problem(404, f"no {what} {request.path_params['id'][:255]!r}")
        await _revoke(request, conn, [subject])
    await request.app.state.auth.reload()
    return Response(status_code=204)
