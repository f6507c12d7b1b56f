"""A real Redfish service for tests: sushy-tools' emulator with its fake driver, on 127.0.0.1.

Its fake systems apply a power change 1-11 s after the request, on the next
GET.  Basic auth comes from an htpasswd file with a bcrypt hash; HTTPS from
a self-signed certificate made here when asked.  The state directory is
fresh for each emulator.

The tests count the power requests that reached the BMC through a recording
proxy in front of a plain-HTTP emulator (`url` is the proxy's address): it
forwards each request and records method, path, body and the emulator's
status as data, so no test depends on the emulator's log format.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import http.server
import json
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt

from tests.helpers.ports import free_port

USERNAME, PASSWORD = "admin", "redfish-secret"
_UNVERIFIED = ssl._create_unverified_context()  # the tests' own peeks at the emulator, never the product's


def fake_system(index: int, power_state: str = "Off", nics: int = 1) -> dict:
    return {"uuid": f"7c4e6a1e-0000-4000-8000-{index:012d}", "name": f"node{index}", "power_state": power_state,
            "nics": [{"mac": f"52:54:00:c0:{n:02x}:{index:02x}", "ip": f"10.42.{n}.{index}"} for n in range(nics)]}


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bmc.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "bmc.crt", directory / "bmc.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _storage(systems: list[dict], drives: dict[str, list[dict]]) -> dict:
    return {s["uuid"]: [{"Id": "1", "Name": "Local Storage Controller",
                         "StorageControllers": [{"MemberId": "0", "Name": "Contoso Integrated RAID", "SpeedGbps": 12}],
                         "Drives": [d["Id"] for d in drives.get(s["uuid"], [])]}] for s in systems}


def _drives(drives: dict[str, list[dict]]) -> dict:
    return {(uuid, "1"): listed for uuid, listed in drives.items()}


EMULATOR_LOCK_RETRIES = 5


class RecordingProxy:
    """Forwards every request to the emulator and records what it answered, as data.

    A request is recorded once the emulator has answered it, whether or not
    the client is still there to read the answer (a client killed mid-request
    still reached the BMC), which is what a BMC's own count would say.
    """

    def __init__(self, upstream_port: int) -> None:
        self.requests: list[dict] = []
        # MOCK: resources sushy-tools' fake driver does not model (Processors with GPUs, Memory, a
        # FirmwareInventory), served here in its place; a dict for a path the emulator serves is merged into
        # the emulator's answer (a link it lacks).  Everything else is the emulator's own answer.
        self.overlay: dict[str, dict] = {}
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                extra = proxy.overlay.get(self.path.rstrip("/")) if self.command == "GET" else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                try:
                    for attempt in range(EMULATOR_LOCK_RETRIES + 1):
                        upstream.request(self.command, self.path, body=body or None, headers=headers)
                        answer = upstream.getresponse()
                        content = answer.read()
                        status = answer.status
                        # The emulator's own defect, not a BMC's: its fake driver keeps state in SQLite and a
                        # few concurrent requests can meet "database is locked" (500).  Asked again, it answers.
                        if status != 500 or b"database is locked" not in content:
                            break
                        time.sleep(0.05 * (attempt + 1))
                    # Merged only over what the emulator does not model (404, 501) or serves (200): its other
                    # errors are a BMC's errors and reach the client as they are.
                    if extra is not None and status in (200, 404, 501):
                        merged = json.loads(content) if status == 200 else {}
                        content, status = json.dumps({**merged, **extra}).encode(), 200
                    proxy.requests.append({"method": self.command, "path": self.path, "status": status,
                                           "body": json.loads(body) if body else None})
                    self.send_response(status)
                    for name, value in answer.getheaders():
                        if name.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length",
                                                "server", "date"):
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                finally:
                    upstream.close()

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()


class RedfishEmulator:
    def __init__(self, systems: list[dict], *, tls: bool = False, drives: dict[str, list[dict]] | None = None) -> None:
        """`drives`: per system uuid, the drives of its one storage controller (sushy-tools' static storage)."""
        self.systems = systems
        self.dir = Path(tempfile.mkdtemp(prefix="chamicore-sushy-"))
        self.port = free_port()
        self.scheme = "https" if tls else "http"
        # Plain HTTP goes through the recording proxy; TLS goes straight to the emulator (nothing counts it).
        self.proxy = None if tls else RecordingProxy(self.port)
        self.url = f"{self.scheme}://127.0.0.1:{self.proxy.port if self.proxy else self.port}"
        self.direct_url = f"{self.scheme}://127.0.0.1:{self.port}"
        (self.dir / "state").mkdir()
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        (self.dir / "htpasswd").write_text(f"{USERNAME}:{hashed}\n")
        lines = [
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'",
            f"SUSHY_EMULATOR_LISTEN_PORT = {self.port}",
            "SUSHY_EMULATOR_FAKE_DRIVER = True",
            f"SUSHY_EMULATOR_STATE_DIR = {str(self.dir / 'state')!r}",
            f"SUSHY_EMULATOR_AUTH_FILE = {str(self.dir / 'htpasswd')!r}",
            f"SUSHY_EMULATOR_FAKE_SYSTEMS = {systems!r}",
            # Every system has storage, empty unless given (the static driver answers 500 for one it lacks).
            f"SUSHY_EMULATOR_STORAGE = {_storage(systems, drives or {})!r}",
            f"SUSHY_EMULATOR_DRIVES = {_drives(drives or {})!r}",
        ]
        if tls:
            cert, key = _self_signed(self.dir)
            lines += [f"SUSHY_EMULATOR_SSL_CERT = {str(cert)!r}", f"SUSHY_EMULATOR_SSL_KEY = {str(key)!r}"]
        (self.dir / "config.py").write_text("\n".join(lines) + "\n")
        self.log = self.dir / "emulator.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedfishEmulator:
        binary = shutil.which("sushy-emulator") or str(Path(sys.prefix) / "bin" / "sushy-emulator")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([binary, "--config", str(self.dir / "config.py")], stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sushy-emulator exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.direct_url + "/redfish/v1/", timeout=1, context=_UNVERIFIED):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise TimeoutError("sushy-emulator did not start")

    def stop(self) -> None:
        """The BMC is dead: its address refuses connections.  So the proxy stops listening too (a proxy that took
        the connection and then hung up would be a BMC whose answer was lost, which is another test)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.proxy:
            self.proxy.close()

    def close(self) -> None:
        self.stop()
        if self.proxy:
            self.proxy.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def resets(self, reset_type: str | None = None) -> dict[str, int]:
        """Power requests the emulator accepted (2xx), per system uuid, as the recording proxy saw them."""
        if self.proxy is None:
            raise RuntimeError("resets() counts through the recording proxy, which a TLS emulator does not have")
        counts: dict[str, int] = {}
        for request in list(self.proxy.requests):
            path = request["path"].split("?", 1)[0]
            prefix, _, action = path.rpartition("/Actions/")
            if (request["method"] != "POST" or action != "ComputerSystem.Reset" or not 200 <= request["status"] < 300
                    or not prefix.startswith("/redfish/v1/Systems/")):
                continue
            if reset_type is not None and (request["body"] or {}).get("ResetType") != reset_type:
                continue
            uuid = prefix.removeprefix("/redfish/v1/Systems/")
            counts[uuid] = counts.get(uuid, 0) + 1
        return counts

    def _call(self, path: str, body: dict | None = None) -> bytes:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode() if body else None,
                                         headers={"Content-Type": "application/json", "Authorization": "Basic " +
                                                  base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()})
        with urllib.request.urlopen(request, timeout=5, context=_UNVERIFIED) as response:
            return response.read()

    def power_state(self, uuid: str) -> str:
        return json.loads(self._call(f"/redfish/v1/Systems/{uuid}"))["PowerState"]

    def reset(self, uuid: str, reset_type: str) -> None:
        """A power request sent straight to the emulator, as some other client would."""
        self._call(f"/redfish/v1/Systems/{uuid}/Actions/ComputerSystem.Reset", {"ResetType": reset_type})
