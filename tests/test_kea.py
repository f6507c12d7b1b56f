"""Kea reservations from the inventory, against Debian's kea-dhcp4 and kea-ctrl-agent."""

import asyncio
import json
import os
import shutil
import subprocess
import time

from sync.kea import KeaSync, client_classes
from tests.helpers.kea import eventually
from tests.helpers.seed import add_node
from tests.helpers.tasks import stop_task


async def test_reservations_follow_the_inventory(conn, dsn, kea):
    sync = KeaSync(dsn, kea.url, "http://10.0.0.1:27778", next_server="10.0.0.1")
    task = asyncio.create_task(sync.run())
    try:
        await add_node(conn, "node-a", ["52:54:00:00:0a:01"], ips=["10.1.0.10"])
        await add_node(conn, "node-b", ["52:54:00:00:0b:01"], ips=["10.2.0.20"])
        await eventually(lambda: set(kea.reservations()) >= {"52:54:00:00:0a:01", "52:54:00:00:0b:01"})
        found = kea.reservations()
        assert found["52:54:00:00:0a:01"] == (1, "10.1.0.10", "node-a", True)
        assert found["52:54:00:00:0b:01"] == (2, "10.2.0.20", "node-b", True)
        assert found["00:00:00:00:00:99"] == (1, "10.1.0.99", "not-ours", False)  # left alone
        classes = {c["name"]: c for c in kea.config()["client-classes"]}
        assert classes["chamicore-ipxe"]["boot-file-name"] == "http://10.0.0.1:27778/boot/v1/boot.ipxe"
        assert classes["chamicore-pxe-bios"]["boot-file-name"] == "undionly.kpxe"

        # Update, then delete: the reservation moves, then goes.
        await conn.execute("UPDATE smd.ethernet_interfaces SET ip_addrs = '[{\"ipAddress\": \"10.1.0.11\"}]' "
                           "WHERE mac = '52:54:00:00:0a:01'")
        await eventually(lambda: kea.reservations().get("52:54:00:00:0a:01", (0, ""))[1] == "10.1.0.11")
        await conn.execute("DELETE FROM smd.components WHERE id = 'node-b'")
        await eventually(lambda: "52:54:00:00:0b:01" not in kea.reservations())

        # Bad data is reported and skipped; the rest still goes in.
        await add_node(conn, "node-c", ["52:54:00:00:0c:01"], ips=["192.168.7.7"])
        await add_node(conn, "node-d", ["52:54:00:00:0d:01"], ips=["10.1.0.11"])
        await add_node(conn, "node-e", ["52:54:00:00:0e:01"], ips=["10.2.0.30"])
        await eventually(lambda: "52:54:00:00:0e:01" in kea.reservations())
        assert not {"52:54:00:00:0c:01", "52:54:00:00:0d:01"} & set(kea.reservations())
        assert any("192.168.7.7 is outside every Kea subnet" in p for p in sync.problems)
        assert any("10.1.0.11 is already reserved" in p for p in sync.problems)
        query = "SELECT state, counts FROM sync.status WHERE job = 'kea'"
        deadline = time.monotonic() + 10  # the pass that pushed reports right after the push
        while (reported := await conn.fetchrow(query))["counts"].get("reservations", 0) < 2:
            assert time.monotonic() < deadline, reported
            await asyncio.sleep(0.05)
        assert reported["state"] == "active"
        assert any("outside every Kea subnet" in p for p in reported["counts"]["problems"])
    finally:
        await stop_task(task)


def test_kea_accepts_the_generated_classes(tmp_path):
    # Kea's own configuration check (`kea-dhcp4 -t`), the classes as the sync writes them.
    classes = client_classes("http://10.0.0.1:27778", "10.0.0.1", "https://boot.example:27780/efi")
    assert [c["boot-file-name"] for c in classes[1:3]] == ["https://boot.example:27780/efi/ipxe.efi",
                                                           "https://boot.example:27780/efi/ipxe-arm64.efi"]
    checked = tmp_path / "kea-dhcp4.conf"
    checked.write_text(json.dumps({"Dhcp4": {
        "interfaces-config": {"interfaces": []}, "lease-database": {"type": "memfile", "persist": False},
        "subnet4": [{"id": 1, "subnet": "10.1.0.0/16"}], "client-classes": classes}}))
    env = dict(os.environ, KEA_LOCKFILE_DIR=str(tmp_path), KEA_PIDFILE_DIR=str(tmp_path))
    binary = shutil.which("kea-dhcp4") or "/usr/sbin/kea-dhcp4"
    result = subprocess.run([binary, "-t", str(checked)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    # The check can fail: a broken test expression is refused.
    classes[1]["test"] += " and"
    checked.write_text(json.dumps({"Dhcp4": {"interfaces-config": {"interfaces": []}, "client-classes": classes}}))
    assert subprocess.run([binary, "-t", str(checked)], env=env, capture_output=True, timeout=30).returncode != 0
