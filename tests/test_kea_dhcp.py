"""A real DHCP exchange: busybox udhcpc in one network namespace gets the reserved
address and boot file from kea-dhcp4 in another, after the sync pushed the reservation.

kea-dhcp4 runs inside the server namespace; its control socket is a file, so the
control agent (and the sync) stay in the test's own namespace on 127.0.0.1.
"""

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import time

import pytest

from sync.kea import KeaSync
from tests.helpers.netns import wait_link_up
from tests.helpers.paths import tmp_root
from tests.helpers.ports import free_port
from tests.helpers.seed import add_node
from tests.helpers.tasks import stop_task

MAC = "52:54:00:d4:c9:01"


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture
def dhcp_network():
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("busybox") is None:
        pytest.fail("this test needs root, iproute2 and busybox (make test installs them)")
    tag = secrets.token_hex(3)
    server_ns, client_ns = f"ckea-s-{tag}", f"ckea-c-{tag}"
    server_if, client_if = f"vks{tag}", f"vkc{tag}"
    sh("ip", "netns", "add", server_ns)
    sh("ip", "netns", "add", client_ns)
    try:
        sh("ip", "link", "add", server_if, "type", "veth", "peer", "name", client_if)
        sh("ip", "link", "set", server_if, "netns", server_ns)
        sh("ip", "link", "set", client_if, "netns", client_ns)
        sh("ip", "netns", "exec", server_ns, "ip", "addr", "add", "10.77.0.1/24", "dev", server_if)
        sh("ip", "netns", "exec", server_ns, "ip", "link", "set", server_if, "up")
        sh("ip", "netns", "exec", client_ns, "ip", "link", "set", client_if, "address", MAC)
        sh("ip", "netns", "exec", client_ns, "ip", "link", "set", client_if, "up")
        wait_link_up(server_ns, server_if)  # Kea skips, for good, a link not yet running when it starts
        yield server_ns, client_ns, server_if, client_if
    finally:
        subprocess.run(["ip", "netns", "del", server_ns], capture_output=True)
        subprocess.run(["ip", "netns", "del", client_ns], capture_output=True)


def start_kea(workdir, server_ns, server_if):
    socket_path = str(workdir / "kea4.sock")
    dhcp = workdir / "dhcp4.conf"
    dhcp.write_text(json.dumps({"Dhcp4": {
        "interfaces-config": {"interfaces": [server_if], "dhcp-socket-type": "raw"},
        "control-socket": {"socket-type": "unix", "socket-name": socket_path},
        "lease-database": {"type": "memfile", "persist": False},
        "subnet4": [{"id": 7, "subnet": "10.77.0.0/24", "interface": server_if,
                     "pools": [{"pool": "10.77.0.100 - 10.77.0.150"}]}],
    }}))
    port = free_port()
    agent = workdir / "agent.conf"
    agent.write_text(json.dumps({"Control-agent": {"http-host": "127.0.0.1", "http-port": port, "control-sockets": {
        "dhcp4": {"socket-type": "unix", "socket-name": socket_path}}}}))
    env = dict(os.environ, KEA_LOCKFILE_DIR=str(workdir), KEA_PIDFILE_DIR=str(workdir))
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, shutil.which("kea-dhcp4") or "/usr/sbin/kea-dhcp4",
                               "-c", str(dhcp)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    agent_process = subprocess.Popen([shutil.which("kea-ctrl-agent") or "/usr/sbin/kea-ctrl-agent", "-c", str(agent)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return f"http://127.0.0.1:{port}/", [server, agent_process]


def udhcpc(client_ns, client_if, workdir, *extra) -> dict:
    out = workdir / f"lease-{secrets.token_hex(2)}.json"
    script = workdir / "udhcpc.sh"
    script.write_text('#!/bin/sh\n[ "$1" = bound ] || exit 0\n'
                      f'printf \'{{"ip":"%s","boot_file":"%s","siaddr":"%s","hostname":"%s","vendor":"%s"}}\' '
                      f'"$ip" "$boot_file" "$siaddr" "$hostname" "$vendor" > {out}\n')
    script.chmod(0o755)
    subprocess.run(["ip", "netns", "exec", client_ns, "busybox", "udhcpc", "-i", client_if, "-f", "-q", "-n",
                    "-t", "5", "-T", "1", "-s", str(script), *extra], capture_output=True, timeout=30)
    return json.loads(out.read_text()) if out.exists() else {}


async def test_a_real_client_gets_its_reserved_address_and_boot_file(conn, dsn, dhcp_network):
    server_ns, client_ns, server_if, client_if = dhcp_network
    workdir = tmp_root() / "kea-dhcp"
    workdir.mkdir(parents=True)
    kea_url, processes = start_kea(workdir, server_ns, server_if)
    sync = KeaSync(dsn, kea_url, "http://10.77.0.1:27778", next_server="10.77.0.1",
                   efi_url="https://10.77.0.1:27780/boot/v1/ipxe")
    task = asyncio.create_task(sync.run())
    try:
        await add_node(conn, "node-dhcp", [MAC], ips=["10.77.0.42"])
        deadline = time.monotonic() + 20
        while sync.reservations < 1 or sync.pushes < 1:
            assert time.monotonic() < deadline, f"the sync never pushed: {sync.last_error}"
            await asyncio.sleep(0.1)
        firmware = await asyncio.to_thread(udhcpc, client_ns, client_if, workdir)
        assert firmware.get("ip") == "10.77.0.42", firmware
        assert firmware["boot_file"] == "undionly.kpxe" and firmware["siaddr"] == "10.77.0.1"
        # The same machine once iPXE runs: user class (option 77) "iPXE".
        ipxe = await asyncio.to_thread(udhcpc, client_ns, client_if, workdir, "-x", "0x4d:69505845")
        assert ipxe.get("ip") == "10.77.0.42" and ipxe["boot_file"] == "http://10.77.0.1:27778/boot/v1/boot.ipxe"
        # UEFI HTTP boot firmware: vendor class HTTPClient and its architecture (option 93, 0x5d) get the URL of
        # iPXE's EFI program for it, and option 60 "HTTPClient" back (busybox calls it `vendor`), unasked.
        for arch, program in (("0010", "ipxe.efi"), ("0013", "ipxe-arm64.efi")):
            uefi = await asyncio.to_thread(udhcpc, client_ns, client_if, workdir, "-V",
                                           f"HTTPClient:Arch:000{int(arch, 16)}:UNDI:003001", "-x", f"0x5d:{arch}")
            assert uefi.get("ip") == "10.77.0.42", uefi
            assert uefi["boot_file"] == f"https://10.77.0.1:27780/boot/v1/ipxe/{program}"
            assert uefi["vendor"] == "HTTPClient", uefi
        # UEFI PXE firmware (arch 0x0007) still gets the TFTP file.
        pxe = await asyncio.to_thread(udhcpc, client_ns, client_if, workdir, "-V", "PXEClient:Arch:00007:UNDI:003016",
                                      "-x", "0x5d:0007")
        assert pxe["boot_file"] == "ipxe.efi" and pxe["siaddr"] == "10.77.0.1" and pxe["vendor"] == ""
    finally:
        await stop_task(task)
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
