"""UEFI HTTP boot, for real: OVMF's own HTTP boot client, Kea answering it with Chamicore's classes.

A network namespace holds a bridge with Kea on it and QEMU's tap; a veth
pair joins it to the test's namespace, where the boot path listens on the
veth's address (reachable only from that namespace).  OVMF (PXE turned off,
virtio-net with no option ROM, so that its own network stack boots) sends
DHCP with vendor class HTTPClient; Kea's chamicore-http-x86-64 class answers
with the URL of iPXE's EFI program on the boot path (/boot/v1/ipxe/ipxe.efi,
from Debian's `ipxe` package); iPXE runs, asks DHCP again as iPXE, gets
boot.ipxe, chains to the node's script, and asks for its kernel.
"""

import http.server
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time

import pytest

from sync.kea import client_classes
from tests.helpers.exposition import key, samples
from tests.helpers.netns import wait_link_up
from tests.helpers.paths import tmp_root
from tests.helpers.ports import free_port
from tests.helpers.seed import add_node, add_params
from tests.test_ipxe_qemu import OVMF, _Recorder

MAC = "52:54:00:12:34:58"
IPXE_DIR = "/usr/lib/ipxe"


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture
def lab():
    """(namespace, bridge, tap, the test side's address): a /24 of its own, torn down after."""
    if os.geteuid() != 0 or shutil.which("ip") is None or not os.path.exists("/dev/net/tun"):
        pytest.fail("this test needs root, iproute2 and /dev/net/tun")
    tag = secrets.token_hex(3)
    net = f"10.79.{secrets.randbelow(250) + 1}"
    ns, outside, inside, tap = f"cuefi-{tag}", f"vuo{tag}", f"vui{tag}", f"tap{tag}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        sh("ip", "link", "set", inside, "netns", ns)
        sh("ip", "addr", "add", f"{net}.1/24", "dev", outside)
        sh("ip", "link", "set", outside, "up")
        for command in (["link", "add", "br0", "type", "bridge"], ["tuntap", "add", tap, "mode", "tap"],
                        ["link", "set", inside, "master", "br0"], ["link", "set", tap, "master", "br0"],
                        ["addr", "add", f"{net}.2/24", "dev", "br0"], ["link", "set", inside, "up"],
                        ["link", "set", tap, "up"], ["link", "set", "br0", "up"]):
            sh("ip", "netns", "exec", ns, "ip", *command)
        # Kea gives up on a bridge that has no carrier yet (a second or so after its port came up).
        wait_link_up(ns, "br0")
        yield ns, tap, net
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# iPXE configures IPv6 too and waits some 15 s for a router advertisement no one sends on this bridge: an
# advertisement every second (no prefix, not a default router: nothing to configure) ends that wait.
ROUTER_ADVERTISEMENTS = """
import socket, struct, sys, time
sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)  # the kernel fills the checksum
index = socket.if_nametoindex(sys.argv[1])
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
while True:
    sock.sendto(struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 0, 0, 0), ("ff02::1", 0, 0, index))
    time.sleep(1)
"""


