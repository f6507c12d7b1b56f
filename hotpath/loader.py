"""The SQL that reads what the boot path needs: nodes with their NICs, params, payloads.

A load is one consistent snapshot across the tables: a larger one runs in a
REPEATABLE READ transaction, an edit's few nodes are one statement (their
rows as JSON, one round trip).  Nodes stream through a cursor in chunks:
the rows of a chunk are turned into answers and dropped before the next
chunk arrives, so a 100k-node reload never holds 100k raw rows at once.
`ids=None` reads everything (full reload); otherwise only those components,
plus their NID-scoped rows and the broad-scoped rows (group, role, site) that
resolution needs.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import msgspec

from core import arches

# What one chunk's rows and their temporaries take stays in the process after a load (the allocator keeps
# the space of its peak, between the long-lived answers): 5,000 rows left ~350 bytes a node more than 500
# at 30k nodes (bench.profiles' RSS), for a few more round trips per load.
CHUNK_ROWS = 1_000

# One row per node, its interfaces folded in (ordered: the first is the primary).
_NODES = """
SELECT c.id, c.type, c.role, c.sub_role, c.nid, c.arch, c.enabled, c.rack, c.unit, c.slot, c.sub_slot,
       c.cloud_init_token, c.labels,
       coalesce((SELECT array_agg(m.group_name ORDER BY m.group_name)
                 FROM smd.group_members m WHERE m.component_id = c.id), '{}') AS groups,
       coalesce(n.macs, '{}') AS macs, coalesce(n.ip_addrs, '{}') AS ip_addrs
FROM smd.components c
LEFT JOIN LATERAL (
    SELECT array_agg(i.mac ORDER BY i.created_at, i.mac) AS macs,
           array_agg(i.ip_addrs ORDER BY i.created_at, i.mac) AS ip_addrs
    FROM smd.ethernet_interfaces i WHERE i.component_id = c.id
) n ON true
WHERE c.type = 'Node'
"""
_ALL_NODES = _NODES
_SOME_NODES = _NODES + " AND c.id = ANY($1::text[])"

_PARAMS = "SELECT mac, component_id, nid, group_name, role, kernel, initrd, cmdline FROM bss.boot_params"
_SOME_PARAMS = _PARAMS + """
    WHERE (mac IS NULL AND component_id IS NULL AND nid IS NULL) OR component_id = ANY($1::text[])
       OR nid IN (SELECT c.nid FROM smd.components c WHERE c.id = ANY($1::text[]))
       OR mac IN (SELECT i.mac FROM smd.ethernet_interfaces i WHERE i.component_id = ANY($1::text[]))
"""
_PAYLOADS = ("SELECT component_id, group_name, role, user_data, meta_data, vendor_data, description "
             "FROM cloudinit.payloads")
_SOME_PAYLOADS = _PAYLOADS + " WHERE component_id IS NULL OR component_id = ANY($1::text[])"

# Every profile, in every load (a few rows): a node's match depends on all of them (core/profiles.py).
PROFILES = ("SELECT id, selector, kernel, initrd, cmdline, arches, user_data, meta_data, vendor_data, script "
            "FROM bss.profiles")



def _json_rows(query: str) -> str:
    return f"(SELECT coalesce(json_agg(r), '[]') FROM ({query}) r)"


# An edit's few nodes in one statement, so one round trip and one snapshot (no transaction): every part as JSON
# rows, which the answers read like records.
_EDITED = ("SELECT json_build_object('params', " + _json_rows(_SOME_PARAMS) + ", 'payloads', "
           + _json_rows(_SOME_PAYLOADS) + ", 'nodes', " + _json_rows(_SOME_NODES) + ", 'profiles', PROFILE_ROWS)::text")
_EDITED_WITH_PROFILES = _EDITED.replace("PROFILE_ROWS", _json_rows(PROFILES))
_EDITED_ALONE = _EDITED.replace("PROFILE_ROWS", "NULL")

# Which components a batch of change keys touches.  Deleted rows are not
# found here; the caller adds the component ids the notification named.
AFFECTED_COMPONENTS = """
    SELECT id FROM smd.components
    WHERE id = ANY($1::text[]) OR role = ANY($2::text[]) OR nid = ANY($5::bigint[])
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
           (SELECT count(*) FROM bss.profiles),
           greatest((SELECT max(updated_at) FROM smd.components),
                    (SELECT max(updated_at) FROM smd.ethernet_interfaces),
                    (SELECT max(created_at) FROM smd.group_members),
                    (SELECT max(updated_at) FROM bss.boot_params),
                    (SELECT max(updated_at) FROM cloudinit.payloads),
                    (SELECT max(updated_at) FROM bss.profiles))
