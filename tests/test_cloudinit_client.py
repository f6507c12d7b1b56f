"""cloud-init's own client code (Debian's cloud-init package) against the boot path."""

import json
import shutil
import subprocess

import pytest

from tests.seed import add_node, add_params, add_payload

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


def run_cloud_init(script: str, argument: str) -> dict:
    if shutil.which(SYSTEM_PYTHON) is None or subprocess.run(
            [SYSTEM_PYTHON, "-c", "import cloudinit"], capture_output=True).returncode != 0:
        pytest.fail("cloud-init is not installed: apt-get install -y cloud-init (make test does it)")
    result = subprocess.run([SYSTEM_PYTHON, "-c", script, argument], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def seed(conn):
    await add_node(conn, "node-ci", ["52:54:00:aa:bb:01"], nid=7)
    await add_params(conn, "site", kernel="http://images/vmlinuz", cmdline="console=ttyS0")
    await add_payload(conn, "site", user_data="#cloud-config\npackages: [htop]\n",
                      vendor_data="#cloud-config\nntp: {enabled: true}\n", meta_data={"cluster": "alpha"})
    await add_payload(conn, "node", component_id="node-ci", meta_data={"local-hostname": "c007"})


async def test_read_seeded_gets_all_three_documents(conn, boot_server):
    await seed(conn)
    server = boot_server()
    data = run_cloud_init(READ_SEEDED, f"{server.url}/cloud-init/node-ci/")
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
    assert data["seedfrom"] == f"{server.url}/cloud-init/node-ci/"
    assert data["md"]["local-hostname"] == "c007" and data["ud"].startswith("#cloud-config")
