"""Secrets at rest: keys from settings or key files, AES-GCM boxes, slow password hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# scrypt cost: about 50 ms and 16 MiB per check on this class of machine, on purpose.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class SecretKeyMissing(RuntimeError):
    def __init__(self, setting: str) -> None:
        self.setting = setting
        super().__init__(f"CHAMICORE_{setting} (or CHAMICORE_{setting}_FILE) is not set")


def read_key(value: str | None, file: str | None, setting: str) -> str:
    """The key material from the setting itself or from the file it names."""
    if value:
        return value
    if file:
        return Path(file).read_text().strip()
    raise SecretKeyMissing(setting)


def create_key_file(path: Path) -> Path:
    """A new random key, readable by its owner only; an existing file is kept."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
    return path


class SecretBox:
    """AES-256-GCM with a key derived (HKDF) from the configured secret and a purpose."""

    def __init__(self, secret: str, purpose: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=f"chamicore:{purpose}".encode()).derive(secret.encode())
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], context.encode())
        except InvalidTag:
            raise ValueError("cannot decrypt: wrong key or tampered data") from None


def device_credentials_box(config) -> SecretBox | None:
    """The box BMC and device credentials are sealed in, or None when no key is configured."""
    try:
        return SecretBox(read_key(config.credentials_key, config.credentials_key_file, "CREDENTIALS_KEY"),
                         "device-credentials")
    except SecretKeyMissing:
        return None


def hash_secret(secret: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return "$".join(("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()))


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                  dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, base64.b64decode(digest))
