"""The `chamicore` command as an operator runs it."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import msgspec
import psutil
import pytest

from tests.helpers.keys import SECRET_KEY
from tests.helpers.paths import ROOT, tmp_root
from tests.helpers.polling import wait_until
from tests.helpers.ports import free_port


def chamicore(*args, env=None, timeout=60, input=None):
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=timeout, input=input)


def test_help_lists_the_commands():
    result = chamicore("--help")
    assert result.returncode == 0
    for command in ("up", "config", "db", "serve"):
        assert command in result.stdout
    serve = chamicore("serve", "--help")
    for command in ("boot", "admin"):
        assert command in serve.stdout


def test_config_prints_every_setting_masked():
    result = chamicore("config", env={"CHAMICORE_DATABASE_URL": "postgresql://u:pw@db/x", "CHAMICORE_SECRET_KEY": "s3"})
    assert result.returncode == 0
    assert "CHAMICORE_BOOT_LISTEN" in result.stdout and "127.0.0.1:27778" in result.stdout
    assert "postgresql://u:****@db/x" in result.stdout and "pw@" not in result.stdout and "s3" not in result.stdout


def test_bad_config_is_named_with_a_hint():
    result = chamicore("config", env={"CHAMICORE_UNKNOWN_RETRY_S": "never"})
    assert result.returncode == 3
    assert "CHAMICORE_UNKNOWN_RETRY_S" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_migrate_and_status(empty_dsn):
    env = {"CHAMICORE_DATABASE_URL": empty_dsn}
    status = chamicore("db", "status", env=env)
    assert status.returncode == 0 and "0 applied" in status.stdout and "pending" in status.stdout
    first = chamicore("db", "migrate", env=env)
    assert first.returncode == 0 and "applying 0001_smd.sql" in first.stdout
    again = chamicore("db", "migrate", env=env)
    assert again.returncode == 0 and "schema is up to date" in again.stdout
    status = chamicore("db", "status", env=env)
    assert " 0 pending" in status.stdout


def test_db_errors_are_readable():
    result = chamicore("db", "status", env={"CHAMICORE_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"})
    assert result.returncode == 4 and "cannot connect" in result.stderr and "hint:" in result.stderr
    unset = dict(os.environ)
    unset.pop("CHAMICORE_DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-m", "cli.main", "db", "migrate"], cwd=ROOT, capture_output=True,
                            text=True, env=unset)
    assert result.returncode == 4 and "CHAMICORE_DATABASE_URL is not set" in result.stderr


def _descendants(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(processes):
    alive = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_up_runs_everything_and_stops_cleanly_twice():
    """The second `up` runs on another admin port, through the installed `chamicore` command, from a
    directory holding decoy `core`, `hotpath`, `sync` and `cli` packages: the children import the
    installed package whatever the working directory, and the credentials file follows the new port."""
    data_dir = tmp_root() / "up"
    decoys = tmp_root() / "decoys"
    for package in ("core", "hotpath", "sync", "cli", "admin_api"):
        (decoys / package).mkdir(parents=True)
        (decoys / package / "__init__.py").write_text("raise ImportError('a decoy was imported')\n")
    port = free_port()
    env = dict(os.environ, CHAMICORE_BOOT_LISTEN=f"127.0.0.1:{port}")
    env.pop("CHAMICORE_DATABASE_URL", None)
    installed = str(Path(sys.prefix) / "bin" / "chamicore")
    for round_, command, cwd in ((1, [sys.executable, "-m", "cli.main"], ROOT), (2, [installed], decoys)):
        admin_port = free_port()
        env["CHAMICORE_ADMIN_LISTEN"] = f"127.0.0.1:{admin_port}"
        process = subprocess.Popen([*command, "up", "--data-dir", str(data_dir)],
                                   cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            _check_round(process, round_, data_dir, port, admin_port)
        finally:
            if process.poll() is None:  # a failed check must not leave the system running
                process.send_signal(signal.SIGTERM)
                process.communicate(timeout=60)
    assert (data_dir / "postgres" / "pgdata" / "PG_VERSION").exists()


def _check_round(process, round_, data_dir, port, admin_port):
    """One `up`: it says what runs where, everything answers, and a signal stops it all."""
    lines = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, "up exited early:\n" + "".join(lines)
        lines.append(line)
        if "Press Ctrl-C to stop" in line:
            break
    output = "".join(lines)
    assert "Chamicore is up" in output and f"http://127.0.0.1:{port}" in output
    migrations = len(list((ROOT / "core" / "migrations").glob("*.sql")))
    assert (f"{migrations} migration(s) applied" in output) if round_ == 1 else ("schema is up to date" in output)
    for ready_port in (port, admin_port):
        with urllib.request.urlopen(f"http://127.0.0.1:{ready_port}/readiness", timeout=5) as response:
            assert msgspec.json.decode(response.read())["status"] == "ready"
    assert f"admin API   http://127.0.0.1:{admin_port}" in output
    assert f"OpenCHAMI   http://127.0.0.1:{admin_port}/openchami" in output
    assert f"MCP         http://127.0.0.1:{admin_port}/mcp  (read-only" in output
    assert f"console     http://127.0.0.1:{admin_port}/ui/" in output
    _check_console_login(output, round_, data_dir, admin_port)
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/openchami/hsm/v2/service/ready", timeout=5) as ready:
        assert msgspec.json.decode(ready.read()) == {"code": 0, "message": "HSM is healthy"}
    with pytest.raises(urllib.error.HTTPError) as refused:  # served, behind the admin API's tokens
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{admin_port}/mcp", data=b"{}",
                                                      headers={"Content-Type": "application/json"}), timeout=5)
    assert refused.value.code == 401
    refused.value.close()
    credentials = data_dir / "credentials" / "admin.json"
    assert str(credentials) in output and ("(new:" in output) == (round_ == 1)
    assert credentials.stat().st_mode & 0o777 == 0o600
    admin = json.loads(credentials.read_text())
    assert admin["token_url"] == f"http://127.0.0.1:{admin_port}/auth/v1/token"
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": admin["client_id"],
                                   "client_secret": admin["client_secret"]}).encode()
    with urllib.request.urlopen(urllib.request.Request(admin["token_url"],
                                                       data=form), timeout=10) as response:
        assert "write:auth" in json.loads(response.read())["scope"]
    assert oct((data_dir / "secrets" / "secret.key").stat().st_mode & 0o777) == "0o600"
    # The client commands need no configuration: they find up's admin credentials in its data dir.
    client_env = dict(os.environ, CHAMICORE_ADMIN_LISTEN=f"127.0.0.1:{admin_port}", CHAMICORE_DATA_DIR=str(data_dir),
                      XDG_CONFIG_HOME=str(data_dir / "no-config"), XDG_CACHE_HOME=str(data_dir / "cache"))
    client_env.pop("CHAMICORE_TOKEN", None)
    client_env.pop("CHAMICORE_ENDPOINT", None)
    listed = subprocess.run([sys.executable, "-m", "cli.main", "components", "list", "-o", "json"], cwd=ROOT,
                            env=client_env, capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["kind"] == "ComponentList"
    # pg_ctl detaches the postmaster, so find it by its pid file, not as a child.
    postmaster = int((data_dir / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0])
    children = [*_descendants(process.pid), psutil.Process(postmaster)]
    served = [c.cmdline()[-1] for c in children if "serve" in c.cmdline()]
    assert {"boot", "admin", "sync"} <= set(served)  # discovery and power always run
    assert "sync        discovery scans and power transitions" in output

    process.send_signal(signal.SIGTERM if round_ == 1 else signal.SIGINT)
    rest = process.communicate(timeout=60)[0]
    assert process.returncode == 0, rest
    assert "stopped" in rest
    wait_until(lambda procs=children: not _alive(procs), timeout=10)


def _check_console_login(output, round_, data_dir, admin_port):
    """The first `up` makes the console's first user and says where its password is (0600); a login works."""
    console = data_dir / "credentials" / "console.json"
    assert (f"console login      user 'admin', password in {console}" in output) == (round_ == 1)
    assert console.stat().st_mode & 0o777 == 0o600
    login = json.loads(console.read_text())
    assert login["url"].endswith("/ui/") and login["username"] == "admin"
    assert login["password"] not in output  # only the file holds it

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    form = urllib.parse.urlencode({"username": login["username"], "password": login["password"]}).encode()
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(f"http://127.0.0.1:{admin_port}/ui/login", data=form, timeout=10)
    assert answer.value.code == 303 and "chamicore_session=" in answer.value.headers["Set-Cookie"]
    answer.value.close()


