"""Console sessions: a random cookie, kept server-side by its SHA-256, with a CSRF token and two timeouts.

The cookie is HttpOnly and SameSite=Strict (and Secure when the console is
reached over TLS).  A session ends at logout, after CHAMICORE_CONSOLE_IDLE_S
unused, CHAMICORE_CONSOLE_SESSION_S after its login, and whenever its user is
deleted, disabled, loses scopes or gets a new password (admin_api/auth/users.py).
Its scopes are read with the session on every request, from the user's
roles as they are now.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

from core.crypto import hash_secret, verify_secret

COOKIE = "chamicore_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
TOUCH_EVERY_S = 15  # last_seen is written at most this often per session: not one write per page


@functools.cache
def _decoy_hash() -> str:
    """Verified against when the username is unknown, so a wrong name costs the time of a wrong password."""
    return hash_secret(secrets.token_urlsafe(16))


LOAD = """
SELECT s.csrf_token, s.last_seen < now() - make_interval(secs => $3) AS stale, u.username, u.display_name, u.roles,
       coalesce((SELECT array_agg(DISTINCT scope ORDER BY scope) FROM auth.roles r, unnest(r.scopes) scope
                 WHERE r.name = ANY(u.roles)), '{}') AS scopes
FROM auth.sessions s JOIN auth.users u USING (username)
WHERE s.id_hash = $1 AND s.expires_at > now() AND s.last_seen > now() - make_interval(secs => $2) AND u.enabled
"""
# Written only when last_seen is older than TOUCH_EVERY_S: a page (or a live refresh) is a read, not a write.
TOUCH = "UPDATE auth.sessions SET last_seen = now() WHERE id_hash = $1"


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    username: str
    display_name: str
    roles: tuple[str, ...]
    scopes: frozenset[str]
    csrf_token: str

    @property
    def claims(self) -> dict:
        """The principal the REST handlers see for this session's requests (guard.FACE_PRINCIPAL)."""
        return {"sub": self.username, "scope": " ".join(sorted(self.scopes)), "roles": list(self.roles),
                "via": "console"}

    def can(self, scope: str) -> bool:
        return scope in self.scopes

    def csrf_ok(self, sent: str | None) -> bool:
        return sent is not None and sent != "" and hmac.compare_digest(sent.encode(), self.csrf_token.encode())


def _digest(cookie: str) -> bytes:
    return hashlib.sha256(cookie.encode()).digest()


async def load(request: Request) -> Session | None:
    """The request's live session, or None (no cookie, unknown, timed out, or its user disabled)."""
    cookie = request.cookies.get(COOKIE)
    if not cookie or len(cookie) > 128:
        return None
    config = request.app.state.config
    digest = _digest(cookie)
    async with request.app.state.pool.acquire() as conn:
        row = await conn.fetchrow(LOAD, digest, float(config.console_idle_s), float(TOUCH_EVERY_S))
        if row is not None and row["stale"]:
            await conn.execute(TOUCH, digest)
    if row is None:
        return None
    return Session(username=row["username"], display_name=row["display_name"], roles=tuple(row["roles"]),
                   scopes=frozenset(row["scopes"]), csrf_token=row["csrf_token"])


async def check_password(conn, username: str, password: str) -> bool:
    """True when the user exists, is enabled and the password is its own (timing does not tell which failed)."""
    row = await conn.fetchrow("SELECT password_hash, enabled FROM auth.users WHERE username = $1", username)
    ok = await asyncio.to_thread(verify_secret, password, row["password_hash"] if row else _decoy_hash())
    return ok and row is not None and row["enabled"]


async def start(request: Request, conn, username: str) -> str:
    """A new session for `username`; returns the cookie value (known only to the browser from now on)."""
    cookie = secrets.token_urlsafe(32)
    config = request.app.state.config
    await conn.execute(
        "INSERT INTO auth.sessions (id_hash, username, csrf_token, expires_at, source_ip, user_agent) "
        "VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6)",
        _digest(cookie), username, secrets.token_urlsafe(32), float(config.console_session_s),
        request.client.host if request.client else None, request.headers.get("user-agent", "")[:255])
    await conn.execute("UPDATE auth.users SET last_login_at = now() WHERE username = $1", username)
    await conn.execute("DELETE FROM auth.sessions WHERE expires_at < now() "
                       "OR last_seen < now() - make_interval(secs => $1)", float(config.console_idle_s))
    return cookie


async def end(request: Request) -> None:
    if cookie := request.cookies.get(COOKIE):
        async with request.app.state.pool.acquire() as conn:
            await conn.execute("DELETE FROM auth.sessions WHERE id_hash = $1", _digest(cookie))


def set_cookie(request: Request, response: Response, cookie: str) -> None:
    response.set_cookie(COOKIE, cookie, max_age=request.app.state.config.console_session_s, path="/",
                        httponly=True, samesite="strict", secure=secure(request))


def clear_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=secure(request))


def secure(request: Request) -> bool:
    return request.url.scheme == "https"
