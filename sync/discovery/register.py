"""Found hardware into the inventory: one transaction per BMC or node list, never a duplicate.

A node found again is recognised by, in order: its Redfish system on this
endpoint, its system UUID, any of its MACs.  Only then is a new component
made (`node-<8 hex>`, ADR-010).  Fields discovery does not know (role, nid,
groups ...) are left as the admin set them.

A BMC does not take over a node that another endpoint manages (mapped to
one of its systems or, unmapped, a child of its BMC: whom power control
would ask): a system that reports such a node's UUID or MAC is a conflict,
reported with the node and its endpoint, and nothing of it is written.  Moving a node between BMCs is an admin's
decision (delete the old mapping, or the node, and scan again).

Components and interfaces are written through core.inventory, the write layer
the admin API uses too (its defaults, reference checks and events); their
events name `source: discovery` and the scan.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg

from core import inventory
from core.discovery import base_url
from core.identity import generate_id
from core.nodelist import ListedNode
from sync.discovery import hardware
from sync.discovery.walk import FoundBmc, FoundSystem

# A component discovery found, made with what a scan knows (the rest takes the write layer's defaults).
FOUND_STATE = "Populated"


@dataclasses.dataclass(slots=True)
class Registered:
    """What one host of a scan registered, and what it did not take."""

    ids: list[str] = dataclasses.field(default_factory=list)        # components registered
    problems: list[str] = dataclasses.field(default_factory=list)   # values not taken, and why
    conflicts: list[str] = dataclasses.field(default_factory=list)  # nodes another endpoint manages: not adopted


def _origin(scan_id: str) -> inventory.Origin:
    return inventory.Origin("discovery", {"scan": scan_id})


async def ensure_bmc(conn: asyncpg.Connection, address: str, credential_id: str | None, insecure: bool,
                     scan_id: str, bmc_id: str | None = None) -> str:
    """The BMC component whose Redfish endpoint is `address`, made if new."""
    existing = await conn.fetchval("SELECT id FROM smd.redfish_endpoints WHERE address = $1", address)
    if existing:
        await conn.execute("UPDATE smd.redfish_endpoints SET credential_id = coalesce($2, credential_id), "
                           "insecure = $3, discovered_at = now(), updated_at = now() WHERE id = $1",
                           existing, credential_id, insecure)
        return existing
    bmc_id = bmc_id or generate_id("BMC")
    await inventory.create_component(conn, bmc_id, inventory.Component(type="BMC", state="Ready"), _origin(scan_id),
                                     exist_ok=True)
    await conn.execute("INSERT INTO smd.redfish_endpoints (id, address, credential_id, insecure, discovered_at) "
                       "VALUES ($1, $2, $3, $4, now())", bmc_id, address, credential_id, insecure)
    return bmc_id


async def _find_node(conn, endpoint_id: str | None, path: str | None, uuid: str | None, macs: list[str],
                     node_id: str | None = None) -> str | None:
    if node_id and await conn.fetchval("SELECT true FROM smd.components WHERE id = $1", node_id):
        return node_id
    if endpoint_id and path:
        found = await conn.fetchval("SELECT component_id FROM smd.redfish_systems WHERE endpoint_id = $1 AND path = $2",
                                    endpoint_id, path)
        if found:
            return found
    if uuid:
        found = await conn.fetchval("SELECT component_id FROM smd.redfish_systems WHERE uuid = $1 LIMIT 1", uuid)
        if found:
            return found
    if macs:
        return await conn.fetchval("SELECT i.component_id FROM smd.ethernet_interfaces i JOIN smd.components c "
                                   "ON c.id = i.component_id WHERE i.mac = ANY($1::text[]) AND c.type = 'Node' "
                                   "ORDER BY i.mac LIMIT 1", macs)
    return None


# States that say more than "powered on"; a scan that sees the power on leaves them.
_BEYOND_ON = ("Ready", "Standby", "Halt")


async def _upsert_node(conn, node_id: str | None, scan_id: str, *, state: str | None, parent_id: str | None,
                       rack: str | None, unit: int | None, listed: ListedNode | None = None) -> str:
    """Create the node, or update what discovery knows about it; returns its id."""
    found: dict[str, Any] = {"state": state, "parent_id": parent_id, "rack": rack, "unit": unit}
    if listed is not None:
        found.update(nid=listed.nid, role=listed.role or None, sub_role=listed.sub_role or None, arch=listed.arch,
                     slot=listed.slot or None)
    current = await inventory.fetch_component(conn, node_id) if node_id else None
    if not node_id or current is None:
        node_id = node_id or generate_id("Node")
        known = {name: value for name, value in found.items() if value is not None}
        await inventory.create_component(conn, node_id, inventory.Component(
            type="Node", **{"state": FOUND_STATE, **known}), _origin(scan_id))
        return node_id
    if state == "On" and current["state"] in _BEYOND_ON:
        found["state"] = None
    # Only what was found overwrites; an unchanged row is not touched (no event, no boot-path churn).
    before = inventory.Component.from_row(current)
    wanted = dataclasses.replace(before, **{name: value for name, value in found.items() if value is not None})
    if wanted != before:
        await inventory.replace_component(conn, node_id, wanted, _origin(scan_id))
    return node_id


async def _upsert_interfaces(conn, node_id: str, nics: list[tuple[str, list[str]]],
                             origin: inventory.Origin) -> list[str]:
    """The node's MACs; a MAC that belongs to another component is reported, not moved."""
    problems = []
    for mac, ips in nics:
        owner = await conn.fetchrow("SELECT id, component_id, mac, ip_addrs, description FROM smd.ethernet_interfaces "
                                    "WHERE mac = $1", mac)
        addresses = [{"ipAddress": ip, "network": ""} for ip in ips]
        if owner is None:
            nic_id = inventory.default_interface_id(mac)
            if await conn.fetchval("SELECT true FROM smd.ethernet_interfaces WHERE id = $1", nic_id):
                nic_id = generate_id("nic")
            await inventory.create_interfaces(conn, node_id, [inventory.Interface(nic_id, mac, addresses, "discovered")],
                                              origin)
        elif owner["component_id"] != node_id:
            problems.append(f"MAC {mac} already belongs to {owner['component_id']!r}; left there")
        elif addresses and owner["ip_addrs"] != addresses and not owner["ip_addrs"]:
            # Fill in addresses the inventory lacks; never overwrite what an admin wrote.
            nic = dataclasses.replace(inventory.interface_from_row(owner), ip_addrs=addresses)
            await inventory.replace_interface(conn, node_id, nic, origin)
    return problems


