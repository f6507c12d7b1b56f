"""Links the tests make in network namespaces: waiting until they can carry traffic."""

from __future__ import annotations

import json
import subprocess

from tests.helpers.polling import wait_until


def wait_link_up(ns: str, ifname: str, timeout: float = 10.0) -> None:
    """Wait until `ifname` in namespace `ns` is operationally up (the kernel's RUNNING flag).

    A link's carrier reaches its operational state through the kernel's link-watch work, which runs a
    bridge's change at most once a second (later on a busy machine): a bridge set up a moment ago is
    still NO-CARRIER, and a kea-dhcp4 started then skips it ("the interface br0 is not running") and
    never answers on it, even once it comes up.
    """
    def is_up() -> bool:
        shown = subprocess.run(["ip", "-n", ns, "-j", "link", "show", "dev", ifname],
                               check=True, capture_output=True, text=True).stdout
        return json.loads(shown)[0]["operstate"] == "UP"

    wait_until(is_up, timeout=timeout, interval=0.05)