"""


async def load(
    conn: asyncpg.Connection,
    consume: Callable[[list, list, list], None],
    ids: list[str] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    profiles: Callable[[list], None] | None = None,
) -> tuple | None:
    """Read a snapshot, handing `consume(node_rows, params, payloads)` one chunk at a time
    (and the profile rows to `profiles` first, when given).

    Returns the fingerprint of a full load (None for a partial one).
    """
    if ids is not None and len(ids) <= chunk_rows:  # an edit's few nodes: one round trip
        edited = msgspec.json.decode(await conn.fetchval(
            _EDITED_WITH_PROFILES if profiles is not None else _EDITED_ALONE, ids))
        if profiles is not None:
            profiles(edited["profiles"])
        consume(edited["nodes"], edited["params"], edited["payloads"])
        return None
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if profiles is not None:
            profiles(await conn.fetch(PROFILES))
        if ids is None:
            params = await conn.fetch(_PARAMS)
            payloads = await conn.fetch(_PAYLOADS)
            cursor = await conn.cursor(_ALL_NODES)
        else:
            params = await conn.fetch(_SOME_PARAMS, ids)
            payloads = await conn.fetch(_SOME_PAYLOADS, ids)
            cursor = await conn.cursor(_SOME_NODES, ids)
        while chunk := await cursor.fetch(chunk_rows):
            consume(chunk, params, payloads)
        if ids is None:
            return await fingerprint(conn)
        return None


async def affected_components(conn: asyncpg.Connection, ids, roles, groups, macs, nids=()) -> set[str]:
    rows = await conn.fetch(AFFECTED_COMPONENTS, list(ids), list(roles), list(groups), list(macs), list(nids))
    return {row["id"] for row in rows}


async def fingerprint(conn: asyncpg.Connection) -> tuple:
    row = await conn.fetchrow(FINGERPRINT)
    if row is None:  # a SELECT without FROM has its one row, always
        raise RuntimeError("the fingerprint query returned no row")
    return tuple(row)


def selector_condition(selector: dict, args: list) -> str:
    """SQL over smd.components `c` that holds for the nodes a profile selector matches
    (core.profiles.unmet's rules), its values appended to `args`."""
    terms = []

    def arg(value) -> str:
        args.append(value)
        return f"${len(args)}"

    for name, value in selector.items():
        if name == "mac":
            terms.append(f"c.id IN (SELECT component_id FROM smd.ethernet_interfaces WHERE mac = {arg(value)})")
        elif name == "componentId":
            terms.append(f"c.id = {arg(value)}")
        elif name == "arch":
            terms.append(f"lower(c.arch) = ANY({arg(arches.spellings(value) or [value])}::text[])")
        elif name in ("type", "role"):
            terms.append(f"c.{name} = {arg(value)}")
        elif name == "subRole":
            terms.append(f"c.sub_role = {arg(value)}")
        elif name == "groups":
            terms.append(f"c.id IN (SELECT component_id FROM smd.group_members WHERE group_name = ANY({arg(value)}"
                         f"::text[]) GROUP BY component_id HAVING count(*) = {len(value)})")
        elif name == "labels":
            terms.append(f"c.labels @> {arg(value)}::jsonb")
        else:  # a term this version does not know: the profile matches no node here
            terms.append("false")
    return " AND ".join(terms) or "true"


async def selector_components(conn: asyncpg.Connection, selectors) -> set[str]:
    """The nodes any of these profile selectors matches (an edited profile's old and new ones)."""
    args: list = []
    conditions = [f"({selector_condition(s, args)})" for s in selectors if isinstance(s, dict)]
    if not conditions:
        return set()
    rows = await conn.fetch(f"SELECT c.id FROM smd.components c WHERE c.type = 'Node' AND ({' OR '.join(conditions)})",
                            *args)
    return {row["id"] for row in rows}
