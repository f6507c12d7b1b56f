"""The product's own servers (`chamicore serve boot|admin`) in child processes, on free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.helpers.keys import SECRETS
from tests.helpers.paths import ROOT
from tests.helpers.ports import free_port


class ServiceServer:
    """`chamicore serve boot|admin` in a child process, on a free port."""

    def __init__(self, dsn: str, interface: str = "rsgi", service: str = "boot", host: str = "127.0.0.1",
                 **env: str) -> None:
        self.host = host  # another address only where a test's own network namespace must reach the server
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.service = service
        self.env = dict(
            os.environ,
            CHAMICORE_DATABASE_URL=dsn,
            **{f"CHAMICORE_{service.upper()}_LISTEN": f"{host}:{self.port}"},
            CHAMICORE_FEED_CHECK_S="1",
            CHAMICORE_TELEMETRY_FLUSH_S="0.2", CHAMICORE_BOOT_STAGES_FLUSH_S="0.2",
            CHAMICORE_LOG_LEVEL="warning",
            **SECRETS,
        )
        self.env.update(env)  # a test's own settings win, CHAMICORE_LOG_LEVEL included
        self.interface = interface
        self.process: subprocess.Popen | None = None

    def start(self, wait_ready: bool = True, timeout: float = 20) -> ServiceServer:
        extra = ["--interface", self.interface] if self.service == "boot" else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", self.service, *extra],
            env=self.env, cwd=ROOT, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self.wait_listening(timeout)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), error.read()

    def wait_listening(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.service} server exited: {self.process.stderr.read().decode()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{self.service} server did not listen")

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get("/readiness")[0] == 200:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.service} server never became ready")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        if self.process and self.process.stderr:
            self.process.stderr.close()
