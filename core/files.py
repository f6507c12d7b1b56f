"""Files that hold secrets: written whole, readable by their owner only."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_private(path: Path, text: str) -> Path:
    """Replace `path` with `text`, mode 0600, atomically.

    The text goes to a new file made with O_EXCL | O_NOFOLLOW (never an
    existing file, whatever its mode, nor a file a symlink points at), which
    is then renamed over `path`: a reader sees the old file or the new one,
    and an existing 0644 file is replaced rather than reused with its mode.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
