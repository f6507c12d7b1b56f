"""Issuing and revoking tokens; the public JWKS and discovery document.

POST /auth/v1/token (RFC 6749, form-encoded or JSON):
- `client_credentials` for service accounts;
- token exchange (RFC 8693) of an outside identity provider's JWT, checked
  against that provider's JWKS (fetched, cached, refreshed on an unknown kid).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import parse_qsl

import aiohttp
import jwt
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from admin_api.auth import keys, revocations
from admin_api.auth.accounts import scopes_of
from admin_api.auth.guard import client_ip
from admin_api.auth.throttle import TokenThrottle
from admin_api.http import check_values, field_problem, json_response, problem
from admin_api.routing import Router, request_body, request_bytes
from core.crypto import verify_secret
from core.problems import ProblemError
from core.tokens import ALGORITHM, AUDIENCE

router = Router("auth")
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPES = ("urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:access_token",
                   "urn:ietf:params:oauth:token-type:id_token")
FORM = "application/x-www-form-urlencoded"
JWKS_TTL_S = 300
MAX_CLIENT_ID = 255  # the longest id a service account can have


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    grant_type: str
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = None
    subject_token: str | None = None
    subject_token_type: str | None = None
    audience: str | None = None


class TokenAnswer(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int
    scope: str


class RevokeRequest(msgspec.Struct, forbid_unknown_fields=True):
    jti: str | None = None
    subject: str | None = None


class Revoked(msgspec.Struct):
    revoked: str
    until: str


def oauth_error(status: int, error: str, description: str) -> ProblemError:
    """RFC 6749 §5.2 errors, inside an RFC 9457 problem (both kinds of client read it)."""
    exc = ProblemError(status, description, type=f"urn:ietf:params:oauth:error:{error}")
    exc.problem.title = error
    if status == 401:
        exc.headers = {"WWW-Authenticate": 'Basic realm="chamicore"'}
    return exc


async def _read_token_request(request: Request) -> TokenRequest:
    body = await request_bytes(request)  # a form or JSON (the operation's content types)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if media == FORM:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            return msgspec.convert(fields, TokenRequest)
        return msgspec.json.decode(body, type=TokenRequest)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise oauth_error(400, "invalid_request", f"not a token request: {exc}") from None


def _checked(body: TokenRequest) -> TokenRequest:
    try:
        check_values(body)  # no control characters in any field
    except ProblemError as exc:
        raise oauth_error(400, "invalid_request", exc.problem.detail or "") from None
    if body.client_id is not None and len(body.client_id) > MAX_CLIENT_ID:
        raise oauth_error(400, "invalid_request", f"client_id is longer than {MAX_CLIENT_ID} characters")
    return body


def _granted(requested: str | None, available: set[str]) -> str:
    if not requested:
        return " ".join(sorted(available))
    wanted = set(requested.split())
    missing = wanted - available
    if missing:
        raise oauth_error(400, "invalid_scope", f"not granted to this client: {' '.join(sorted(missing))}")
    return " ".join(sorted(wanted))


async def issue(conn, auth, subject: str, roles: list[str], scope: str, extra: dict | None = None) -> TokenAnswer:
    if auth.box is None:
        raise problem(503, "no token signing key: set CHAMICORE_SECRET_KEY (or _FILE)")
    kid, private_key = await keys.signing_key(conn, auth.box)
    lifetime = auth.config.token_lifetime_s
    await revocations.wait_until_past(conn, subject)  # else a revocation of this very second would refuse it
    now = int(time.time())
    claims = {"iss": auth.config.token_issuer, "sub": subject, "aud": AUDIENCE, "iat": now, "nbf": now,
              "exp": now + lifetime, "jti": uuid.uuid4().hex, "scope": scope, "roles": roles, **(extra or {})}
    token = jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"kid": kid})
    return TokenAnswer(access_token=token, token_type="Bearer", expires_in=lifetime, scope=scope)


class OutsideIssuers:
    """JWKS of the trusted identity providers, cached per issuer."""

    def __init__(self, trusted: tuple) -> None:
        self.trusted = {issuer: (jwks_uri, audience) for issuer, jwks_uri, audience in trusted}
        self._cache: dict[str, tuple[float, dict]] = {}
        self._lock = asyncio.Lock()

    async def key_for(self, issuer: str, kid: str | None):
        jwks_uri, _ = self.trusted[issuer]
        fetched_at, keyset = self._cache.get(issuer, (0.0, {}))
        if kid not in keyset or time.monotonic() - fetched_at > JWKS_TTL_S:
            async with self._lock:
                keyset = await self._fetch(jwks_uri)
                self._cache[issuer] = (time.monotonic(), keyset)
        if kid not in keyset:
            raise oauth_error(400, "invalid_grant", f"{issuer} does not publish the key {kid!r}")
        return keyset[kid]

    async def _fetch(self, uri: str) -> dict:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, \
                    session.get(uri) as response:
                response.raise_for_status()
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise problem(503, f"cannot fetch the identity provider's keys from {uri}: {exc}") from None
        return {jwk.get("kid"): jwt.algorithms.RSAAlgorithm.from_jwk(jwk) for jwk in document.get("keys", [])
                if jwk.get("kty") == "RSA"}


async def _exchange(request: Request, conn, body: TokenRequest, auth) -> tuple[str, list[str], dict]:
    if not body.subject_token or body.subject_token_type not in JWT_TOKEN_TYPES:
        raise oauth_error(400, "invalid_request", "token exchange needs subject_token and a JWT subject_token_type")
    issuers: OutsideIssuers = request.app.state.outside_issuers
    try:
        unverified = jwt.decode(body.subject_token, options={"verify_signature": False})
        header = jwt.get_unverified_header(body.subject_token)
    except jwt.PyJWTError as exc:
        raise oauth_error(400, "invalid_grant", f"malformed subject token: {exc}") from None
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or issuer not in issuers.trusted:
        raise oauth_error(400, "invalid_grant", f"the issuer {issuer!r} is not trusted (CHAMICORE_TRUSTED_ISSUERS)")
    if header.get("alg") not in ("RS256", "RS384", "RS512"):
        raise oauth_error(400, "invalid_grant", "subject tokens must be RSA-signed")
    key = await issuers.key_for(issuer, header.get("kid"))
    _, audience = issuers.trusted[issuer]
    try:
        claims = jwt.decode(body.subject_token, key, algorithms=[header["alg"]], audience=audience, issuer=issuer,
                            options={"require": ["exp", "sub", "iss"]})
    except jwt.PyJWTError as exc:
        raise oauth_error(400, "invalid_grant", f"subject token refused: {exc}") from None
    roles = await conn.fetchval("SELECT roles FROM auth.policies WHERE issuer = $1 AND subject = $2",
                                issuer, claims["sub"])
    if not roles:
        raise oauth_error(400, "invalid_grant", f"no policy gives {claims['sub']!r} of {issuer} any role")
    return claims["sub"], list(roles), {"idp": issuer}


@router.post("/auth/v1/token", scope=None, status=200, request=TokenRequest, response=TokenAnswer, audited=False,
             summary="Get an access token (client_credentials, or token exchange of an outside JWT)",
             content_types=(FORM, "application/json"))
async def token(request: Request) -> Response:
    """Every refusal is audited and counted against the client and the source address; one that has too
    many recent refusals is answered 429 before its body is read or any secret hashed (auth/throttle.py)."""
    auth = request.app.state.auth
    throttle: TokenThrottle = request.app.state.token_throttle
    address = client_ip(request) or "unknown"
    client_id: str | None = None
    grant_type: str | None = None
    try:
        throttle.check(address)
        body = await _read_token_request(request)
        client_id, grant_type = body.client_id, body.grant_type
        _checked(body)
        throttle.check(address, client_id)
        subject, answer = await _grant(request, body, auth)
    except ProblemError as exc:
        status = exc.problem.status
        if 400 <= status < 500:
            request.app.state.metrics.refused_token("throttled" if status == 429 else exc.problem.title)
        if status == 429:
            raise  # not audited: a flood of these would fill the audit (the refusal that began the hold is there)
        held = throttle.failed(address, client_id) if 400 <= status < 500 else []
        detail = {"grantType": grant_type, "reason": exc.problem.detail}
        if held:
            detail["held"] = " and ".join(held)
        await auth.audit(request, "token.refused", "/auth/v1/token", client_id or "unknown", status, detail)
        raise
    await auth.audit(request, "token.issued", "/auth/v1/token", subject, 200,
                     {"grantType": grant_type, "scope": answer.scope})
    return json_response(answer, headers={"Cache-Control": "no-store"})


async def _grant(request: Request, body: TokenRequest, auth) -> tuple[str, TokenAnswer]:
    """The token a valid request earns, and its subject; a ProblemError for any other."""
    subject = body.client_id or "unknown"
    async with request.app.state.pool.acquire() as conn:
        if body.grant_type == "client_credentials":
            if not body.client_id or not body.client_secret:
                raise oauth_error(401, "invalid_client", "give client_id and client_secret")
            row = await conn.fetchrow("SELECT secret_hash, roles, enabled FROM auth.service_accounts "
                                      "WHERE client_id = $1", body.client_id)
            # The hash check runs even for unknown clients, so timing does not tell which exist.
            stored = row["secret_hash"] if row else "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA"
            valid = await asyncio.to_thread(verify_secret, body.client_secret, stored)
            if not row or not valid or not row["enabled"]:
                raise oauth_error(401, "invalid_client", "unknown client, wrong secret, or disabled account")
            roles = list(row["roles"])
            extra: dict = {}
        elif body.grant_type == TOKEN_EXCHANGE:
            subject, roles, extra = await _exchange(request, conn, body, auth)
        else:
            raise oauth_error(400, "unsupported_grant_type",
                              f"grant_type must be client_credentials or {TOKEN_EXCHANGE}")
        scope = _granted(body.scope, await scopes_of(conn, roles))
        return subject, await issue(conn, auth, subject, roles, scope, extra)


@router.post("/auth/v1/token/revoke", scope="write:auth", status=200, request=RevokeRequest, response=Revoked,
             summary="Revoke one token (jti) or every token of a subject issued until now")
async def revoke(request: Request) -> Response:
    body = await request_body(request)
    if (body.jti is None) == (body.subject is None):
        raise field_problem("$", "give exactly one of jti or subject")
    lifetime = request.app.state.auth.config.token_lifetime_s
    async with request.app.state.pool.acquire() as conn:
        row = await conn.fetchrow(
            "INSERT INTO auth.revocations (jti, subject, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3)) "
            "ON CONFLICT (jti) DO UPDATE SET revoked_at = auth.revocations.revoked_at RETURNING expires_at",
            body.jti, body.subject, lifetime + 60)
    await request.app.state.auth.reload()  # this process at once; the others on the NOTIFY
    what = f"jti {body.jti}" if body.jti else f"every token of {body.subject!r} issued so far"
    return json_response(Revoked(revoked=what, until=row["expires_at"].isoformat()))


@router.get("/.well-known/jwks.json", scope=None, summary="Public keys that verify Chamicore tokens")
async def jwks(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        published = await keys.published(conn)
    return json_response({"keys": published}, headers={"Cache-Control": "max-age=60"})


@router.get("/.well-known/openid-configuration", scope=None, summary="Where tokens and keys are")
async def discovery(request: Request) -> Response:
    issuer = request.app.state.auth.config.token_issuer
    return json_response({
        "issuer": issuer,
        "token_endpoint": f"{issuer}/auth/v1/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "revocation_endpoint": f"{issuer}/auth/v1/token/revoke",
        "grant_types_supported": ["client_credentials", TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "scopes_supported": sorted(request.app.state.known_scopes),
    })
