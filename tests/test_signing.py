"""Signed scripts: what the boot path serves beside each script verifies with OpenSSL's CMS verifier.

iPXE's `imgverify` cannot run here (Debian's iPXE lacks it, RECIPES.md), so `openssl cms -verify` checks
the same format: a detached DER signedData, the signer's certificate and chain inside, trusted through a
CA given apart (iPXE's is built in).  OpenSSL 3.0 has no code-signing purpose (`-purpose any`): the
codeSigning usage iPXE insists on is checked on the certificate the signature carries.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cli.errors import EXIT_CONFIG
from core.config import ConfigError, load_config
from core.signing import load_signer
from hotpath import _dispatch, _dispatch_py, _render
from hotpath.answers import AnswerBuilder, sign_entries
from hotpath.app import BootApp
from hotpath.index import Index
from tests.helpers.paths import ROOT
from tests.helpers.polling import wait_until
from tests.helpers.ports import free_port
from tests.helpers.seed import add_node, add_params
from tests.test_dispatch import NODES, PARAMS, PAYLOADS

MAC = "aa:bb:cc:00:00:01"


def _cert(subject: str, key, issuer: x509.Certificate | None, issuer_key, *, ca: bool, usages=()):
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.subject if issuer is not None else name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca,
                                            content_commitment=False, key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False, decipher_only=False),
                              critical=True))
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, *items) -> str:
    path.write_bytes(b"".join(
        item.public_bytes(serialization.Encoding.PEM) if isinstance(item, x509.Certificate)
        else item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        for item in items))
    return str(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A root CA (what a site builds into iPXE), an intermediate, and code-signing certificates under it."""
    directory = tmp_path_factory.mktemp("pki")
    root_key, inter_key = rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048)
    root = _cert("test root CA", root_key, None, root_key, ca=True)
    inter = _cert("test intermediate CA", inter_key, root, root_key, ca=True)
    key = rsa.generate_private_key(65537, 2048)
    signing = _cert("boot signer", key, inter, inter_key, ca=False, usages=[ExtendedKeyUsageOID.CODE_SIGNING])
    web = _cert("web server", key, inter, inter_key, ca=False, usages=[ExtendedKeyUsageOID.SERVER_AUTH])
    other_key = rsa.generate_private_key(65537, 2048)
    return {
        "ca": _pem(directory / "ca.pem", root), "chain": _pem(directory / "chain.pem", inter),
        "key": _pem(directory / "signing.key", key), "cert": _pem(directory / "signing.pem", signing),
        "web_cert": _pem(directory / "web.pem", web), "other_key": _pem(directory / "other.key", other_key),
        "ec_key": _pem(directory / "ec.key", ec.generate_private_key(ec.SECP256R1())), "dir": directory,
    }


def _env(pki, **overrides) -> dict:
    env = {"CHAMICORE_DATABASE_URL": "postgresql://unused/db", "CHAMICORE_BOOT_SIGNING_KEY": pki["key"],
           "CHAMICORE_BOOT_SIGNING_CERT": pki["cert"], "CHAMICORE_BOOT_SIGNING_CHAIN": pki["chain"]}
    env.update(overrides)
    return {name: value for name, value in env.items() if value is not None}


def verifies(pki, script: bytes, signature: bytes) -> bool:
    """OpenSSL's CMS verifier over this script and detached DER signature; its exit code only."""
    directory: Path = pki["dir"]
    (directory / "script").write_bytes(script)
    (directory / "script.sig").write_bytes(signature)
    result = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(directory / "script.sig"),
         "-content", str(directory / "script"), "-CAfile", pki["ca"], "-purpose", "any", "-out", "/dev/null"],
        capture_output=True, timeout=30)
    return result.returncode == 0


