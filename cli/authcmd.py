"""`chamicore auth login|token|whoami` (through the admin API) and `auth rotate-keys|create-admin`
(in the database directly, for a deployment's first steps)."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time

from cli.client import ApiClient, read_config_file, write_config_file
from cli.command import Commands, Invocation, handles, verbs
from cli.dbcmd import _connect, require_database_url
from cli.errors import EXIT_CONFIG, EXIT_CONFLICT, CLIError, UsageError
from cli.output import emit


def register(commands: Commands) -> None:
    auth = verbs(commands.add_parser("auth", help="log in, tokens, signing keys"), "auth_command", "ACTION")
    handles(auth.add_parser("rotate-keys", help="start signing with a new key; the old one stays published "
                                                "until its tokens expire"), rotate_keys)
    handles(auth.add_parser("create-admin", help="create an admin service account in the database directly "
                                                 "(the first one of a deployment)"), create_admin).add_argument(
        "--client-id", default="admin")
    log_in = handles(auth.add_parser("login", help="store a service account in the config file (0600) and check it"),
                     login)
    log_in.add_argument("--client-id", required=True)
    log_in.add_argument("--client-secret", help="the secret (default: read from stdin, so it stays out of history)")
    log_in.add_argument("--endpoint", help="the admin API to use from now on")
    handles(auth.add_parser("token", help="print a bearer token (for curl: -H \"Authorization: Bearer "
                                          "$(chamicore auth token)\")"), token)
    handles(auth.add_parser("whoami", help="who the token says you are, and its scopes"), whoami)


def rotate_keys(run: Invocation) -> int:
    from admin_api.auth import keys
    from core.crypto import SecretBox, SecretKeyMissing, read_key

    config = run.config
    try:
        box = SecretBox(read_key(config.secret_key, config.secret_key_file, "SECRET_KEY"), "signing-keys")
    except SecretKeyMissing as exc:
        raise CLIError("auth", str(exc), "use the same key the admin API runs with", EXIT_CONFIG) from None

    async def rotate() -> tuple:
        conn = await _connect(require_database_url(config))
        try:
            return await keys.rotate(conn, box, config.token_lifetime_s)
        finally:
            await conn.close()

    new, old = asyncio.run(rotate())
    print(f"signing with key {new}" + (f"; {old} stays published until its tokens expire" if old else ""))
    return 0


def create_admin(run: Invocation) -> int:
    """The first account of a deployment that `chamicore up` did not make."""
    from admin_api.auth.accounts import create_account

    client_id = run.args.client_id

    async def create() -> str:
        conn = await _connect(require_database_url(run.config))
        try:
            if await conn.fetchval("SELECT true FROM auth.service_accounts WHERE client_id = $1", client_id):
                raise CLIError("auth", f"service account {client_id!r} already exists",
                               "choose another --client-id, or reset its secret through the API", EXIT_CONFLICT)
            return await create_account(conn, client_id, ["admin"], "created by chamicore auth create-admin")
        finally:
            await conn.close()

    secret = asyncio.run(create())
    print(f"client_id: {client_id}\nclient_secret: {secret}")
    print("the secret is shown this once; `chamicore auth login --client-id "
          f"{client_id}` stores it for the CLI", file=sys.stderr)
    return 0


def login(run: Invocation) -> int:
    args = run.args
    secret = args.client_secret or sys.stdin.readline().strip()
    if not secret:
        raise UsageError("no client secret given", "pass --client-secret or pipe it on stdin")
    trial = ApiClient(args.endpoint or run.client.endpoint, credentials={"client_id": args.client_id,
                                                                        "client_secret": secret})
    trial.token()  # fails with the server's reason if the account is wrong
    values = read_config_file()
    values.update(client_id=args.client_id, client_secret=secret)
    values.pop("token", None)
    if args.endpoint:
        values["endpoint"] = args.endpoint
    path = write_config_file(values)
    print(f"logged in as {args.client_id} at {trial.endpoint}; saved in {path}", file=sys.stderr)
    return 0


def _token(client: ApiClient) -> str:
    found = client.token()
    if not found:
        raise UsageError("no token and no credentials", "run `chamicore auth login`, set CHAMICORE_TOKEN, or start "
                         "`chamicore up` (its admin credentials are used)")
    return found


def token(run: Invocation) -> int:
    print(_token(run.client))
    return 0


def whoami(run: Invocation) -> int:
    found = _token(run.client)
    try:
        payload = found.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        raise UsageError("the token is not a JWT") from None
    shown = {"subject": claims.get("sub"), "issuer": claims.get("iss"), "scopes": (claims.get("scope") or "").split(),
             "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims.get("exp", 0))),
             "endpoint": run.client.endpoint}
    emit(shown, run.fmt if run.fmt != "table" else "yaml")
    return 0
