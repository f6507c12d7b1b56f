"""Rows for tests, written with plain SQL as any client of the database could."""

from __future__ import annotations

import asyncpg


async def add_node(conn: asyncpg.Connection, node_id: str, macs=(), *, role: str = "Compute", nid=None,
                   ips=(), groups=(), enabled: bool = True, arch: str = "x86_64", type: str = "Node") -> None:
    await conn.execute(
        "INSERT INTO smd.components (id, type, state, role, nid, arch, enabled) VALUES ($1, $2, 'Ready', $3, $4, $5, $6)",
        node_id, type, role, nid, arch, enabled)
    for i, mac in enumerate(macs):
        ip_addrs = [{"ipAddress": ips[i], "network": "mgmt"}] if i < len(ips) else []
        await conn.execute(
            "INSERT INTO smd.ethernet_interfaces (id, component_id, mac, ip_addrs) VALUES ($1, $2, $3, $4)",
            f"{node_id}-nic{i}", node_id, mac, ip_addrs)
    for group in groups:
        await conn.execute("INSERT INTO smd.groups (name) VALUES ($1) ON CONFLICT DO NOTHING", group)
        await conn.execute("INSERT INTO smd.group_members (group_name, component_id) VALUES ($1, $2)", group, node_id)


async def add_params(conn: asyncpg.Connection, params_id: str, *, kernel: str, initrd: str = "",
                     cmdline: str = "", mac=None, component_id=None, group=None, role=None, nid=None) -> None:
    await conn.execute(
        "INSERT INTO bss.boot_params (id, mac, component_id, group_name, role, kernel, initrd, cmdline, nid) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        params_id, mac, component_id, group, role, kernel, initrd, cmdline, nid)


async def add_payload(conn: asyncpg.Connection, payload_id: str, *, user_data=None, meta_data=None,
                      vendor_data=None, component_id=None, group=None, role=None) -> None:
    await conn.execute(
        "INSERT INTO cloudinit.payloads (id, component_id, group_name, role, user_data, meta_data, vendor_data) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        payload_id, component_id, group, role, user_data, meta_data or {}, vendor_data)


async def seed_cluster(conn: asyncpg.Connection) -> None:
    """Two nodes, boot parameters for their role and a site-wide cloud-init payload."""
    await add_node(conn, "node-1", ["52:54:00:00:00:01"], nid=1, ips=["127.0.0.1"])
    await add_node(conn, "node-2", ["52:54:00:00:00:02"], nid=2, ips=["10.0.0.7"])
    await add_params(conn, "compute", role="Compute", kernel="http://images/vmlinuz",
                     initrd="http://images/initrd", cmdline="console=ttyS0 hostname={{hostname}}")
    await add_payload(conn, "site", user_data="#cloud-config\nhostname: x\n", meta_data={"cluster": "test"})
