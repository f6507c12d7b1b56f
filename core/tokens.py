"""Verifying Chamicore access tokens (RS256 JWTs).

The verifier holds the published public keys and the live revocations;
the admin API keeps both current from the database (LISTEN/NOTIFY), so a
revoked token is refused by every process within a second.
"""

from __future__ import annotations

from typing import Any

import jwt

AUDIENCE = "chamicore"
ALGORITHM = "RS256"


class TokenError(Exception):
    """The token cannot be accepted; `reason` says why, for the 401 problem."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TokenVerifier:
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.keys: dict[str, Any] = {}  # kid -> public key
        self.revoked_jtis: set[str] = set()
        self.revoked_subjects: dict[str, float] = {}  # subject -> revoked at (unix seconds)

    def set_keys(self, jwks: list[dict]) -> None:
        self.keys = {jwk["kid"]: jwt.algorithms.RSAAlgorithm.from_jwk(jwk) for jwk in jwks}

    def set_revocations(self, rows) -> None:
        jtis: set[str] = set()
        subjects: dict[str, float] = {}
        for row in rows:
            if row["jti"]:
                jtis.add(row["jti"])
            else:
                at = row["revoked_at"].timestamp()
                subjects[row["subject"]] = max(at, subjects.get(row["subject"], 0))
        self.revoked_jtis, self.revoked_subjects = jtis, subjects

    def verify(self, token: str) -> dict:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {exc}") from None
        if header.get("alg") != ALGORITHM:
            raise TokenError(f"tokens are signed with {ALGORITHM}, not {header.get('alg')!r}")
        kid = header.get("kid")
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("signed by a key this server does not publish")
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=self.issuer,
                                options={"require": ["exp", "iat", "sub", "jti", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise TokenError(f"the token is not meant for {AUDIENCE}") from None
        except jwt.InvalidIssuerError:
            raise TokenError("the token was issued by someone else") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from None
        if claims["jti"] in self.revoked_jtis:
            raise TokenError("the token was revoked")
        revoked_at = self.revoked_subjects.get(claims["sub"])
        if revoked_at is not None and claims["iat"] <= revoked_at:
            raise TokenError("the tokens of this subject were revoked")
        return claims

