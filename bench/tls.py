"""The boot path over HTTPS against HTTP: one `chamicore serve boot` serving both listeners, in one run.

    python -m bench.tls [--nodes 10000] [--duration 10] [--rounds 2] [--connections 1000]

Starts a private PostgreSQL with N registered nodes and the boot path with
its HTTPS listener (a throwaway self-signed certificate), one worker per
listener pinned to CPU 0, wrk on CPU 1.  wrk asks the bootstorm mix (a
bootscript or a cloud-init document) over http and https in turn, `--rounds`
times, on kept-alive connections (each pays one TLS handshake, then only
encryption).  Prints a Markdown table and writes bench/results/tls-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.bootstorm import BASE_URL, RESULTS, WRK_SCRIPT, Server, cpus, free_port, prepare_database
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "boot.pem", directory / "boot.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def wait_tls(port: int, cafile: Path, timeout: float = 60) -> None:
    context = ssl.create_default_context(cafile=str(cafile))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
                    context.wrap_socket(raw, server_hostname="127.0.0.1"):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"no TLS listener on {port}")


def wrk(url: str, nodes: int, connections: int, duration: int, prefix: list[str], workdir: Path) -> dict:
    script = workdir / "mix.lua"
    script.write_text(WRK_SCRIPT % {"nodes": nodes})
    out = subprocess.run([*prefix, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s",
                          "-s", str(script), url], capture_output=True, text=True).stdout
    [line] = [line for line in out.splitlines() if line.startswith("WRK_JSON ")]
    figures = json.loads(line.removeprefix("WRK_JSON "))
    return {"req_per_s": round(figures["requests"] / (figures["duration_us"] / 1e6)),
            "p50_ms": round(figures["p50_us"] / 1000, 2), "p99_ms": round(figures["p99_us"] / 1000, 2),
            "errors": figures["socket_errors"] + figures["non_2xx"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per run")
    parser.add_argument("--rounds", type=int, default=2, help="http/https pairs, alternated")
    parser.add_argument("--connections", type=int, default=1000)
    args = parser.parse_args()
    server_cpu, client_cpu = cpus()
    work = Path(tempfile.mkdtemp(prefix="chamicore-bench-tls-", dir="/tmp"))
    work.chmod(0o711)  # the PostgreSQL service user must reach its cluster below
    cluster = EmbeddedPostgres(work / "pg", port=free_port(), bin_dir=pgserver_bin_dir() or system_bin_dir(),
                               durable=False)
    cluster.start()
    runs: list[dict] = []
    try:
        asyncio.run(prepare_database(cluster, args.nodes))
        cert, key = self_signed(work)
        http_port, https_port = free_port(), free_port()
        env = {"CHAMICORE_DATABASE_URL": cluster.dsn, "CHAMICORE_LOG_LEVEL": "warning", "CHAMICORE_BOOT_WORKERS": "1",
               "CHAMICORE_BOOT_LISTEN": f"127.0.0.1:{http_port}", "CHAMICORE_BOOT_URL": BASE_URL,
               "CHAMICORE_BOOT_TLS_LISTEN": f"127.0.0.1:{https_port}", "CHAMICORE_BOOT_TLS_URL": "https://boot",
               "CHAMICORE_BOOT_TLS_CERT": str(cert), "CHAMICORE_BOOT_TLS_KEY": str(key)}
        # taskset on `serve boot` pins both listeners' processes (children inherit the CPU set).
        with Server("boot path, http and https", [*server_cpu, sys.executable, "-m", "cli.main", "serve", "boot"],
                    http_port, "/readiness", env):
            wait_tls(https_port, cert)
            for round_ in range(args.rounds):
                for scheme, port in (("http", http_port), ("https", https_port)):
                    figures = wrk(f"{scheme}://127.0.0.1:{port}", args.nodes, args.connections, args.duration,
                                  client_cpu, work)
                    runs.append({"round": round_ + 1, "scheme": scheme, **figures})
                    print(f"   round {round_ + 1} {scheme}: {figures}", flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"tls-{stamp}.json").write_text(json.dumps({"nodes": args.nodes, "connections": args.connections,
                                                           "duration": args.duration, "runs": runs}, indent=2))
    print("\n| round | scheme | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|")
    for run in runs:
        print(f"| {run['round']} | {run['scheme']} | {run['req_per_s']:,} | {run['p50_ms']} | {run['p99_ms']} | "
              f"{run['errors']} |")
    for round_ in range(1, args.rounds + 1):
        pair = {r["scheme"]: r["req_per_s"] for r in runs if r["round"] == round_}
        print(f"round {round_}: https/http = {pair['https'] / pair['http']:.2f}")


if __name__ == "__main__":
    main()
