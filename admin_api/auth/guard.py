"""Who may call what: bearer tokens checked against each route's scope.

Missing, malformed, expired, wrong-audience, wrong-signature or revoked
token: 401 with `WWW-Authenticate: Bearer`.  A valid token without the
route's scope: 403 naming the scope.  CHAMICORE_DEV_MODE=true turns the
checks off (and says so loudly, at start and on /health).

Each admin process keeps the published keys and the revocations in memory
and refreshes them on `pg_notify('chamicore_auth')`, so a revocation takes
effect everywhere within a second without a query per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import asyncpg
from starlette.requests import HTTPConnection, Request

from admin_api.auth import keys
from admin_api.requestid import REQUEST_ID_SCOPE
from core import db
from core.backoff import Backoff
from core.bounded import clip
from core.config import Config, ConfigError
from core.crypto import SecretBox, SecretKeyMissing, read_key
from core.logs import REQUEST_ID
from core.problems import ProblemError
from core.tokens import TokenError, TokenVerifier

log = logging.getLogger("chamicore.admin.auth")
CHANNEL = "chamicore_auth"
DEV_PRINCIPAL = {"sub": "dev-mode", "scope": "*", "roles": ["admin"]}
# The claims of a caller that a face authenticated itself (a console session), set in the ASGI scope of
# the in-process request it makes (admin_api/inprocess.py).  A scope key: no network client can set it.
FACE_PRINCIPAL = "chamicore.auth.face_principal"


class NotStarted(RuntimeError):
    """The Authenticator was used before start() gave it the pool (a bug in the app's lifespan)."""


def client_ip(request: HTTPConnection) -> str | None:
    return request.client.host if request.client else None


class Authenticator:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.dev_mode = config.dev_mode
        self.verifier = TokenVerifier(config.token_issuer)
        try:
            self.box: SecretBox | None = SecretBox(
                read_key(config.secret_key, config.secret_key_file, "SECRET_KEY"), "signing-keys")
        except SecretKeyMissing:
            if not self.dev_mode:
                raise
            self.box = None  # dev mode without a key: checks off, no tokens issued
        self._pool: asyncpg.Pool | None = None
        self._tasks: list[asyncio.Task] = []
        self.reloads = 0

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise NotStarted("the authenticator has no pool: start() has not run")
        return self._pool

    async def start(self, pool: asyncpg.Pool) -> None:
        dsn = self.config.database_url
        if not dsn:
            raise ConfigError("DATABASE_URL", "the auth listener needs a connection of its own")
        self._pool = pool
        if self.dev_mode:
            log.warning("CHAMICORE_DEV_MODE is on: the admin API accepts every request WITHOUT authentication")
        if self.box is not None:
            async with pool.acquire() as conn:
                await keys.ensure_active_key(conn, self.box)
        await self.reload()
        self._tasks = [asyncio.create_task(self._listen(dsn), name="chamicore-auth-listener"),
                       asyncio.create_task(self._prune(), name="chamicore-auth-prune")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def reload(self) -> None:
        async with self.pool.acquire() as conn:
            self.verifier.set_keys(await keys.published(conn))
            self.verifier.set_revocations(await conn.fetch(
                "SELECT jti, subject, revoked_at FROM auth.revocations WHERE expires_at > now()"))
        self.reloads += 1

    async def _listen(self, dsn: str) -> None:
        backoff = Backoff(base=0.1, cap=5.0)
        while True:
            try:
                await self._listen_once(dsn, on_connected=backoff.reset)
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError, TimeoutError) as exc:
                delay = backoff.next()
                log.warning("auth listener: %s; retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)

    async def _listen_once(self, dsn: str, on_connected) -> None:
        conn = await db.connect(dsn, timeout=5,
                                server_settings={"application_name": "chamicore-auth-listener"})
        wake = asyncio.Event()
        try:
            lost = await db.listen(conn, CHANNEL, wake)
            await self.reload()  # anything missed while disconnected
            on_connected()
            while True:
                await wake.wait()
                wake.clear()
                if lost.is_set():
                    raise ConnectionError("auth listener connection lost")
                await self.reload()
        finally:
            conn.terminate()

    async def _prune(self) -> None:
        while True:
            await asyncio.sleep(60)
            try:
                await self.prune_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("auth prune: %s", exc)

    async def prune_once(self) -> None:
        """Drop revocations that no valid token can match any more, and keys past publication."""
        async with self.pool.acquire() as conn:
            await conn.execute("DELETE FROM auth.revocations WHERE expires_at < now()")
            await conn.execute("DELETE FROM auth.signing_keys WHERE publish_until < now()")

    # -- per request --------------------------------------------------------

    def authorize(self, request: HTTPConnection, scope: str) -> dict:
        claims = self.authenticate(request)
        if claims is not DEV_PRINCIPAL and scope not in claims.get("scope", "").split():
            raise insufficient_scope([scope])
        return claims

    def authenticate(self, request: HTTPConnection) -> dict:
        """The claims of the request's valid bearer token (401 otherwise), whatever its scopes: for a face
        whose calls each check their own (the MCP endpoint)."""
        if (principal := request.scope.get(FACE_PRINCIPAL)) is not None:
            return principal
        if self.dev_mode:
            return DEV_PRINCIPAL
        header = request.headers.get("authorization")
        if not header:
            raise unauthorized("send a bearer token (Authorization: Bearer <token>); get one at /auth/v1/token",
                               "invalid_request")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("the Authorization header must be `Bearer <token>`", "invalid_request")
        try:
            claims = self.verifier.verify(token.strip())
        except TokenError as exc:
            raise unauthorized(exc.reason, "invalid_token") from None
        return claims

    async def audit(self, request: HTTPConnection, action: str, resource: str, actor: str, status: int,
                    detail: dict | None = None) -> None:
        outcome = "success" if status < 400 else ("denied" if status in (401, 403) else "failure")
        try:
            async with self.pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO auth.audit (actor, action, resource, status, outcome, source_ip, detail, request_id) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    clip(actor), clip(action), clip(resource, 1000), status, outcome, client_ip(request),
                    _clipped(detail), request.scope.get(REQUEST_ID_SCOPE) or REQUEST_ID.get())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.error("audit: could not record %s %s by %s (%s): %s", clip(action), clip(resource), clip(actor),
                      status, clip(exc))


def require_scopes(request: Request, scopes: Iterable[str], reason: str = "") -> None:
    """Demand, besides the route's own scope, the scopes of what this request turns out to write.

    The dispatcher checks the one scope a route declares before its handler
    runs.  A route that can also write into other domains (a node provisioned
    with boot parameters, an import carrying cloud-init payloads, a delete
    that cascades into them) calls this once it knows what it will write and
    before it writes anything, dry run or not: 403 naming every missing scope.
    """
    if missing := missing_scopes(request, scopes):
        raise insufficient_scope(missing, reason)


def missing_scopes(request: Request, scopes: Iterable[str]) -> list[str]:
    """Which of `scopes` the request's token does not carry (none in dev mode)."""
    if request.app.state.auth.dev_mode:
        return []
    principal = getattr(request.state, "principal", None) or {}
    return sorted(set(scopes) - set(str(principal.get("scope", "")).split()))


def insufficient_scope(missing: list[str], reason: str = "") -> ProblemError:
    names = " and ".join(repr(scope) for scope in missing)
    because = f" ({reason})" if reason else ""
    return ProblemError(403, f"this needs the scope{'s' if len(missing) > 1 else ''} {names}{because}, which your "
                             "token does not carry", type="urn:chamicore:problem:insufficient-scope",
                        headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{" ".join(missing)}"'})


def _clipped(detail: dict | None) -> dict | None:
    """An audit detail with its text values clipped (they may come from the request)."""
    if detail is None:
        return None
    return {key: clip(value) if isinstance(value, str) else value for key, value in detail.items()}


def unauthorized(detail: str, error: str) -> ProblemError:
    return ProblemError(401, detail, type="urn:chamicore:problem:unauthorized",
                        headers={"WWW-Authenticate": f'Bearer realm="chamicore", error="{error}"'})