def test_users_are_managed_with_the_cli(admin_server, dsn):
    """`chamicore users`: passwords come from stdin (never argv), show and list never print them."""
    from tests.helpers.tokens import token_for

    server = admin_server()
    token = asyncio.run(token_for(server.url, dsn, "cli-admin", ["admin"]))
    env = {"CHAMICORE_ENDPOINT": server.url, "CHAMICORE_TOKEN": token}
    added = chamicore("users", "add", "dana", "--role", "operator", "--display-name", "Dana", "-o", "json", env=env,
                      input="a long enough passphrase\n")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["roles"] == ["operator"] and "passphrase" not in added.stdout
    short = chamicore("users", "add", "eve", env=env, input="short\n")
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    generated = chamicore("users", "passwd", "dana", "--generate-password", env=env)
    assert generated.returncode == 0 and "password: " in generated.stderr and "sessions ended" in generated.stderr
    changed = chamicore("users", "set", "dana", "--disable", "-o", "json", env=env)
    assert changed.returncode == 0 and json.loads(changed.stdout)["enabled"] is False
    listed = chamicore("users", "list", env=env)
    assert listed.returncode == 0 and "dana" in listed.stdout and "Dana" in listed.stdout
    assert chamicore("users", "delete", "dana", env=env).returncode == 0
    missing = chamicore("users", "show", "dana", env=env)
    assert missing.returncode == 5 and "no user 'dana'" in missing.stderr


