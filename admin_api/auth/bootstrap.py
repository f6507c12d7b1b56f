"""The first admin: a service account whose credentials are written, 0600, under the data dir."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import asyncpg

from admin_api.auth.accounts import create_account
from admin_api.auth.revocations import revoke_subjects
from core.files import write_private

BOOTSTRAP_CLIENT = "chamicore-admin"


def credentials_path(data_dir: Path) -> Path:
    return data_dir / "credentials" / "admin.json"


def _read_credentials(path: Path) -> dict | None:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) and stored.get("client_secret") else None


def _write_credentials(path: Path, secret: str, token_url: str) -> None:
    write_private(path, json.dumps({"client_id": BOOTSTRAP_CLIENT, "client_secret": secret, "token_url": token_url},
                                   indent=2))


async def bootstrap_admin(conn: asyncpg.Connection, data_dir: Path, token_url: str,
                          token_lifetime_s: int = 3600) -> Path | None:
    """Create the admin account once; returns the credentials file when it was just written.

    On later starts the file keeps its secret, and its `token_url` follows the
    admin API's current address (an `up` restarted on another port must not
    leave the file pointing at a dead one).
    """
    path = credentials_path(data_dir)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('chamicore.bootstrap'))")
        exists = await conn.fetchval("SELECT true FROM auth.service_accounts WHERE client_id = $1", BOOTSTRAP_CLIENT)
        stored = _read_credentials(path) if exists else None
        if stored is not None:
            if stored.get("token_url") != token_url:
                _write_credentials(path, stored["client_secret"], token_url)
            return None
        if exists:  # the file was lost: give the account a new secret rather than lock everyone out
            await conn.execute("DELETE FROM auth.service_accounts WHERE client_id = $1", BOOTSTRAP_CLIENT)
            await revoke_subjects(conn, [BOOTSTRAP_CLIENT], token_lifetime_s)  # and end the old secret's tokens
        secret = await create_account(conn, BOOTSTRAP_CLIENT, ["admin"], "created by chamicore up")
        _write_credentials(path, secret, token_url)
    return path


CONSOLE_USER = "admin"


def console_credentials_path(data_dir: Path) -> Path:
    return data_dir / "credentials" / "console.json"


async def bootstrap_console_user(conn: asyncpg.Connection, data_dir: Path, console_url: str) -> Path | None:
    """The first person's account for the web console, when there is no user at all; returns the file
    (0600) holding its password when it was just made.  Its password is then changed with
    `chamicore users passwd admin` (which ends its sessions)."""
    from admin_api.auth.users import create_user

    path = console_credentials_path(data_dir)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('chamicore.bootstrap-user'))")
        if await conn.fetchval("SELECT true FROM auth.users LIMIT 1"):
            return None
        password = secrets.token_urlsafe(18)
        await create_user(conn, CONSOLE_USER, password, ["admin"], "first administrator (chamicore up)")
        write_private(path, json.dumps({"username": CONSOLE_USER, "password": password, "url": console_url},
                                       indent=2))
    return path
