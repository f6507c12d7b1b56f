"""deploy/systemd: the units pass `systemd-analyze verify`, and the services really speak sd_notify."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.config import SETTINGS
from tests.helpers.paths import ROOT
from tests.helpers.servers import ServiceServer

UNITS = sorted((ROOT / "deploy" / "systemd").glob("chamicore-*.service"))
INSTALLED = "/opt/chamicore/bin/chamicore"


def chamicore_binary(tmp_path: Path) -> str:
    """The installed `chamicore` script (make test's venv has one), else a wrapper that runs this checkout's."""
    installed = Path(sys.executable).parent / "chamicore"
    if installed.exists():
        return str(installed)
    wrapper = tmp_path / "chamicore"
    wrapper.write_text(f"#!/bin/sh\ncd {ROOT} && exec {sys.executable} -m cli.main \"$@\"\n")
    wrapper.chmod(0o755)
    return shutil.which(str(wrapper)) or str(wrapper)


def test_the_three_units_pass_systemd_analyze_verify(tmp_path):
    assert [u.name for u in UNITS] == ["chamicore-admin.service", "chamicore-boot.service", "chamicore-sync.service"]
    etc = tmp_path / "etc"
    etc.mkdir()
    for name in ("chamicore.env", "secret.key", "credentials.key"):
        (etc / name).write_text("x\n")
    for unit in UNITS:
        # As installed: the paths point at this machine's chamicore and at files that exist.
        text = unit.read_text().replace(INSTALLED, chamicore_binary(tmp_path)).replace("/etc/chamicore", str(etc))
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / u.name) for u in UNITS)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # not even a warning


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.stem)
def test_units_are_hardened_and_use_only_real_settings(unit):
    text = unit.read_text()
    for directive in ("Type=notify", "NotifyAccess=all", "DynamicUser=yes", "ProtectSystem=strict",
                      "NoNewPrivileges=yes", "PrivateTmp=yes", "CapabilityBoundingSet="):
        assert directive in text, directive
    known = {f"CHAMICORE_{s.name}" for s in SETTINGS}
    for name in re.findall(r"\b(CHAMICORE_[A-Z_]+)=", text):
        assert name in known, name
    service = unit.stem.removeprefix("chamicore-")
    assert f"ExecStart={INSTALLED} serve {service}" in text
    env_file = (ROOT / "deploy" / "systemd" / "chamicore.env").read_text()
    for name in re.findall(r"^#?(CHAMICORE_[A-Z_]+)=", env_file, re.M):
        assert name in known, name


class NotifySocket:
    """What systemd listens on for sd_notify, bound by the test."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)

    def messages_until(self, wanted: str, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                seen.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            if any(wanted in m for m in seen):
                return seen
        raise AssertionError(f"no {wanted!r} within {timeout} s; got {seen}")

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("service", ["boot", "admin"])
def test_ready_is_sent_only_when_the_service_can_serve(dsn, tmp_path, service):
    notify = NotifySocket(tmp_path / "notify.sock")
    server = ServiceServer(dsn, service=service, NOTIFY_SOCKET=str(notify.path))
    try:
        server.start(wait_ready=False)
        messages = notify.messages_until("READY=1", 60)
        # The moment systemd hears READY=1, /readiness already says so.
        with urllib.request.urlopen(server.url + "/readiness", timeout=5) as response:
            assert response.status == 200
        if service == "boot":
            assert any("STATUS=serving 0 nodes" in m for m in messages)
    finally:
        server.stop()
        notify.close()


def test_sync_says_ready_then_stopping(dsn, tmp_path):
    notify = NotifySocket(tmp_path / "notify.sock")
    env = dict(os.environ, CHAMICORE_DATABASE_URL=dsn, NOTIFY_SOCKET=str(notify.path), CHAMICORE_LOG_LEVEL="warning")
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "sync"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ready = notify.messages_until("READY=1", 30)
        assert any("STATUS=discovery, power" in m for m in ready)
        process.terminate()
        notify.messages_until("STOPPING=1", 30)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        notify.close()


async def test_create_admin_makes_the_first_account(dsn, conn):
    from core.crypto import verify_secret

    env = dict(os.environ, CHAMICORE_DATABASE_URL=dsn)
    made = subprocess.run([sys.executable, "-m", "cli.main", "auth", "create-admin", "--client-id", "root-admin"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    secret = re.search(r"client_secret: (\S+)", made.stdout).group(1)
    row = await conn.fetchrow("SELECT roles, secret_hash FROM auth.service_accounts WHERE client_id = 'root-admin'")
    assert list(row["roles"]) == ["admin"] and verify_secret(secret, row["secret_hash"])
    again = subprocess.run([sys.executable, "-m", "cli.main", "auth", "create-admin", "--client-id", "root-admin"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 6 and "already exists" in again.stderr
