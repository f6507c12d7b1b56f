"""The snmp driver's writing half: each MAC a switch learned, attached to the node its port names.

Per port, in one transaction for the switch:

- an uplink is skipped: a port that learned more than `maxMacsPerPort` MACs, or whose LLDP
  neighbour says it is a bridge or a router (another switch's MACs are not this switch's nodes);
- a port whose name does not match the rule's `portPattern` is not a node port: left alone, counted;
- a port whose name matches but names no node (no such id, nobody at that rack/unit, or
  several) is reported; discovery does not make nodes from a port name;
- a MAC already on another component is a conflict: reported, left where it is.

The switch itself becomes a component of type Switch named by its sysName
(when that is a valid id and not another type's id).  MACs are written through
core.inventory, their events naming `source: discovery` and the scan.

`scan_switch` is the driver as the scanner calls it: read the switch (sync/discovery/snmp.py), then attach.
"""

from __future__ import annotations

import asyncpg

from core import db, inventory, switch_ports
from core.identity import is_valid_id
from core.switch_ports import CompiledRule, NodeRef
from sync.discovery.register import Registered
from sync.discovery.snmp import (
    FoundSwitch,
    Port,
    SwitchError,
    SwitchReader,
    access,
    engine_for,
    read_switch,
)


async def _node(conn: db.Connection, ref: NodeRef) -> tuple[str | None, str]:
    """The node a port names, or None and why not."""
    if ref.node_id:
        kind = await conn.fetchval("SELECT type FROM smd.components WHERE id = $1", ref.node_id)
        if kind is None:
            return None, "no such node"
        return (ref.node_id, "") if kind == "Node" else (None, f"it is a {kind}, not a Node")
    found = await conn.fetch("SELECT id FROM smd.components WHERE type = 'Node' AND rack = $1 AND unit = $2 "
                             "AND ($3::int IS NULL OR slot = $3) ORDER BY id LIMIT 3", ref.rack, ref.unit, ref.slot)
    if not found:
        return None, "no node there"
    if len(found) > 1:
        return None, f"several nodes there ({', '.join(repr(r['id']) for r in found[:2])} ...); add slot to the rule"
    return found[0]["id"], ""


def _uplink(port: Port, rule: CompiledRule) -> str | None:
    """Why this port is an uplink, or None."""
    neighbour = port.neighbour
    seen = f" (LLDP: {neighbour.name or 'unnamed'} port {neighbour.port or '?'})" if neighbour else ""
    if neighbour is not None and neighbour.forwards:
        return f"{port.name}: uplink to a bridge or router{seen}; its {len(port.macs)} MACs skipped"
    if len(port.macs) > rule.rule.max_macs_per_port:
        return (f"{port.name}: {len(port.macs)} MACs, more than maxMacsPerPort "
                f"{rule.rule.max_macs_per_port}: an uplink{seen}; skipped")
    return None


async def _attach(conn: db.Connection, node_id: str, port: Port, switch: str,
                  origin: inventory.Origin) -> tuple[bool, list[str]]:
    """The port's MACs on the node (whether it holds any now); a MAC on another component is a conflict, left there."""
    conflicts, holds = [], False
    for mac in port.macs:
        owner = await conn.fetchval("SELECT component_id FROM smd.ethernet_interfaces WHERE mac = $1", mac)
        if owner == node_id:
            holds = True
            continue
        if owner is not None:
            conflicts.append(f"conflict: MAC {mac} on {switch} {port.name} belongs to {owner!r}, not {node_id!r}; "
                             "left there")
            continue
        nic_id = inventory.default_interface_id(mac)
        if await conn.fetchval("SELECT true FROM smd.ethernet_interfaces WHERE id = $1", nic_id):
            nic_id = f"{nic_id}-{node_id}"[:255]
        description = f"learned on {switch} {port.name}"[:1024]
        await inventory.create_interfaces(conn, node_id, [inventory.Interface(nic_id, mac, [], description)], origin)
        holds = True
    return holds, conflicts


async def _ensure_switch(conn: db.Connection, name: str | None, origin: inventory.Origin) -> tuple[str | None,
                                                                                                        str | None]:
    """The Switch component named by sysName (made if new), or None and why not."""
    if not name or not is_valid_id(name):
        return None, f"switch not registered as a component: sysName {name!r} is not a component id"
    kind = await conn.fetchval("SELECT type FROM smd.components WHERE id = $1", name)
    if kind is not None and kind != "Switch":
        return None, f"switch not registered as a component: {name!r} is a {kind}"
    await inventory.create_component(conn, name, inventory.Component(type="Switch", state="Ready"), origin,
                                     exist_ok=True)
    return name, None


async def attach_learned(conn: db.Connection, found: FoundSwitch, rule: CompiledRule,
                         scan_id: str) -> Registered:
    """What one switch's forwarding table attached, in one transaction."""
    done = Registered(problems=list(found.dropped))
    origin = inventory.Origin("discovery", {"scan": scan_id, "switch": found.address})
    unmatched = 0
    async with conn.transaction():
        switch_id, note = await _ensure_switch(conn, found.name, origin)
        if switch_id:
            done.ids.append(switch_id)
        else:
            done.problems.append(str(note))
        switch = switch_id or found.address
        for port in sorted(found.ports.values(), key=lambda p: p.number):
            if not port.macs:
                continue
            if reason := _uplink(port, rule):
                done.problems.append(reason)
                continue
            try:
                ref = rule.node_for(port.name)
            except switch_ports.SlowPattern as exc:
                done.problems.append(f"{exc}; this switch's remaining ports skipped")
                break
            except ValueError as exc:
                done.problems.append(f"{port.name}: the rule {exc}; its MACs skipped")
                continue
            if ref is None:
                unmatched += 1
                continue
            node_id, why = await _node(conn, ref)
            if node_id is None:
                done.problems.append(f"{port.name} names node {ref}: {why}; MACs {', '.join(port.macs)} not attached")
                continue
            holds, conflicts = await _attach(conn, node_id, port, switch, origin)
            done.conflicts += conflicts
            if holds and node_id not in done.ids:
                done.ids.append(node_id)
    if unmatched:
        done.problems.append(f"{unmatched} ports with MACs do not match portPattern (not node ports); left alone")
    return done


async def scan_switch(pool: asyncpg.Pool, scan_id: str, target, host: str, username: str | None, secret: str | None,
                      timeout_s: float) -> Registered:
    """One snmp target's switch read and its MACs attached; SwitchError when the switch cannot be read."""
    settings = switch_ports.decode(target["snmp"])
    rule = switch_ports.check(settings)
    if secret is None:
        raise SwitchError("an snmp target needs a credentialId: the community, or the v3 user and keys")
    auth = access(settings, username or "", secret, target["credential_id"])
    # Several requests fit in the host's timeout, each retried once: a lost datagram is not a failed switch.
    request_timeout_s = min(2.0, timeout_s / 4)
    reader = SwitchReader(await engine_for(target["credential_id"]), host, auth, settings, target["credential_id"],
                          request_timeout_s)
    found = await read_switch(reader)
    async with pool.acquire() as conn:
        return await attach_learned(conn, found, rule, scan_id)
