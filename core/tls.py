"""The boot path's TLS certificate and key, checked before anything listens.

granian reads the files itself; a wrong pair would only show as failed
handshakes.  Checked here instead: both files readable, the certificate a
PEM certificate, the key an unencrypted PEM private key whose public half is
the certificate's.  Errors name the setting and the file, never the key's
contents.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from core.config import ConfigError


def _read(setting: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc.strerror}") from None


def check_certificate(cert_path: str, key_path: str) -> x509.Certificate:
    """The listener's certificate (the first of the file); ConfigError when the pair cannot serve TLS."""
    cert_pem, key_pem = _read("BOOT_TLS_CERT", cert_path), _read("BOOT_TLS_KEY", key_path)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ConfigError("BOOT_TLS_CERT", f"{cert_path} does not start with a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ConfigError("BOOT_TLS_KEY", f"{key_path} is encrypted; give the key unencrypted (and keep the file "
                                          "0600)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError("BOOT_TLS_KEY", f"{key_path} is not a PEM private key") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, spki)
            != cert.public_key().public_bytes(serialization.Encoding.DER, spki)):
        raise ConfigError("BOOT_TLS_KEY", f"{key_path} is not the key of the certificate in {cert_path}")
    return cert


def expiry_warning(cert: x509.Certificate, now: datetime.datetime | None = None) -> str | None:
    """What is wrong with the certificate's validity period now, if anything."""
    now = now or datetime.datetime.now(datetime.UTC)
    if now > cert.not_valid_after_utc:
        return f"the boot path's TLS certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if now < cert.not_valid_before_utc:
        return f"the boot path's TLS certificate is valid only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    return None
