"""RS256 signing keys: created on first start, stored encrypted, rotated on demand.

The active key signs; a retired key stays in the JWKS until every token it
signed has expired (`publish_until`), then drops out.
"""

from __future__ import annotations

import json
import secrets

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from core import db
from core.crypto import SecretBox

KEY_LOCK = 0x43484D43_4B455953  # "CHMCKEYS": one creator at a time


def _new_key() -> tuple[str, bytes, dict]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = secrets.token_hex(8)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    return kid, pem, jwk


async def ensure_active_key(conn: db.Connection, box: SecretBox) -> str:
    """The kid of the active key, creating the first one if there is none."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", KEY_LOCK)
        kid = await conn.fetchval("SELECT kid FROM auth.signing_keys WHERE retired_at IS NULL")
        if kid is None:
            kid, pem, jwk = _new_key()
            await conn.execute("INSERT INTO auth.signing_keys (kid, private_key_enc, public_jwk) VALUES ($1, $2, $3)",
                               kid, box.seal(pem, kid), jwk)
        return kid


async def rotate(conn: db.Connection, box: SecretBox, token_lifetime_s: int) -> tuple[str, str | None]:
    """Retire the active key (published until its tokens expire) and make a new one."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", KEY_LOCK)
        old = await conn.fetchval(
            "UPDATE auth.signing_keys SET retired_at = now(), publish_until = now() + make_interval(secs => $1) "
            "WHERE retired_at IS NULL RETURNING kid", token_lifetime_s + 60)
        kid, pem, jwk = _new_key()
        await conn.execute("INSERT INTO auth.signing_keys (kid, private_key_enc, public_jwk) VALUES ($1, $2, $3)",
                           kid, box.seal(pem, kid), jwk)
        await conn.execute("DELETE FROM auth.signing_keys WHERE publish_until < now()")
    return kid, old


async def published(conn: db.Connection) -> list[dict]:
    rows = await conn.fetch("SELECT public_jwk FROM auth.signing_keys WHERE retired_at IS NULL "
                            "OR publish_until > now() ORDER BY created_at DESC")
    return [row["public_jwk"] for row in rows]


async def signing_key(conn: db.Connection, box: SecretBox):
    row = await conn.fetchrow("SELECT kid, private_key_enc FROM auth.signing_keys WHERE retired_at IS NULL")
    if row is None:
        raise RuntimeError("no active signing key")
    pem = box.open(bytes(row["private_key_enc"]), row["kid"])
    return row["kid"], serialization.load_pem_private_key(pem, password=None)

