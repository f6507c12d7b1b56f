"""Where things are: the repository, and fresh scratch directories."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tmp_root() -> Path:
    """A new scratch directory for a test's servers."""
    # Outside /root, and traversable: the cluster runs as an unprivileged user when we are root,
    # and the product leaves the modes of directories above its data alone.
    base = Path(os.environ.get("CHAMICORE_TEST_TMP", "/tmp"))
    root = Path(tempfile.mkdtemp(prefix="chamicore-test-", dir=base))
    root.chmod(0o711)
    return root
