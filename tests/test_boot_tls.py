"""The boot path over HTTPS: granian's TLS listener beside the HTTP one, with a test CA.

Real clients: Python's ssl (what a TLS client checks: chain, name), and
cloud-init's own client (Debian's cloud-init, through `requests`) following
an https seed URL.  Nodes trust the site CA the way any Debian system does
(its CA store); here through REQUESTS_CA_BUNDLE, which `requests` reads.
"""

import os
import re
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import psutil
import pytest

from tests.helpers.paths import ROOT, tmp_root
from tests.helpers.polling import wait_until
from tests.helpers.ports import free_port
from tests.helpers.seed import add_node, add_params, add_payload
from tests.helpers.tls import TestCA
from tests.test_cloudinit_client import READ_SEEDED, run_cloud_init_process

MAC = "52:54:00:aa:cc:01"
EFI = b"MZ" + bytes(range(256)) * 64  # any bytes: the boot path serves the file as it is


def fetch(url: str, context: ssl.SSLContext | None = None) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


@pytest.fixture
def pki():
    directory = tmp_root()
    ca = TestCA(directory)
    cert, key = ca.issue()
    yield ca, cert, key, directory


@pytest.fixture
async def tls_boot(conn, boot_server, pki):
    ca, cert, key, directory = pki
    await add_node(conn, "node-tls", [MAC], nid=5, ips=["10.0.0.5"])
    await add_params(conn, "site", kernel="http://images/vmlinuz", cmdline="console=ttyS0")
    await add_payload(conn, "site", user_data="#cloud-config\npackages: [htop]\n", meta_data={"cluster": "tls"})
    (directory / "efi").mkdir()
    (directory / "efi" / "ipxe.efi").write_bytes(EFI)
    tls_port = free_port()
    server = boot_server(CHAMICORE_BOOT_TLS_LISTEN=f"127.0.0.1:{tls_port}", CHAMICORE_BOOT_TLS_CERT=str(cert),
                         CHAMICORE_BOOT_TLS_KEY=str(key), CHAMICORE_IPXE_DIR=str(directory / "efi"))
    https = f"https://127.0.0.1:{tls_port}"
    trusting = ssl.create_default_context(cafile=str(ca.path))

    def ready():
        try:
            return fetch(https + "/readiness", trusting)[0] == 200
        except OSError:  # not listening yet
            return False

    wait_until(ready, timeout=20, interval=0.05)
    return server, https, trusting


async def test_https_answers_what_http_answers_with_https_urls(tls_boot, pki):
    server, https, trusting = tls_boot
    for path in ("/boot/v1/boot.ipxe", f"/boot/v1/bootscript?mac={MAC}", "/boot/v1/bootscript?nid=5"):
        status, _, plain = server.get(path)
        tls_status, _, secure = fetch(https + path, trusting)
        assert status == tls_status == 200
        # The same script, its chain and seed URLs on the listener it was fetched from.
        assert server.url in plain.decode() and https not in plain.decode()
        assert secure.decode() == plain.decode().replace(server.url, https), path
    script = fetch(f"{https}/boot/v1/bootscript?mac={MAC}", trusting)[2].decode()
    seed = re.search(r" ds=nocloud-net;s=(\S+)", script)[1]
    assert seed.startswith(https + "/cloud-init/node-tls/")
    for document in ("user-data", "meta-data", "vendor-data"):
        over_http = server.get(seed.replace(https, server.url).removeprefix(server.url) + document)
        over_https = fetch(seed + document, trusting)
        assert over_http[0] == over_https[0] == 200 and over_http[2] == over_https[2]

    # iPXE and UEFI firmware speak TLS 1.2: the listener accepts it, not only 1.3.
    tls12 = ssl.create_default_context(cafile=str(pki[0].path))
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    port = int(https.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            tls12.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() == "TLSv1.2"

    # iPXE's EFI program, read from CHAMICORE_IPXE_DIR at start, on both listeners.
    for base, context in ((server.url, None), (https, trusting)):
        status, headers, body = fetch(base + "/boot/v1/ipxe/ipxe.efi", context)
        assert status == 200 and body == EFI and headers["content-type"] == "application/efi"
        assert fetch(base + "/boot/v1/ipxe/snponly.efi", context)[0] == 404

    # A client that does not trust the CA is refused at the handshake.
    stranger = TestCA(pki[3], "another CA")
    with pytest.raises(urllib.error.URLError) as refused:
        fetch(https + "/boot/v1/boot.ipxe", ssl.create_default_context(cafile=str(stranger.path)))
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)

    # The two listeners live and die together: the HTTPS one stopping stops `serve boot`.
    [sibling] = [p for p in psutil.Process(server.process.pid).children() if "https" in p.cmdline()]
    sibling.terminate()
    wait_until(lambda: server.process.poll() is not None, timeout=20, interval=0.05)


async def test_cloud_init_follows_an_https_seed(tls_boot, pki, monkeypatch):
    _, https, trusting = tls_boot
    script = fetch(f"{https}/boot/v1/bootscript?mac={MAC}", trusting)[2].decode()
    seed = re.search(r" ds=nocloud-net;s=(\S+)", script)[1]
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki[0].path))  # cloud-init's child inherits it; requests reads it
    result = run_cloud_init_process(READ_SEEDED, seed)
    assert result.returncode == 0, result.stderr
    assert "packages: [htop]" in result.stdout and '"cluster": "tls"' in result.stdout
    # Verification is on: without the CA, cloud-init gets nothing.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    refused = run_cloud_init_process(READ_SEEDED, seed)
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    assert "htop" not in refused.stdout


def test_a_key_that_is_not_the_certificates_stops_the_start(pki, dsn):
    ca, cert, _, directory = pki
    _, other_key = ca.issue("other")
    env = dict(os.environ, CHAMICORE_DATABASE_URL=dsn, CHAMICORE_BOOT_LISTEN=f"127.0.0.1:{free_port()}",
               CHAMICORE_BOOT_TLS_LISTEN=f"127.0.0.1:{free_port()}", CHAMICORE_BOOT_TLS_CERT=str(cert),
               CHAMICORE_BOOT_TLS_KEY=str(other_key))
    result = subprocess.run([sys.executable, "-m", "cli.main", "serve", "boot"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert f"CHAMICORE_BOOT_TLS_KEY: {other_key} is not the key of the certificate in {cert}" in result.stderr
    secret = "".join(other_key.read_text().splitlines()[1:-1])
    assert secret[:40] not in result.stderr + result.stdout
    (directory / "missing.key").unlink(missing_ok=True)
    env["CHAMICORE_BOOT_TLS_KEY"] = str(directory / "missing.key")
    result = subprocess.run([sys.executable, "-m", "cli.main", "serve", "boot"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "CHAMICORE_BOOT_TLS_KEY: cannot read" in result.stderr
