"""iPXE's EFI programs, served by the boot path to UEFI HTTP boot clients.

Kea's HTTPClient classes (sync/kea.py) hand a UEFI HTTP boot client the URL
of an EFI program to load; unless CHAMICORE_EFI_URL names another server,
that is the boot path's /boot/v1/ipxe/<name>, from CHAMICORE_IPXE_DIR
(Debian's `ipxe` package: /usr/lib/ipxe/ipxe.efi and snponly.efi).  They are
read once when a worker starts, so a request for one is a dict lookup like
every other answer; a program replaced on disk is served after a restart.
"""

from __future__ import annotations

import logging
import os
import re

log = logging.getLogger("chamicore.hotpath")

PATH_PREFIX = "/boot/v1/ipxe/"
MAX_BYTES = 32 * 1024 * 1024  # iPXE's EFI builds are 0.2-1.5 MB: anything far larger is not one
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}\.efi")


def load_programs(directory: str) -> dict[str, bytes]:
    """{"/boot/v1/ipxe/<name>": contents} for every readable *.efi file in `directory` (symlinks followed)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        log.info("no EFI programs to serve: %s does not exist (CHAMICORE_IPXE_DIR)", directory)
        return {}
    except OSError as exc:
        log.warning("no EFI programs to serve: cannot list %s (CHAMICORE_IPXE_DIR): %s", directory, exc.strerror)
        return {}
    programs: dict[str, bytes] = {}
    for entry in entries:
        if not _NAME.fullmatch(entry.name):
            continue
        try:
            if not entry.is_file():
                continue
            if entry.stat().st_size > MAX_BYTES:
                log.warning("not serving %s: larger than %d bytes", entry.path, MAX_BYTES)
                continue
            with open(entry.path, "rb") as program:
                programs[PATH_PREFIX + entry.name] = program.read(MAX_BYTES)
        except OSError as exc:
            log.warning("not serving %s: %s", entry.path, exc.strerror)
    if programs:
        log.info("serving %d EFI programs from %s at %s", len(programs), directory, PATH_PREFIX)
    return programs
