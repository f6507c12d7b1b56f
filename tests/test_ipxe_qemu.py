"""Real iPXE firmware, in QEMU, boots against the boot path.

The guest reaches the host's 127.0.0.1 as 10.0.2.2 (QEMU user networking).
It fetches boot.ipxe (the DHCP bootfile), chains to its own script with the
MAC QEMU gave its NIC, and then asks for the kernel that script names.
On BIOS (SeaBIOS and the NIC's iPXE ROM) and on UEFI (OVMF and the NIC's
iPXE EFI ROM).
"""

import http.server
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from tests.helpers.exposition import key, samples
from tests.helpers.ports import free_port
from tests.helpers.seed import add_node, add_params
from tests.test_profiles import add_profile

MAC = "52:54:00:12:34:56"
OVMF = "/usr/share/ovmf/OVMF.fd"


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.seen.append((self.path, self.headers.get("User-Agent", "")))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


async def boot_to_the_kernel_request(conn, boot_server, *firmware: str, prepare=None) -> tuple:
    """Boot QEMU (its firmware chosen by `firmware`) against the boot path until iPXE asks for the kernel:
    (boot server, [(path, User-Agent)] of the requests to the image server, console).  `prepare(conn,
    images_url)` adds to the seeded data before the boot path starts."""
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        pytest.fail("QEMU is not installed: apt-get install -y qemu-system-x86 ipxe-qemu (make test does it)")
    images_port = free_port()
    seen: list = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    images = http.server.ThreadingHTTPServer(("127.0.0.1", images_port), handler)
    threading.Thread(target=images.serve_forever, daemon=True).start()

    await add_node(conn, "node-qemu", [MAC], nid=42)
    await add_params(conn, "compute", role="Compute",
                     kernel=f"http://10.0.2.2:{images_port}/images/{{{{id}}}}/vmlinuz",
                     initrd=f"http://10.0.2.2:{images_port}/images/{{{{id}}}}/initrd", cmdline="console=ttyS0")
    if prepare is not None:
        await prepare(conn, f"http://10.0.2.2:{images_port}")
    server = boot_server()
    vm = subprocess.Popen(
        [qemu, "-nographic", "-accel", "tcg", "-no-reboot", *firmware,
         "-netdev", f"user,id=n0,bootfile=http://10.0.2.2:{server.port}/boot/v1/boot.ipxe",
         "-device", f"e1000,netdev=n0,mac={MAC},bootindex=0", "-boot", "n"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not any("vmlinuz" in path for path, _ in seen) and time.monotonic() < deadline:
            assert vm.poll() is None, "QEMU exited early"
            time.sleep(0.2)
    finally:
        vm.kill()
        console = vm.communicate()[0].decode(errors="replace")
        images.shutdown()
        images.server_close()
    return server, seen, console


@pytest.mark.qemu
async def test_ipxe_boots_to_the_kernel_request(conn, boot_server):
    server, seen, console = await boot_to_the_kernel_request(conn, boot_server, "-m", "256")
    assert seen, "iPXE never asked for the kernel; console:\n" + console[-3000:]
    path, agent = seen[0]
    # The node's own script was used: the kernel URL carries its component id.
    assert path == "/images/node-qemu/vmlinuz"
    assert agent.startswith("iPXE/")

    metrics = samples(server.get("/metrics")[2])
    assert metrics[key("chamicore_boot_requests_total", endpoint="boot.ipxe", outcome="ok")] == 1
    assert metrics[key("chamicore_boot_requests_total", endpoint="bootscript", outcome="ok")] == 1
    row = None
    for _ in range(50):
        row = await conn.fetchrow("SELECT endpoint, source_ip FROM bss.boot_telemetry WHERE component_id = 'node-qemu'")
        if row:
            break
        time.sleep(0.1)
    assert row and row["endpoint"] == "bootscript"


@pytest.mark.qemu
async def test_uefi_ipxe_boots_to_the_kernel_request(conn, boot_server):
    # OVMF (UEFI) runs the NIC's iPXE EFI ROM, which follows boot.ipxe like the BIOS one.
    if not os.path.exists(OVMF):
        pytest.fail("OVMF is not installed: apt-get install -y ovmf (make test does it)")
    server, seen, console = await boot_to_the_kernel_request(conn, boot_server, "-bios", OVMF, "-m", "512")
    assert seen, "UEFI iPXE never asked for the kernel; console:\n" + console[-3000:]
    assert seen[0][0] == "/images/node-qemu/vmlinuz" and seen[0][1].startswith("iPXE/")
    assert re.search(r"Features:[^\n]* EFI\b", console)  # iPXE's EFI build ran, not the BIOS one
    metrics = samples(server.get("/metrics")[2])
    assert metrics[key("chamicore_boot_requests_total", endpoint="boot.ipxe", outcome="ok")] == 1
    assert metrics[key("chamicore_boot_requests_total", endpoint="bootscript", outcome="ok")] == 1


PROFILE_SCRIPT = """#!ipxe
echo Chamicore profile {{ profile }} for {{ id }} ({{ labels.tier }})
{% for group in groups %}imgfetch {{ images }}/marker/{{ group }} || echo no marker for {{ group }}
{% endfor %}echo args: {{ params }}
kernel {{ kernel }} {{ params }} tier={{ labels.tier }} || goto retry
initrd {{ initrd }} || goto retry
boot || goto retry
"""


@pytest.mark.qemu
async def test_ipxe_runs_a_profiles_script_template(conn, boot_server):
    # The node's profile brings its own iPXE script, a template rendered for the node when the index is built;
    # iPXE runs it: the loop over the node's groups fetches a marker per group, then the profile's kernel.
    async def prepare(conn, images_url):
        await conn.execute("""UPDATE smd.components SET labels = '{"tier": "prod"}' WHERE id = 'node-qemu'""")
        await conn.execute("INSERT INTO smd.groups (name) VALUES ('rack7'), ('gpu') ON CONFLICT DO NOTHING")
        await conn.execute("INSERT INTO smd.group_members (group_name, component_id) "
                           "VALUES ('rack7', 'node-qemu'), ('gpu', 'node-qemu')")
        await add_profile(conn, "qemu-script", {"labels": {"tier": "prod"}}, kernel=f"{images_url}/prof/vmlinuz",
                          initrd=f"{images_url}/prof/initrd", cmdline="console=ttyS0 quiet",
                          script=PROFILE_SCRIPT.replace("{{ images }}", images_url))

    server, seen, console = await boot_to_the_kernel_request(conn, boot_server, "-m", "256", prepare=prepare)
    paths = [path for path, _ in seen]
    assert "/prof/vmlinuz" in paths, "iPXE never asked for the profile's kernel; console:\n" + console[-3000:]
    assert paths[:3] == ["/marker/gpu", "/marker/rack7", "/prof/vmlinuz"], paths
    unwrapped = console.replace("\r\n", "")  # the console wraps at 80 columns
    assert "Chamicore profile qemu-script for node-qemu (prod)" in unwrapped
    assert re.search(r"args: console=ttyS0 quiet initrd=initrd BOOTIF=01-52-54-00-12-34-56 "
                     r"ds=nocloud-net;s=http://10\.0\.2\.2:\d+/cloud-init/node-qemu/\w+/", unwrapped), console[-3000:]
    metrics = samples(server.get("/metrics")[2])
    assert metrics[key("chamicore_boot_requests_total", endpoint="bootscript", outcome="ok")] == 1
