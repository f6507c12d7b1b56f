"""Finding 11: files that hold secrets are written 0600 whatever was there before, and never through a link."""

import asyncio
import io
import json
import stat
import sys

from admin_api.auth.bootstrap import bootstrap_admin, credentials_path
from cli.main import run
from core import db
from tests.helpers.tokens import token_for


def mode(path):
    return stat.S_IMODE(path.lstat().st_mode)


def test_login_replaces_a_world_readable_config_and_token_cache(admin_server, dsn, monkeypatch, tmp_path, capsys):
    server = admin_server()
    admin_token = asyncio.run(token_for(server.url, dsn))
    monkeypatch.setenv("CHAMICORE_ENDPOINT", server.url)
    monkeypatch.setenv("CHAMICORE_TOKEN", admin_token)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CHAMICORE_DATA_DIR", str(tmp_path / "data"))
    assert run(["service-accounts", "create", "--id", "ops-bot", "--set", 'roles=["operator"]', "-o", "json"]) == 0
    secret = json.loads(capsys.readouterr().out)["clientSecret"]
    monkeypatch.delenv("CHAMICORE_TOKEN")

    config = tmp_path / "config" / "chamicore" / "config.yaml"
    cache = tmp_path / "cache" / "chamicore" / "token.json"
    for path in (config, cache):
        path.parent.mkdir(parents=True)
        path.write_text("{}\n")
        path.chmod(0o644)
    monkeypatch.setattr(sys, "stdin", io.StringIO(secret + "\n"))
    assert run(["auth", "login", "--client-id", "ops-bot"]) == 0
    assert run(["auth", "token"]) == 0  # fetches a token and caches it
    capsys.readouterr()
    assert secret in config.read_text() and mode(config) == 0o600
    assert "ops-bot" in cache.read_text() and mode(cache) == 0o600

    # A config path that is a link is replaced, and what it pointed at is left alone.
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("output: table\n")
    elsewhere.chmod(0o644)
    config.unlink()
    config.symlink_to(elsewhere)
    monkeypatch.setattr(sys, "stdin", io.StringIO(secret + "\n"))
    assert run(["auth", "login", "--client-id", "ops-bot"]) == 0
    assert elsewhere.read_text() == "output: table\n"
    assert not config.is_symlink() and mode(config) == 0o600 and secret in config.read_text()


async def test_bootstrap_credentials_never_go_through_a_planted_temp_file(dsn, tmp_path):
    path = credentials_path(tmp_path)
    path.parent.mkdir(parents=True)
    planted = tmp_path / "planted"
    planted.write_text("")
    planted.chmod(0o644)
    for name in ("admin.tmp", "admin.json.tmp"):
        (path.parent / name).symlink_to(planted)
    conn = await db.connect(dsn)
    try:
        assert await bootstrap_admin(conn, tmp_path, "http://127.0.0.1:1/auth/v1/token") == path
    finally:
        await conn.close()
    assert planted.read_text() == ""
    assert mode(path) == 0o600 and json.loads(path.read_text())["client_secret"]


async def test_bootstrap_keeps_the_secret_and_follows_the_admin_address(dsn, tmp_path):
    conn = await db.connect(dsn)
    try:
        await bootstrap_admin(conn, tmp_path, "http://127.0.0.1:1111/auth/v1/token")
        first = json.loads(credentials_path(tmp_path).read_text())
        assert await bootstrap_admin(conn, tmp_path, "http://127.0.0.1:2222/auth/v1/token") is None
    finally:
        await conn.close()
    again = json.loads(credentials_path(tmp_path).read_text())
    assert again["client_secret"] == first["client_secret"]
    assert again["token_url"] == "http://127.0.0.1:2222/auth/v1/token"
    assert mode(credentials_path(tmp_path)) == 0o600


async def test_a_lost_credentials_file_ends_the_tokens_of_the_old_secret(admin_app, anonymous, dsn, tmp_path):
    conn = await db.connect(dsn)
    try:
        await bootstrap_admin(conn, tmp_path, "http://admin/auth/v1/token")
        old = json.loads(credentials_path(tmp_path).read_text())
        answer = await anonymous.post("/auth/v1/token", data={"grant_type": "client_credentials", **{
            k: old[k] for k in ("client_id", "client_secret")}})
        headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        assert (await anonymous.get("/hsm/v2/State/Components", headers=headers)).status_code == 200
        credentials_path(tmp_path).unlink()
        assert await bootstrap_admin(conn, tmp_path, "http://admin/auth/v1/token") == credentials_path(tmp_path)
    finally:
        await conn.close()
    assert json.loads(credentials_path(tmp_path).read_text())["client_secret"] != old["client_secret"]
    for _ in range(40):
        if (await anonymous.get("/hsm/v2/State/Components", headers=headers)).status_code == 401:
            break
        await asyncio.sleep(0.05)
    assert (await anonymous.get("/hsm/v2/State/Components", headers=headers)).status_code == 401
