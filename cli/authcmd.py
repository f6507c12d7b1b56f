"""`chamicore auth rotate-keys`."""

from __future__ import annotations

from admin_api.auth import keys
from cli.dbcmd import _connect
from cli.errors import EXIT_CONFIG, CLIError
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
