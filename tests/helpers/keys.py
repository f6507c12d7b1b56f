"""The one pair of test keys: token signing and BMC credential sealing."""

from __future__ import annotations

from core.config import load_config
from core.crypto import device_credentials_box

SECRET_KEY = "test-signing-key-0123456789abcdef"
CREDENTIALS_KEY = "test-credentials-key-0123456789abcdef"
SECRETS = {"CHAMICORE_SECRET_KEY": SECRET_KEY, "CHAMICORE_CREDENTIALS_KEY": CREDENTIALS_KEY}


def box():
    """What the product seals BMC secrets with, under the test credentials key."""
    return device_credentials_box(load_config(SECRETS))
