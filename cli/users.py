"""`chamicore users list|show|add|passwd|set|delete`: people who log in to the web console.

Passwords are read from stdin (piped) or asked for without echo, never taken
on the command line, so they stay out of shell history and `ps`.
"""

from __future__ import annotations

import getpass
import secrets
import sys

from cli.command import Commands, Invocation, handles, verbs
from cli.errors import UsageError
from cli.output import emit

COLUMNS = (("USERNAME", "username"), ("NAME", "displayName"), ("ROLES", "roles"), ("ENABLED", "enabled"),
           ("SESSIONS", "sessions"), ("LAST LOGIN", "lastLoginAt"))
BASE = "/auth/v1/users"


def register(commands: Commands) -> None:
    users = verbs(commands.add_parser("users", help="people who log in to the web console"))
    handles(users.add_parser("list", help="user accounts"), listing)
    handles(users.add_parser("show", help="one user account"), show).add_argument("username")
    add = handles(users.add_parser("add", help="create a user (password from stdin, or asked for)"), add_user)
    add.add_argument("username")
    add.add_argument("--role", action="append", default=[], help="a role (repeatable): admin, operator, viewer ...")
    add.add_argument("--display-name", default="")
    add.add_argument("--generate-password", action="store_true", help="make a random password and print it once")
    passwd = handles(users.add_parser("passwd", help="set a user's password (its console sessions end)"), set_password)
    passwd.add_argument("username")
    passwd.add_argument("--generate-password", action="store_true", help="make a random password and print it once")
    change = handles(users.add_parser("set", help="change roles, display name, or enable/disable"), set_user)
    change.add_argument("username")
    change.add_argument("--role", action="append", help="the user's roles, replacing the current ones (repeatable)")
    change.add_argument("--display-name")
    enabled = change.add_mutually_exclusive_group()
    enabled.add_argument("--enable", dest="enabled", action="store_const", const=True)
    enabled.add_argument("--disable", dest="enabled", action="store_const", const=False)
    handles(users.add_parser("delete", help="delete a user (its sessions end)"), delete).add_argument("username")


def _password(generate: bool) -> tuple[str, bool]:
    """The new password, and whether it was generated (then it is printed once)."""
    if generate:
        return secrets.token_urlsafe(18), True
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the two passwords differ")
    if len(password) < 12:
        raise UsageError("a password needs at least 12 characters", "or pass --generate-password")
    return password, False


def listing(run: Invocation) -> int:
    emit(run.client.get(BASE), run.fmt, COLUMNS)
    return 0


def show(run: Invocation) -> int:
    emit(run.client.get(f"{BASE}/{run.args.username}"), run.fmt if run.fmt != "table" else "yaml")
    return 0


def add_user(run: Invocation) -> int:
    args = run.args
    password, generated = _password(args.generate_password)
    user = run.client.request("POST", BASE, {"username": args.username, "password": password, "roles": args.role,
                                             "displayName": args.display_name})
    emit(user, run.fmt if run.fmt != "table" else "yaml")
    if generated:
        print(f"password: {password}\n(shown this once)", file=sys.stderr)
    return 0


def set_password(run: Invocation) -> int:
    password, generated = _password(run.args.generate_password)
    run.client.request("POST", f"{BASE}/{run.args.username}/password", {"password": password})
    print(f"password of {run.args.username} set; its console sessions ended", file=sys.stderr)
    if generated:
        print(f"password: {password}\n(shown this once)", file=sys.stderr)
    return 0


def set_user(run: Invocation) -> int:
    args = run.args
    change = {key: value for key, value in (("roles", args.role), ("displayName", args.display_name),
                                            ("enabled", args.enabled)) if value is not None}
    if not change:
        raise UsageError("nothing to change", "pass --role, --display-name, --enable or --disable")
    emit(run.client.request("PATCH", f"{BASE}/{args.username}", change), run.fmt, COLUMNS)
    return 0


def delete(run: Invocation) -> int:
    run.client.request("DELETE", f"{BASE}/{run.args.username}")
    print(f"deleted user {run.args.username}", file=sys.stderr)
    return 0
