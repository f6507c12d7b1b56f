"""A synthetic cluster for benchmarks: N nodes with one NIC and an IP each."""

from __future__ import annotations

import asyncpg

SEED_SQL = """
INSERT INTO smd.components (id, type, state, role, nid, rack, unit, cloud_init_token)
SELECT format('node-%s', i), 'Node', 'Ready', 'Compute', i, format('R%s', i / 40), i % 40, lpad(to_hex(i), 32, '0')
FROM generate_series(1, $1) AS i;

INSERT INTO smd.ethernet_interfaces (id, component_id, mac, ip_addrs)
SELECT format('node-%s-eth0', i), format('node-%s', i),
       '02:00:' || substr(h, 1, 2) || ':' || substr(h, 3, 2) || ':' || substr(h, 5, 2) || ':' || substr(h, 7, 2),
       jsonb_build_array(jsonb_build_object('ipAddress',
           format('10.%s.%s.%s', (i >> 16) & 255, (i >> 8) & 255, i & 255), 'network', 'mgmt'))
FROM generate_series(1, $1) AS i, lpad(to_hex(i), 8, '0') AS h;

INSERT INTO bss.boot_params (id, role, kernel, initrd, cmdline)
VALUES ('compute', 'Compute', 'http://images.cluster/compute/vmlinuz', 'http://images.cluster/compute/initrd.img',
        'console=ttyS0,115200 root=live:http://images.cluster/compute/rootfs.squashfs nid={{nid}} hostname={{hostname}} rd.neednet=1 ip=dhcp quiet');

INSERT INTO cloudinit.payloads (id, role, user_data, meta_data, vendor_data)
VALUES ('compute', 'Compute',
        E'#cloud-config\\npackages: [htop, numactl]\\nruncmd:\\n  - [systemctl, enable, --now, slurmd]\\n',
        '{"cluster": "bench", "slurm": {"partition": "compute"}}',
        E'#cloud-config\\nntp: {enabled: true, servers: [ntp.cluster]}\\n');
"""


def mac_of(i: int) -> str:
    return f"02:00:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"


def token_of(i: int) -> str:
    """The cloud-init seed token of node i: predictable here so that load generators can build each
    node's seed URL (/cloud-init/node-i/<token>/...); a real one is random."""
    return f"{i:032x}"


def ip_of(i: int) -> str:
    return f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


async def seed(conn: asyncpg.Connection, nodes: int) -> None:
    # asyncpg runs a multi-statement string only without arguments; inline the count.
    await conn.execute(SEED_SQL.replace("$1", str(int(nodes))))