async def _map_system(conn, node_id: str, endpoint_id: str, path: str, system: FoundSystem | None = None) -> None:
    # The path may have been another node's (a blade swapped): the mapping follows the hardware.
    await conn.execute("DELETE FROM smd.redfish_systems WHERE endpoint_id = $1 AND path = $2 AND component_id <> $3",
                       endpoint_id, path, node_id)
    await conn.execute(
        "INSERT INTO smd.redfish_systems (component_id, endpoint_id, path, uuid, serial, manufacturer, model) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (component_id) DO UPDATE SET endpoint_id = excluded.endpoint_id, "
        "path = excluded.path, uuid = coalesce(excluded.uuid, smd.redfish_systems.uuid), "
        "serial = coalesce(excluded.serial, smd.redfish_systems.serial), "
        "manufacturer = coalesce(excluded.manufacturer, smd.redfish_systems.manufacturer), "
        "model = coalesce(excluded.model, smd.redfish_systems.model), updated_at = now()",
        node_id, endpoint_id, path, *(
            (system.uuid, system.serial, system.manufacturer, system.model) if system else (None,) * 4))


async def _power_status(conn, node_id: str, power_state: str | None) -> None:
    if power_state:
        await conn.execute(
            "INSERT INTO power.status (node_id, power_state, management_state) VALUES ($1, $2, 'available') "
            "ON CONFLICT (node_id) DO UPDATE SET power_state = excluded.power_state, management_state = 'available', "
            "error = NULL, updated_at = now()", node_id, power_state.lower())


