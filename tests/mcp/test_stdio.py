"""`chamicore mcp` refuses to start, saying why and what to do, before an agent talks to it."""

from __future__ import annotations

import subprocess
import sys

from cli.errors import EXIT_AUTH, EXIT_CONFIG, EXIT_SERVER
from tests.helpers.paths import ROOT
from tests.helpers.ports import free_port
from tests.mcp.conftest import bridge_env


def bridge(url: str, token: str | None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", "mcp"], env=bridge_env(url, token, **env), cwd=ROOT,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def test_read_write_without_the_second_key_is_refused():
    done = bridge(f"http://127.0.0.1:{free_port()}", "t", CHAMICORE_MCP_MODE="read-write")
    assert done.returncode == EXIT_CONFIG and done.stdout == ""
    assert "CHAMICORE_MCP_ENABLE_WRITE=true" in done.stderr


def test_an_unreachable_admin_api_is_named():
    url = f"http://127.0.0.1:{free_port()}"
    done = bridge(url, "t")
    assert done.returncode == EXIT_SERVER and f"cannot reach the admin API at {url}/mcp" in done.stderr


def test_no_token_and_a_bad_token_are_refused_with_the_fix(admin_server, monkeypatch):
    server = admin_server()
    monkeypatch.delenv("CHAMICORE_TOKEN", raising=False)
    missing = bridge(server.url, None)
    assert missing.returncode == EXIT_AUTH and "401" in missing.stderr and "CHAMICORE_MCP_TOKEN" in missing.stderr
    bad = bridge(server.url, "not-a-token")
    assert bad.returncode == EXIT_AUTH and "token was refused" in bad.stderr and bad.stdout == ""
