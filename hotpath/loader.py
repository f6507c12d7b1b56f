"""The SQL that reads what the boot path needs: nodes, interfaces, params, payloads.

Every read runs in one REPEATABLE READ transaction so that a snapshot is
consistent across the tables.  `ids=None` reads everything (full reload);
otherwise only those components, plus the few broad-scoped rows (group,
role, site) that resolution may need.
"""

from __future__ import annotations

import dataclasses

import asyncpg

_NODE_COLUMNS = """
    c.id, c.type, c.state, c.role, c.sub_role, c.nid, c.arch, c.enabled, c.parent_id,
    c.rack, c.unit, c.slot, c.sub_slot,
    coalesce((SELECT array_agg(m.group_name ORDER BY m.group_name)
              FROM smd.group_members m WHERE m.component_id = c.id), '{}') AS groups
"""

_ALL_NODES = f"SELECT {_NODE_COLUMNS} FROM smd.components c WHERE c.type = 'Node'"
_SOME_NODES = f"SELECT {_NODE_COLUMNS} FROM smd.components c WHERE c.type = 'Node' AND c.id = ANY($1::text[])"

_ALL_INTERFACES = """
    SELECT i.component_id, i.mac, i.ip_addrs FROM smd.ethernet_interfaces i
    JOIN smd.components c ON c.id = i.component_id AND c.type = 'Node'
    ORDER BY i.component_id, i.created_at, i.mac
"""
_SOME_INTERFACES = """
    SELECT i.component_id, i.mac, i.ip_addrs FROM smd.ethernet_interfaces i
    WHERE i.component_id = ANY($1::text[])
    ORDER BY i.component_id, i.created_at, i.mac
"""

_ALL_PARAMS = "SELECT mac, component_id, group_name, role, kernel, initrd, cmdline FROM bss.boot_params"
_SOME_PARAMS = """
    SELECT mac, component_id, group_name, role, kernel, initrd, cmdline FROM bss.boot_params
    WHERE (mac IS NULL AND component_id IS NULL) OR mac = ANY($1::text[]) OR component_id = ANY($2::text[])
"""

_ALL_PAYLOADS = "SELECT component_id, group_name, role, user_data, meta_data, vendor_data FROM cloudinit.payloads"
_SOME_PAYLOADS = """
    SELECT component_id, group_name, role, user_data, meta_data, vendor_data FROM cloudinit.payloads
    WHERE component_id IS NULL OR component_id = ANY($1::text[])
"""

# Which components a batch of change keys touches.  Deleted rows are not
# found here; the caller adds the component ids the notification named.
AFFECTED_COMPONENTS = """
    SELECT id FROM smd.components WHERE id = ANY($1::text[]) OR role = ANY($2::text[])
    UNION SELECT component_id FROM smd.group_members WHERE group_name = ANY($3::text[])
    UNION SELECT component_id FROM smd.ethernet_interfaces WHERE mac = ANY($4::text[])
"""

# A cheap fingerprint of everything the index is built from, for the periodic drift check.
FINGERPRINT = """
    SELECT (SELECT count(*) FROM smd.components WHERE type = 'Node'),
           (SELECT count(*) FROM smd.ethernet_interfaces),
           (SELECT count(*) FROM smd.group_members),
           (SELECT count(*) FROM bss.boot_params),
           (SELECT count(*) FROM cloudinit.payloads),
           greatest((SELECT max(updated_at) FROM smd.components),
                    (SELECT max(updated_at) FROM smd.ethernet_interfaces),
                    (SELECT max(created_at) FROM smd.group_members),
                    (SELECT max(updated_at) FROM bss.boot_params),
                    (SELECT max(updated_at) FROM cloudinit.payloads))
"""


@dataclasses.dataclass(slots=True)
class Snapshot:
    nodes: list[asyncpg.Record]
    interfaces: list[asyncpg.Record]
    boot_params: list[asyncpg.Record]
    payloads: list[asyncpg.Record]
    fingerprint: tuple | None = None


async def load(conn: asyncpg.Connection, ids: list[str] | None = None) -> Snapshot:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if ids is None:
            nodes = await conn.fetch(_ALL_NODES)
            interfaces = await conn.fetch(_ALL_INTERFACES)
            params = await conn.fetch(_ALL_PARAMS)
            payloads = await conn.fetch(_ALL_PAYLOADS)
            fingerprint = tuple(await conn.fetchrow(FINGERPRINT))
            return Snapshot(nodes, interfaces, params, payloads, fingerprint)
        nodes = await conn.fetch(_SOME_NODES, ids)
        node_ids = [row["id"] for row in nodes]
        interfaces = await conn.fetch(_SOME_INTERFACES, node_ids)
        macs = [row["mac"] for row in interfaces]
        params = await conn.fetch(_SOME_PARAMS, macs, node_ids)
        payloads = await conn.fetch(_SOME_PAYLOADS, node_ids)
        return Snapshot(nodes, interfaces, params, payloads)


async def affected_components(conn: asyncpg.Connection, ids, roles, groups, macs) -> set[str]:
    rows = await conn.fetch(AFFECTED_COMPONENTS, list(ids), list(roles), list(groups), list(macs))
    return {row["id"] for row in rows}


async def fingerprint(conn: asyncpg.Connection) -> tuple:
    return tuple(await conn.fetchrow(FINGERPRINT))
