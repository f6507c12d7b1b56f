"""systemd's readiness protocol (sd_notify), for units of Type=notify.

A no-op outside systemd (NOTIFY_SOCKET unset).  Each service says READY=1
only once it can really serve: the boot path after its first full index
load, the admin API once its pool and signing keys are up, the sync daemons
once their jobs run.  Granian workers are child processes, so the units set
NotifyAccess=all.
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1", "STATUS=loading") to systemd; False when not under systemd or it fails."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError:
        return False