def test_rotate_keys_and_sync_configuration_errors(dsn):
    env = {"CHAMICORE_DATABASE_URL": dsn, "CHAMICORE_SECRET_KEY": SECRET_KEY}
    first = chamicore("auth", "rotate-keys", env=env)
    assert first.returncode == 0 and first.stdout.startswith("signing with key ")
    second = chamicore("auth", "rotate-keys", env=env)
    assert "stays published until its tokens expire" in second.stdout
    missing = chamicore("auth", "rotate-keys", env={"CHAMICORE_DATABASE_URL": dsn})
    assert missing.returncode == 3 and "CHAMICORE_SECRET_KEY" in missing.stderr and "hint:" in missing.stderr
    bad = dict(os.environ, CHAMICORE_DATABASE_URL=dsn, CHAMICORE_POWER_BMC_CONCURRENCY="0")
    sync = subprocess.run([sys.executable, "-m", "cli.main", "serve", "sync"], cwd=ROOT, capture_output=True, text=True,
                          env=bad, timeout=60)
    assert sync.returncode == 3 and "CHAMICORE_POWER_BMC_CONCURRENCY" in sync.stderr
    unset = dict(os.environ)
    unset.pop("CHAMICORE_DATABASE_URL", None)
    sync = subprocess.run([sys.executable, "-m", "cli.main", "serve", "sync"], cwd=ROOT, capture_output=True, text=True,
                          env=unset, timeout=60)
    assert sync.returncode == 3 and "CHAMICORE_DATABASE_URL is not set" in sync.stderr
