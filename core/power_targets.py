"""How each node reaches its BMC, for power control: the query the admin API and the power engine share.

A node is reached through its own Redfish system mapping, else through its
parent BMC's endpoint.  Both sides read targets through `fetch`, and say why
a node cannot be controlled with `target_problem`, so that a transition is
refused (or its task failed) for the same reason, in the same words.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from core import db

TARGETS_SQL = """
SELECT n.id, c.type, s.path, e.id AS bmc_id, e.address, e.credential_id, e.insecure
FROM unnest($1::text[]) AS n(id)
LEFT JOIN smd.components c ON c.id = n.id
LEFT JOIN smd.redfish_systems s ON s.component_id = n.id
LEFT JOIN smd.redfish_endpoints e ON e.id = coalesce(s.endpoint_id,
    (SELECT p.id FROM smd.components p WHERE p.id = c.parent_id AND p.type = 'BMC'))
"""


async def fetch(conn: db.Connection | asyncpg.Pool, node_ids: Sequence[str]) -> list[asyncpg.Record]:
    """One row per node id, in no particular order: id, type (None: no such component), path, bmc_id, address,
    credential_id, insecure."""
    return await conn.fetch(TARGETS_SQL, list(node_ids))


def target_problem(row) -> str | None:
    """What stops power control of this node, said so that an admin knows what to do; None if nothing."""
    if row["type"] is None:
        return f"no component {row['id']!r}"
    if row["type"] != "Node":
        return f"{row['id']!r} is a {row['type']}, not a Node"
    if row["bmc_id"] is None:
        return (f"node {row['id']!r} has no BMC: run discovery on its BMC, or set its parentId to a BMC component "
                "that has a Redfish endpoint (/hsm/v2/Inventory/RedfishEndpoints)")
    if row["credential_id"] is None:
        return (f"BMC {row['bmc_id']!r} has no credential: store one at /auth/v1/credentials and set credentialId "
                f"on /hsm/v2/Inventory/RedfishEndpoints/{row['bmc_id']}")
    return None