async def _conflicts(conn, bmc_id: str, address: str, system: FoundSystem) -> list[str]:
    """The nodes this system claims (by UUID or MAC) that another endpoint manages, said so."""
    claims = [(r["component_id"], f"UUID {system.uuid}") for r in await conn.fetch(
        "SELECT component_id FROM smd.redfish_systems WHERE uuid = $1", system.uuid)] if system.uuid else []
    claims += [(r["component_id"], f"MAC {r['mac']}") for r in await conn.fetch(
        "SELECT i.component_id, i.mac FROM smd.ethernet_interfaces i JOIN smd.components c ON c.id = i.component_id "
        "WHERE i.mac = ANY($1::text[]) AND c.type = 'Node' ORDER BY i.mac", [mac for mac, _ in system.nics])]
    found = []
    for node_id, what in claims:
        # The endpoint that power control would use for this node: its system mapping, else its parent BMC's.
        owner = await conn.fetchrow(
            "SELECT e.id, e.address FROM smd.components c LEFT JOIN smd.redfish_systems s ON s.component_id = c.id "
            "JOIN smd.redfish_endpoints e ON e.id = coalesce(s.endpoint_id, c.parent_id) WHERE c.id = $1", node_id)
        if owner is not None and owner["id"] != bmc_id:
            found.append(f"conflict: node {node_id!r} is managed by endpoint {owner['id']!r} ({owner['address']}), "
                         f"not adopted: {address} reports its {what} at {system.path}")
    return found


async def register_bmc(conn: asyncpg.Connection, found: FoundBmc, credential_id: str | None, insecure: bool,
                       scan_id: str) -> Registered:
    """What one walked BMC registered, in one transaction."""
    done = Registered(problems=list(found.dropped))
    async with conn.transaction():
        bmc_id = await ensure_bmc(conn, found.address, credential_id, insecure, scan_id)
        done.problems += await _upsert_interfaces(conn, bmc_id, [(mac, found.ips) for mac in found.macs],
                                                  _origin(scan_id))
        done.ids.append(bmc_id)
        for system in found.systems:
            if conflicts := await _conflicts(conn, bmc_id, found.address, system):
                done.conflicts += conflicts
                continue
            macs = [mac for mac, _ in system.nics]
            node_id = await _find_node(conn, bmc_id, system.path, system.uuid, macs)
            node_id = await _upsert_node(conn, node_id, scan_id, state=system.power_state, parent_id=bmc_id,
                                         rack=system.rack, unit=system.unit)
            done.problems += await _upsert_interfaces(conn, node_id, system.nics, _origin(scan_id))
            await _map_system(conn, node_id, bmc_id, system.path, system)
            if system.hardware is not None:
                await hardware.store(conn, node_id, system.hardware, scan_id)
            await _power_status(conn, node_id, system.power_state)
            done.ids.append(node_id)
    return done


async def register_listed(conn: asyncpg.Connection, nodes: list[ListedNode], scan_id: str) -> Registered:
    """What a csv/json node list registered, in one transaction (an admin's list may move nodes)."""
    done = Registered()
    ids, problems = done.ids, done.problems
    async with conn.transaction():
        for node in nodes:
            bmc_id = node.bmc
            if node.bmc_address:
                bmc_id = await ensure_bmc(conn, base_url(node.bmc_address), None, False, scan_id, node.bmc)
            elif bmc_id and not await conn.fetchval("SELECT true FROM smd.components WHERE id = $1", bmc_id):
                problems.append(f"{node.mac}: no BMC component {bmc_id!r}; parent left unset")
                bmc_id = None
            node_id = await _find_node(conn, None, None, None, [node.mac], node.id)
            if node.nid is not None:
                holder = await conn.fetchval("SELECT id FROM smd.components WHERE nid = $1", node.nid)
                if holder and holder != (node_id or node.id):
                    problems.append(f"{node.mac}: nid {node.nid} already belongs to {holder!r}; skipped")
                    continue
            node_id = await _upsert_node(conn, node_id or node.id, scan_id, state=None, parent_id=bmc_id,
                                         rack=node.rack, unit=node.unit, listed=node)
            problems += await _upsert_interfaces(conn, node_id, [(node.mac, [node.ip] if node.ip else [])],
                                                 _origin(scan_id))
            if node.system_path and bmc_id and node.bmc_address:
                await _map_system(conn, node_id, bmc_id, node.system_path)
            ids.append(node_id)
    return done
