"""The first admin: a service account whose credentials are written, 0600, under the data dir."""

from __future__ import annotations

import json
import os
from pathlib import Path

import asyncpg

from admin_api.auth.accounts import create_account

BOOTSTRAP_CLIENT = "chamicore-admin"


def credentials_path(data_dir: Path) -> Path:
    return data_dir / "credentials" / "admin.json"


async def bootstrap_admin(conn: asyncpg.Connection, data_dir: Path, token_url: str) -> Path | None:
    """Create the admin account once; returns the credentials file when it was just written."""
    path = credentials_path(data_dir)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('chamicore.bootstrap'))")
        exists = await conn.fetchval("SELECT true FROM auth.service_accounts WHERE client_id = $1", BOOTSTRAP_CLIENT)
        if exists and path.exists():
            return None
        if exists:  # the file was lost: give the account a new secret rather than lock everyone out
            await conn.execute("DELETE FROM auth.service_accounts WHERE client_id = $1", BOOTSTRAP_CLIENT)
        secret = await create_account(conn, BOOTSTRAP_CLIENT, ["admin"], "created by chamicore up")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"client_id": BOOTSTRAP_CLIENT, "client_secret": secret, "token_url": token_url}, handle,
                      indent=2)
        os.replace(tmp, path)
    return path
