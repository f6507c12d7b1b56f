"""Detached CMS signatures of boot scripts, in the form iPXE's `imgverify` checks.

iPXE (src/crypto/cms.c) reads a DER `signedData` whose certificates include
the signer's (found by issuer and serial number) and any intermediates up to
a CA built into iPXE; the signer needs the codeSigning extended key usage.
It skips signed attributes and digests the script itself, so the signature
is made without attributes (PKCS7Options.NoAttributes), over SHA-256.

Without attributes, and with RSA PKCS#1 v1.5 (deterministic, always as long
as the modulus), every signature by one key is the same DER bytes up to the
signature value, which comes last.  So the boot path keeps only that value
per script (256 bytes for RSA-2048) and serves `head + value`; the head is
made once by `cryptography`'s PKCS7SignatureBuilder and checked to end where
the value starts.  iPXE verifies RSA everywhere; ECDSA only in its newest
releases, so RSA keys only.

The key file is a secret: its bytes and the key never reach a log, an error
message or an answer (the problems name only the setting and the file).
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID

from core.config import Config, ConfigError

MIN_RSA_BITS = 2048
MAX_FILE_BYTES = 1 << 20
_OPTIONS = (pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.NoAttributes, pkcs7.PKCS7Options.Binary)


class ScriptSigner:
    """Signs boot scripts with one code-signing key."""

    __slots__ = ("_key", "head")

    def __init__(self, key: rsa.RSAPrivateKey, head: bytes) -> None:
        self._key = key
        self.head = head  # the DER of every signature by this key, up to the signature value

    def __repr__(self) -> str:
        return "ScriptSigner()"

    def value(self, script: bytes) -> bytes:
        """The signature value of one script: what an index entry keeps."""
        return self._key.sign(script, padding.PKCS1v15(), hashes.SHA256())

    def der(self, value: bytes) -> bytes:
        """The detached CMS signature (DER) around a value made by value()."""
        return self.head + value

    def sign(self, script: bytes) -> bytes:
        return self.head + self.value(script)


def _read(name: str, path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(name, f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(name, f"{path} is larger than {MAX_FILE_BYTES} bytes")
    return data


def _certificates(name: str, path: str) -> list[x509.Certificate]:
    data = _read(name, path)  # outside the try: a ConfigError is a ValueError too
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(name, f"{path} holds no PEM certificate") from None
    return certs


def make_signer(key_pem: bytes, cert: x509.Certificate, chain: list[x509.Certificate],
                now: datetime.datetime | None = None) -> ScriptSigner:
    """A signer for this key, certificate and chain; ConfigError naming what iPXE would refuse."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (TypeError, ValueError):
        # The message says nothing of the key's content (an encrypted key is a TypeError).
        raise ConfigError("BOOT_SIGNING_KEY", "expected an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_RSA_BITS:
        raise ConfigError("BOOT_SIGNING_KEY", f"expected an RSA key of at least {MIN_RSA_BITS} bits "
                          "(what every iPXE build verifies)")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, public)
            != cert.public_key().public_bytes(serialization.Encoding.DER, public)):
        raise ConfigError("BOOT_SIGNING_CERT", "is not the certificate of CHAMICORE_BOOT_SIGNING_KEY")
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is None or ExtendedKeyUsageOID.CODE_SIGNING not in usages:
        raise ConfigError("BOOT_SIGNING_CERT", "lacks the codeSigning extended key usage (iPXE refuses its "
                          "signatures: 'Not a code-signing certificate')")
    now = now or datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ConfigError("BOOT_SIGNING_CERT", f"is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
                          f"to {cert.not_valid_after_utc:%Y-%m-%d})")
    builder = pkcs7.PKCS7SignatureBuilder().set_data(b"").add_signer(cert, key, hashes.SHA256())
    for extra in chain:
        builder = builder.add_certificate(extra)
    empty = builder.sign(serialization.Encoding.DER, _OPTIONS)
    value = key.sign(b"", padding.PKCS1v15(), hashes.SHA256())
    if not empty.endswith(value):  # the layout the module docstring relies on
        raise ConfigError("BOOT_SIGNING_KEY", "this key's CMS signatures do not end with their value")
    return ScriptSigner(key, empty[: -len(value)])


def load_signer(config: Config) -> ScriptSigner | None:
    """The boot path's signer from CHAMICORE_BOOT_SIGNING_*; None when signing is off."""
    if not config.boot_signing_key or not config.boot_signing_cert:
        return None
    certs = _certificates("BOOT_SIGNING_CERT", config.boot_signing_cert)
    chain = _certificates("BOOT_SIGNING_CHAIN", config.boot_signing_chain) if config.boot_signing_chain else []
    # A certificate file may carry its intermediates after it, as TLS files do.
    return make_signer(_read("BOOT_SIGNING_KEY", config.boot_signing_key), certs[0], certs[1:] + chain)
