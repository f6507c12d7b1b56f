"""People: local user accounts that log in to the web console with a username and a password.

A user holds roles exactly as a service account does; its password is hashed
like a client secret.  Whatever takes something away from a user (deleted,
disabled, fewer scopes through its roles, a new password) ends its console
sessions in the same transaction.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.auth.accounts import check_roles, scopes_of
from admin_api.http import json_response, problem
from admin_api.routing import Router, request_body
from core.crypto import hash_secret

router = Router("auth")
Username = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9._-]{0,63}$")]
# Long enough to resist guessing, short enough that scrypt on it is no denial of service.
Password = Annotated[str, msgspec.Meta(min_length=12, max_length=1024)]
RoleName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
DisplayName = Annotated[str, msgspec.Meta(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")]


class UserSpec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    username: Username
    password: Password
    display_name: DisplayName = ""
    roles: list[RoleName] = msgspec.field(default_factory=list)
    enabled: bool = True


class UserChange(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    display_name: DisplayName | None = None
    roles: list[RoleName] | None = None
    enabled: bool | None = None


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True):
    password: Password


class User(msgspec.Struct, rename="camel"):
    username: str
    display_name: str
    roles: list[str]
    enabled: bool
    created_at: str
    updated_at: str
    last_login_at: str | None
    sessions: int  # console sessions open now


SELECT = ("SELECT u.*, (SELECT count(*) FROM auth.sessions s WHERE s.username = u.username "
          "AND s.expires_at > now()) AS sessions FROM auth.users u")


def _user(row) -> User:
    return User(username=row["username"], display_name=row["display_name"], roles=list(row["roles"]),
                enabled=row["enabled"], created_at=row["created_at"].isoformat(),
                updated_at=row["updated_at"].isoformat(),
                last_login_at=row["last_login_at"].isoformat() if row["last_login_at"] else None,
                sessions=row["sessions"])


async def create_user(conn, username: str, password: str, roles: list[str], display_name: str = "") -> None:
    digest = await asyncio.to_thread(hash_secret, password)
    await conn.execute("INSERT INTO auth.users (username, display_name, password_hash, roles) VALUES ($1, $2, $3, $4)",
                       username, display_name, digest, roles)


async def end_sessions(conn, username: str) -> None:
    await conn.execute("DELETE FROM auth.sessions WHERE username = $1", username)


async def _fetch(conn, username: str):
    row = await conn.fetchrow(SELECT + " WHERE u.username = $1", username)
    if row is None:
        raise problem(404, f"no user {username[:64]!r}")
    return row


async def _manages_access(conn, row) -> bool:
    return row["enabled"] and "write:auth" in await scopes_of(conn, list(row["roles"]))


async def _keep_someone_managing_access(conn, username: str) -> None:
    """In the transaction that disabled, demoted or deleted `username`, who could manage access: refuse (409) if
    no enabled user still can, or the console would have no one left to mend it.  The rows are locked, so two
    such changes at once cannot each leave the other as the last one."""
    for row in await conn.fetch("SELECT enabled, roles FROM auth.users WHERE enabled FOR UPDATE"):
        if await _manages_access(conn, row):
            return
    raise problem(409, f"{username[:64]!r} is the last enabled user who may manage access (write:auth); give "
                       "another user such a role first")


@router.get("/auth/v1/users", scope="read:auth", summary="List user accounts (people who log in to the console)",
            response=list[User])
async def list_users(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        rows = await conn.fetch(SELECT + " ORDER BY u.username")
    return json_response([_user(r) for r in rows])


@router.post("/auth/v1/users", scope="write:auth", request=UserSpec, response=User,
             summary="Create a user account")
async def create(request: Request) -> Response:
    spec = await request_body(request)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT true FROM auth.users WHERE username = $1", spec.username):
            raise problem(409, f"user {spec.username!r} already exists")
        await check_roles(conn, spec.roles, "$.roles")
        await create_user(conn, spec.username, spec.password, spec.roles, spec.display_name)
        if not spec.enabled:
            await conn.execute("UPDATE auth.users SET enabled = false WHERE username = $1", spec.username)
        row = await _fetch(conn, spec.username)
    return json_response(_user(row), 201, {"Location": f"/auth/v1/users/{spec.username}"})


@router.get("/auth/v1/users/{id}", scope="read:auth", summary="Get a user account", response=User)
async def get(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        return json_response(_user(await _fetch(conn, request.path_params["id"])))


@router.patch("/auth/v1/users/{id}", scope="write:auth", request=UserChange, response=User,
              summary="Change a user's roles, display name or enabled flag")
async def change(request: Request) -> Response:
    body = await request_body(request)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        row = await _fetch(conn, request.path_params["id"])
        if body.roles is not None:
            await check_roles(conn, body.roles, "$.roles")
        narrowed = body.roles is not None and bool(
            await scopes_of(conn, list(row["roles"])) - await scopes_of(conn, body.roles))
        if narrowed or (row["enabled"] and body.enabled is False):
            await end_sessions(conn, row["username"])
        await conn.execute(
            "UPDATE auth.users SET display_name = coalesce($2, display_name), roles = coalesce($3, roles), "
            "enabled = coalesce($4, enabled), updated_at = now() WHERE username = $1",
            row["username"], body.display_name, body.roles, body.enabled)
        managed = await _manages_access(conn, row)
        row = await _fetch(conn, row["username"])
        if managed and not await _manages_access(conn, row):
            await _keep_someone_managing_access(conn, row["username"])
    return json_response(_user(row))


@router.post("/auth/v1/users/{id}/password", scope="write:auth", request=PasswordChange, status=204,
            summary="Set a user's password (its console sessions end)")
async def set_password(request: Request) -> Response:
    body = await request_body(request)
    digest = await asyncio.to_thread(hash_secret, body.password)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        username = await conn.fetchval("UPDATE auth.users SET password_hash = $2, updated_at = now() "
                                       "WHERE username = $1 RETURNING username", request.path_params["id"], digest)
        if username is None:
            raise problem(404, f"no user {request.path_params['id'][:64]!r}")
        await end_sessions(conn, username)
    return Response(status_code=204)


@router.delete("/auth/v1/users/{id}", scope="write:auth", summary="Delete a user account (its sessions end)")
async def delete(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("DELETE FROM auth.users WHERE username = $1 RETURNING username, enabled, roles",
                                  request.path_params["id"])  # its sessions go by the cascade
        if row is None:
            raise problem(404, f"no user {request.path_params['id'][:64]!r}")
        if await _manages_access(conn, row):
            await _keep_someone_managing_access(conn, row["username"])
    return Response(status_code=204)
