"""cloud-init's own client code (Debian's cloud-init package) against the boot path."""

import json
import re
import shutil
import subprocess

import pytest

from tests.helpers.seed import add_node, add_params, add_payload

SYSTEM_PYTHON = "/usr/bin/python3"

READ_SEEDED = """
import json, sys
from cloudinit import util
md, ud, vd = util.read_seeded(sys.argv[1], timeout=5, retries=1)
print(json.dumps({"md": md, "ud": ud.decode() if ud is not None else None,
                  "vd": vd.decode() if vd is not None else None}))
"""

FROM_CMDLINE = """
import json, sys
from cloudinit import util
from cloudinit.sources import DataSourceNoCloud
fill = {}
assert DataSourceNoCloud.load_cmdline_data(fill, sys.argv[1]), "ds= not recognised"
assert fill["dsmode"] == "net", fill
md, ud, vd = util.read_seeded(fill["seedfrom"], timeout=5, retries=1)
print(json.dumps({"seedfrom": fill["seedfrom"], "md": md, "ud": ud.decode()}))
"""


def run_cloud_init_process(script: str, argument: str) -> subprocess.CompletedProcess:
    if shutil.which(SYSTEM_PYTHON) is None or subprocess.run(
            [SYSTEM_PYTHON, "-c", "import cloudinit"], capture_output=True).returncode != 0:
        pytest.fail("cloud-init is not installed: apt-get install -y cloud-init (make test does it)")
    return subprocess.run([SYSTEM_PYTHON, "-c", script, argument], capture_output=True, text=True, timeout=60)


def run_cloud_init(script: str, argument: str) -> dict:
    result = run_cloud_init_process(script, argument)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def seed(conn):
    # No address of node-ci is the test's own (127.0.0.1): it proves itself with its seed URL alone.
    await add_node(conn, "node-ci", ["52:54:00:aa:bb:01"], nid=7, ips=["10.0.0.7"])
    await add_node(conn, "node-other", ["52:54:00:aa:bb:02"], nid=8)
    await add_params(conn, "site", kernel="http://images/vmlinuz", cmdline="console=ttyS0")
    await add_payload(conn, "site", user_data="#cloud-config\npackages: [htop]\n",
                      vendor_data="#cloud-config\nntp: {enabled: true}\n", meta_data={"cluster": "alpha"})
    await add_payload(conn, "node", component_id="node-ci", meta_data={"local-hostname": "c007"})


def seed_url(server, mac: str) -> str:
    """The seed URL of the node's own script (asked for by its MAC): it holds the node's secret token."""
    script = server.get(f"/boot/v1/bootscript?mac={mac}")[2].decode()
    seed = re.search(r" ds=nocloud-net;s=(\S+)", script)[1]
    assert re.fullmatch(re.escape(server.url) + r"/cloud-init/node-\w+/[0-9a-f]{32}/", seed), seed
    return seed


async def test_read_seeded_gets_all_three_documents(conn, boot_server):
    await seed(conn)
    server = boot_server()
    data = run_cloud_init(READ_SEEDED, seed_url(server, "52:54:00:aa:bb:01"))
    assert data["ud"] == "#cloud-config\npackages: [htop]\n"
    assert data["vd"] == "#cloud-config\nntp: {enabled: true}\n"
    md = data["md"]
    assert md["local-hostname"] == "c007" and md["cluster"] == "alpha" and md["nid"] == 7
    assert md["instance-id"].startswith("node-ci-")


async def test_nocloud_net_seed_from_the_served_script(conn, boot_server):
    await seed(conn)
    server = boot_server()
    script = server.get("/boot/v1/bootscript?mac=52:54:00:aa:bb:01")[2].decode()
    kernel_line = next(line for line in script.splitlines() if line.startswith("kernel "))
    cmdline = kernel_line.removesuffix(" || goto retry").split(" ", 4)[4]  # after "kernel --name kernel URI"
    data = run_cloud_init(FROM_CMDLINE, cmdline)
    assert data["seedfrom"] == seed_url(server, "52:54:00:aa:bb:01")
    assert data["md"]["local-hostname"] == "c007" and data["ud"].startswith("#cloud-config")


async def test_another_requester_gets_nothing(conn, boot_server):
    # cloud-init itself, run from an address that is not node-ci's, with what anyone can learn:
    # its id (from a by-nid script), another node's token, a made-up one.
    await seed(conn)
    server = boot_server()
    by_nid = server.get("/boot/v1/bootscript?nid=7")[2].decode()
    public_seed = re.search(r" ds=nocloud-net;s=(\S+)", by_nid)[1]
    assert public_seed == f"{server.url}/cloud-init/node-ci/"
    other_token = seed_url(server, "52:54:00:aa:bb:02").rstrip("/").rsplit("/", 1)[1]
    for url in (public_seed, f"{server.url}/cloud-init/node-ci/{other_token}/",
                f"{server.url}/cloud-init/node-ci/{'0' * 32}/"):
        result = run_cloud_init_process(READ_SEEDED, url)
        assert result.returncode != 0 and "404" in result.stderr, (url, result.stdout, result.stderr)
        assert "htop" not in result.stdout and "alpha" not in result.stdout
