"""`chamicore auth rotate-keys` and `auth create-admin`: done in the database directly."""

from __future__ import annotations

import sys

from admin_api.auth import keys
from cli.dbcmd import _connect
from cli.errors import EXIT_CONFIG, EXIT_CONFLICT, CLIError
from core.config import Config
from core.crypto import SecretBox, SecretKeyMissing, read_key


async def rotate_keys(config: Config, dsn: str) -> None:
    try:
        box = SecretBox(read_key(config.secret_key, config.secret_key_file, "SECRET_KEY"), "signing-keys")
    except SecretKeyMissing as exc:
        raise CLIError("auth", str(exc), "use the same key the admin API runs with", EXIT_CONFIG) from None
    conn = await _connect(dsn)
    try:
        new, old = await keys.rotate(conn, box, config.token_lifetime_s)
    finally:
        await conn.close()
    print(f"signing with key {new}" + (f"; {old} stays published until its tokens expire" if old else ""))


async def create_admin(dsn: str, client_id: str) -> None:
    """`chamicore auth create-admin`: the first account of a deployment that `chamicore up` did not make."""
    from admin_api.auth.accounts import create_account

    conn = await _connect(dsn)
    try:
        if await conn.fetchval("SELECT true FROM auth.service_accounts WHERE client_id = $1", client_id):
            raise CLIError("auth", f"service account {client_id!r} already exists",
                           "choose another --client-id, or reset its secret through the API", EXIT_CONFLICT)
        secret = await create_account(conn, client_id, ["admin"], "created by chamicore auth create-admin")
    finally:
        await conn.close()
    print(f"client_id: {client_id}\nclient_secret: {secret}")
    print("the secret is shown this once; `chamicore auth login --client-id "
          f"{client_id}` stores it for the CLI", file=sys.stderr)