def assert_code_signing(signature: bytes) -> None:
    """What iPXE also insists on: the signer's certificate, inside the signature, is for code signing."""
    certs = pkcs7.load_der_pkcs7_certificates(signature)
    signer = next(c for c in certs if not c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    assert ExtendedKeyUsageOID.CODE_SIGNING in signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert len(certs) == 2  # the intermediate travels with it


def test_configuration_refuses_what_ipxe_would(pki):
    assert load_signer(load_config(_env(pki))) is not None
    assert load_signer(load_config(_env(pki, CHAMICORE_BOOT_SIGNING_KEY=None, CHAMICORE_BOOT_SIGNING_CERT=None,
                                        CHAMICORE_BOOT_SIGNING_CHAIN=None))) is None
    refusals = {
        "codeSigning": _env(pki, CHAMICORE_BOOT_SIGNING_CERT=pki["web_cert"]),
        "is not the certificate": _env(pki, CHAMICORE_BOOT_SIGNING_KEY=pki["other_key"]),
        "expected an RSA key": _env(pki, CHAMICORE_BOOT_SIGNING_KEY=pki["ec_key"]),
        "no PEM certificate": _env(pki, CHAMICORE_BOOT_SIGNING_CERT=pki["key"]),
        "cannot read": _env(pki, CHAMICORE_BOOT_SIGNING_CHAIN=str(pki["dir"] / "missing.pem")),
        "expected an unencrypted PEM private key": _env(pki, CHAMICORE_BOOT_SIGNING_KEY=pki["cert"]),
    }
    key_text = Path(pki["key"]).read_text()
    for expected, env in refusals.items():
        with pytest.raises(ConfigError) as raised:
            BootApp(load_config(env))  # refused when the boot path starts, before anything is served
        assert expected in str(raised.value) and "CHAMICORE_BOOT_SIGNING_" in str(raised.value)
        assert key_text.splitlines()[1] not in str(raised.value)
    with pytest.raises(ConfigError, match="go together"):
        load_config(_env(pki, CHAMICORE_BOOT_SIGNING_CERT=None))


def test_serve_boot_stops_before_listening_on_a_certificate_ipxe_refuses(pki):
    env = dict(os.environ, CHAMICORE_BOOT_LISTEN=f"127.0.0.1:{free_port()}",
               **_env(pki, CHAMICORE_BOOT_SIGNING_CERT=pki["web_cert"]))
    result = subprocess.run([sys.executable, "-m", "cli.main", "serve", "boot"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_CONFIG
    assert "CHAMICORE_BOOT_SIGNING_CERT: lacks the codeSigning extended key usage" in result.stderr
    secret = "".join(Path(pki["key"]).read_text().splitlines()[1:-1])
    assert secret[:40] not in result.stderr + result.stdout


@pytest.mark.parametrize("module", [_dispatch, _dispatch_py], ids=["compiled", "twin"])
def test_every_variant_is_signed_when_rendered(pki, module):
    """Host-derived and retry variants are rendered lazily: each one's .sig covers exactly its bytes."""
    signer = load_signer(load_config(_env(pki)))
    index = Index.from_answers(AnswerBuilder(None, 2.0, 60.0, signer).batch()(NODES, PARAMS, PAYLOADS))
    dispatcher = module.Dispatcher(index, None, "http://127.0.0.1:27778", 2.0, 60.0, 10)
    dispatcher.signer = signer
    for query in (f"mac={MAC}", f"mac={MAC}&retry=3", "name=node-1", "nid=1&retry=1"):
        for host in ("boot-a:8080", "boot-b"):
            script = dispatcher.dispatch("/boot/v1/bootscript", query, host)
            signature = dispatcher.dispatch("/boot/v1/bootscript.sig", query, host)
            assert script[0] == 200 and signature[:2] == (200, module.CT_SIGNATURE)
            assert verifies(pki, script[2], signature[2]), (query, host)
            if module is _dispatch:  # signed once, when rendered: the cached value is what the .sig serves
                entry = index.by_mac[MAC] if query.startswith("mac") else index.by_id["node-1"]
                assert signature[2] == signer.der(entry.cache[script[2]])
    assert not verifies(pki, dispatcher.dispatch("/boot/v1/bootscript", f"mac={MAC}&retry=3", "boot-a:8080")[2],
                        dispatcher.dispatch("/boot/v1/bootscript.sig", f"mac={MAC}", "boot-a:8080")[2])
    stage, stage_sig = (dispatcher.dispatch(path, "", "boot-a:8080")[2]
                        for path in ("/boot/v1/boot.ipxe", "/boot/v1/boot.ipxe.sig"))
    assert stage == _render.render_first_stage_signed("http://boot-a:8080") and verifies(pki, stage, stage_sig)
    # A node that must wait (disabled node-2, an unknown MAC) has no signature: boot.ipxe moves on.
    for query in ("mac=aa:bb:cc:00:00:03", "mac=02:00:00:00:00:99"):
        assert dispatcher.dispatch("/boot/v1/bootscript.sig", query, "boot-a")[:2] == (404, module.CT_PROBLEM)
    assert dispatcher.dispatch("/boot/v1/bootscript.sig", "mac=nonsense", "boot-a")[0] == 400


def test_a_profiles_own_script_is_signed_as_served(pki):
    """A profile's script template, rendered per node: the signature covers those bytes, retry included."""
    signer = load_signer(load_config(_env(pki)))
    batch = AnswerBuilder("http://b", 2.0, 60.0, signer).batch()
    batch.use_profiles([{"id": "scripted", "selector": {"role": "Compute"}, "kernel": "http://k/{{id}}",
                         "initrd": "", "cmdline": "quiet", "arches": {}, "user_data": None, "meta_data": None,
                         "vendor_data": None, "script": "#!ipxe\necho {{ id }} {{ groups | join(',') }}\n"
                                                        "kernel {{ kernel }} {{ params }} || goto retry\n"
                                                        "boot || goto retry\n"}])
    answers = batch([{**node, "labels": {}} for node in NODES], PARAMS, PAYLOADS)
    for share in batch.take_unsigned(1):
        sign_entries(signer, share)
    entry = Index.from_answers(answers).by_mac[MAC]
    assert entry.body.startswith(b"#!ipxe\necho node-1 rack1\nkernel http://k/node-1 quiet BOOTIF=01-aa-bb-cc")
    assert entry.body.endswith(b"\n:retry\nsleep 2\nexit 1\n")  # signed: back to boot.ipxe, never a chain
    assert verifies(pki, entry.body, signer.der(entry.signature))
    assert not verifies(pki, entry.body.replace(b"node-1 rack1", b"node-1 rack2"), signer.der(entry.signature))


@pytest.mark.parametrize("module", [_dispatch, _dispatch_py], ids=["compiled", "twin"])
def test_signing_off_changes_no_answer(pki, module):
    signer = load_signer(load_config(_env(pki)))
    batch = AnswerBuilder("http://b", 2.0, 60.0, signer).batch()
    signed = Index.from_answers(batch(NODES, PARAMS, PAYLOADS))
    for share in batch.take_unsigned(2):  # what the feed runs in worker threads before it publishes
        sign_entries(signer, share)
    rendered = [entry for entry in signed.by_mac.values() if entry.body is not None]
    assert rendered and all(entry.signature is not None for entry in rendered)
    # A reload whose scripts come out the same signs nothing again.
    again = AnswerBuilder("http://b", 2.0, 60.0, signer).batch(signed)
    assert Index.from_answers(again(NODES, PARAMS, PAYLOADS)).by_mac[MAC].signature is signed.by_mac[MAC].signature
    assert again.take_unsigned(2) == []
    plain = Index.from_answers(AnswerBuilder("http://b", 2.0, 60.0).batch()(NODES, PARAMS, PAYLOADS))
    assert all(entry.signature is None for entry in plain.by_mac.values())
    on = module.Dispatcher(signed, "http://b", "http://b", 2.0, 60.0, 10)
    on.signer = signer
    off = module.Dispatcher(plain, "http://b", "http://b", 2.0, 60.0, 10)
    assert on.dispatch("/boot/v1/bootscript.sig", f"mac={MAC}", "")[2] == signer.der(signed.by_mac[MAC].signature)
    for query in (f"mac={MAC}", f"mac={MAC}&retry=2", "name=node-1", "mac=aa:bb:cc:00:00:03"):
        signed_body, plain_body = (d.dispatch("/boot/v1/bootscript", query, "")[2] for d in (on, off))
        if b"kernel" in plain_body:  # the same script, but for its retry: back to boot.ipxe, not a chain
            assert signed_body == plain_body[:plain_body.rindex(b"chain ")] + b"exit 1\n"
        else:
            assert signed_body == plain_body  # a script that says wait is the same (and never signed)
    assert off.dispatch("/boot/v1/boot.ipxe", "", "")[2] == _render.render_first_stage("http://b")
    for path, query in (("/boot/v1/bootscript.sig", f"mac={MAC}"), ("/boot/v1/boot.ipxe.sig", "")):
        status, ct, body, *_ = off.dispatch(path, query, "")
        assert (status, ct) == (404, module.CT_PROBLEM) and b"not signed" in body


async def test_boot_path_serves_verifiable_signatures_and_re_signs_edits(pki, conn, boot_server):
    await add_node(conn, "n1", [MAC])
    await add_params(conn, "compute", role="Compute", kernel="http://images/vmlinuz-1", initrd="http://images/initrd")
    server = boot_server(CHAMICORE_BOOT_URL="http://boot.example:27778", **_env(pki, CHAMICORE_DATABASE_URL=None))
    for path in (f"/boot/v1/bootscript?mac={MAC}", f"/boot/v1/bootscript?mac={MAC}&retry=2", "/boot/v1/boot.ipxe"):
        status, _, script = server.get(path)
        sig_path = path.replace("/bootscript?", "/bootscript.sig?").replace("boot.ipxe", "boot.ipxe.sig")
        sig_status, headers, signature = server.get(sig_path)
        assert (status, sig_status, headers["content-type"]) == (200, 200, "application/pkcs7-signature")
        assert verifies(pki, script, signature), path
        assert_code_signing(signature)
        tampered = bytearray(script)
        tampered[len(tampered) // 2] ^= 0x01
        assert not verifies(pki, bytes(tampered), signature), path
    script = server.get(f"/boot/v1/bootscript?mac={MAC}")[2]
    assert script.endswith(b"exit 1\n") and b"chain" not in script  # retries go back through boot.ipxe
    stage = server.get("/boot/v1/boot.ipxe")[2].decode()
    assert "imgverify script http://boot.example:27778/boot/v1/bootscript.sig?${query}" in stage
    status, headers, body = server.get("/boot/v1/bootscript.sig?mac=02:00:00:00:00:99")
    assert (status, headers["content-type"]) == (404, "application/problem+json")

    old_script = server.get(f"/boot/v1/bootscript?mac={MAC}")[2]
    old_signature = server.get(f"/boot/v1/bootscript.sig?mac={MAC}")[2]
    await conn.execute("UPDATE bss.boot_params SET kernel = 'http://images/vmlinuz-2' WHERE id = 'compute'")

    def edited() -> bytes | None:
        body = server.get(f"/boot/v1/bootscript?mac={MAC}")[2]
        return body if b"vmlinuz-2" in body else None

    new_script = wait_until(edited)
    new_signature = server.get(f"/boot/v1/bootscript.sig?mac={MAC}")[2]
    assert new_script != old_script and verifies(pki, new_script, new_signature)
    assert not verifies(pki, new_script, old_signature)