def start_kea(workdir, ns: str, net: str, boot_url: str) -> subprocess.Popen:
    config = workdir / "kea-dhcp4.conf"
    config.write_text(json.dumps({"Dhcp4": {
        # A Kea that cannot listen on br0 exits (and the test says so) instead of answering no one.
        "interfaces-config": {"interfaces": ["br0"], "dhcp-socket-type": "raw", "service-sockets-require-all": True},
        "lease-database": {"type": "memfile", "persist": False},
        "subnet4": [{"id": 1, "subnet": f"{net}.0/24", "interface": "br0",
                     "pools": [{"pool": f"{net}.100 - {net}.150"}]}],
        "client-classes": client_classes(boot_url, f"{net}.1"),
    }}))
    env = dict(os.environ, KEA_LOCKFILE_DIR=str(workdir), KEA_PIDFILE_DIR=str(workdir))
    with open(workdir / "kea-dhcp4.log", "wb") as log:
        return subprocess.Popen(["ip", "netns", "exec", ns, shutil.which("kea-dhcp4") or "/usr/sbin/kea-dhcp4",
                                 "-c", str(config)], env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.qemu
async def test_ovmf_http_boot_loads_ipxe_from_the_boot_path(conn, boot_server, lab):
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None or not os.path.exists(OVMF) or not os.path.exists(f"{IPXE_DIR}/ipxe.efi"):
        pytest.fail("needs qemu-system-x86, ovmf and ipxe: apt-get install -y qemu-system-x86 ovmf ipxe")
    ns, tap, net = lab
    seen: list = []
    images = http.server.ThreadingHTTPServer((f"{net}.1", free_port()),
                                             type("Recorder", (_Recorder,), {"seen": seen}))
    threading.Thread(target=images.serve_forever, daemon=True).start()
    images_url = f"http://{net}.1:{images.server_address[1]}"
    await add_node(conn, "node-uefi", [MAC], nid=43)
    await add_params(conn, "compute", role="Compute", kernel=f"{images_url}/images/{{{{id}}}}/vmlinuz",
                     initrd=f"{images_url}/images/{{{{id}}}}/initrd", cmdline="console=ttyS0")
    server = boot_server(host=f"{net}.1", CHAMICORE_IPXE_DIR=IPXE_DIR)
    workdir = tmp_root()
    kea = start_kea(workdir, ns, net, server.url)
    advertiser = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", ROUTER_ADVERTISEMENTS, "br0"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        console = boot_vm(qemu, ns, tap, seen, time.monotonic() + 150)
    finally:
        kea_exit = kea.poll()
        for process in (kea, advertiser):
            process.terminate()
            process.wait(timeout=10)
        images.shutdown()
        images.server_close()
        kea_log = (workdir / "kea-dhcp4.log").read_text(errors="replace")
        shutil.rmtree(workdir, ignore_errors=True)
    # OVMF says "Could not retrieve NBP file size from HTTP server" even when no DHCP offer came (then with no
    # "Station IP address" line before it): Kea's own account tells the two apart.
    assert seen, (f"the node never asked for its kernel; console:\n{console[-3000:]}\n"
                  f"kea-dhcp4 (exit status {kea_exit}, None while it ran):\n{kea_log[-2000:]}")
    assert seen[0][0] == "/images/node-uefi/vmlinuz" and seen[0][1].startswith("iPXE/")
    # OVMF's HTTP boot client loaded iPXE over HTTP, from the URL Kea's class gave.
    assert 'UEFI HTTPv4 (MAC:525400123458)' in console
    metrics = samples(server.get("/metrics")[2])
    assert metrics[key("chamicore_boot_requests_total", endpoint="other", outcome="ok")] >= 1  # ipxe.efi
    assert metrics[key("chamicore_boot_requests_total", endpoint="boot.ipxe", outcome="ok")] == 1
    assert metrics[key("chamicore_boot_requests_total", endpoint="bootscript", outcome="ok")] == 1


def boot_vm(qemu: str, ns: str, tap: str, seen: list, deadline: float) -> str:
    """Boots the VM until it asks for its kernel, falls through to the EFI shell, or the deadline; its
    console (read as it comes, so that QEMU never blocks on a full pipe)."""
    vm = subprocess.Popen(
        ["ip", "netns", "exec", ns, qemu, "-nographic", "-accel", "tcg", "-no-reboot", "-m", "512", "-bios", OVMF,
         # Only HTTP boot: OVMF's PXE clients would first wait for a TFTP server that is not there.
         "-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
         "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n",
         "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
         # No option ROM: OVMF's own virtio-net driver and network stack, not iPXE's ROM.
         "-device", f"virtio-net-pci,netdev=n0,mac={MAC},romfile=,bootindex=0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert vm.stdout is not None
    console = bytearray()
    reader = threading.Thread(target=_drain, args=(vm.stdout.fileno(), console), daemon=True)
    reader.start()
    try:
        while not seen and time.monotonic() < deadline and b"EFI Internal Shell" not in console:
            assert vm.poll() is None, "QEMU exited early"
            time.sleep(0.2)
    finally:
        vm.kill()
        vm.wait()
        reader.join(timeout=10)
        vm.stdout.close()
    return console.decode(errors="replace")


def _drain(fd: int, into: bytearray) -> None:
    while chunk := os.read(fd, 4096):
        into.extend(chunk)
