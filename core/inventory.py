"""The one write path of the inventory: components and their Ethernet interfaces.

Every writer goes through here, whoever it is: the admin API (components,
interfaces, bulk import, node provisioning), discovery registering what a
scan found, the power engine recording a verified power state.  Each
function takes a connection inside the caller's transaction; it applies the
defaults, checks what the row refers to (its parent exists, its nid and its
MACs are free), writes the row and writes its event to the outbox (core.events),
so that a change and its event commit together or not at all.

An event's data has one shape for every writer: the resource as the REST API
shows its spec after the change (before it, for a delete), plus `source`
(who made the change: admin, import, discovery, power) and what that source
adds (a scan id, for example).

A refused write raises InventoryError, a ProblemError: the admin API answers
it as it stands, a daemon reports it.  Field names in it start at `where`,
the caller's name for the spec in its own input (`$.spec` for a REST body).
Values are checked for shape before they get here (the admin API's msgspec
schemas, core.fields for what a BMC says).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from core import db, events
from core.problems import FieldError, ProblemError

COMPONENT_COLUMNS = ("id, type, state, role, sub_role, nid, arch, enabled, parent_id, rack, unit, slot, sub_slot, "
                     "labels, created_at, updated_at")
INTERFACE_COLUMNS = "id, component_id, mac, ip_addrs, description, created_at, updated_at"


class InventoryError(ProblemError):
    """A write the inventory refuses (409: taken or in use; 422: a reference to nothing), naming the field."""

    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        if field is None:
            super().__init__(status, detail)
        else:
            super().__init__(status, f"{field}: {detail}", errors=[FieldError(field, detail)])


@dataclasses.dataclass(frozen=True, slots=True)
class Origin:
    """Who makes a change, as its event says: `source`, and what that source adds (a scan id ...)."""

    source: str
    detail: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        return {"source": self.source, **self.detail}


ADMIN = Origin("admin")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Component:
    """A component's values as stored; the defaults are every writer's."""

    type: str
    state: str = "Empty"
    role: str = ""
    sub_role: str = ""
    nid: int | None = None
    arch: str = "x86_64"
    enabled: bool = True
    parent_id: str | None = None
    rack: str | None = None
    unit: int | None = None
    slot: int = 0
    sub_slot: int = 0
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)  # checked by core.profiles.check_labels

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Component:
        return cls(**{name: row[name] for name in _COMPONENT_FIELDS})

    def values(self) -> tuple:
        return tuple(getattr(self, name) for name in _COMPONENT_FIELDS)

    def spec_data(self) -> dict[str, Any]:
        """The spec as the REST API shows it (camelCase)."""
        return {"type": self.type, "state": self.state, "role": self.role or None, "subRole": self.sub_role,
                "nid": self.nid, "arch": self.arch, "enabled": self.enabled, "parentId": self.parent_id,
                "location": {"rack": self.rack, "unit": self.unit, "slot": self.slot, "subSlot": self.sub_slot},
                "labels": dict(self.labels)}


_COMPONENT_FIELDS = tuple(f.name for f in dataclasses.fields(Component))


@dataclasses.dataclass(frozen=True, slots=True)
class Interface:
    """An Ethernet interface: its id, normalised MAC, IP addresses as stored ([{ipAddress, network}])."""

    id: str
    mac: str
    ip_addrs: list[dict[str, str]] = dataclasses.field(default_factory=list)
    description: str = ""

    def spec_data(self, component_id: str) -> dict[str, Any]:
        return {"componentId": component_id, "macAddr": self.mac, "ipAddrs": self.ip_addrs,
                "description": self.description}


def default_interface_id(mac: str) -> str:
    return mac.replace(":", "")


# Components.

async def fetch_component(conn: db.Connection, component_id: str, *, lock: bool = False):
    """The component's row (COMPONENT_COLUMNS), or None."""
    return await conn.fetchrow(f"SELECT {COMPONENT_COLUMNS} FROM smd.components WHERE id = $1"
                               + (" FOR UPDATE" if lock else ""), component_id)


async def component_exists(conn: db.Connection, component_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM smd.components WHERE id = $1", component_id))


async def check_references(conn: db.Connection, component_id: str | None, component: Component,
                           where: str = "$.spec") -> None:
    """The parent exists (and is not the component itself); the nid is free."""
    if component.parent_id is not None:
        if component.parent_id == component_id:
            raise InventoryError(422, "a component cannot be its own parent", f"{where}.parentId")
        if not await component_exists(conn, component.parent_id):
            raise InventoryError(422, f"no component {component.parent_id!r}", f"{where}.parentId")
    if component.nid is not None:
        holder = await conn.fetchval("SELECT id FROM smd.components WHERE nid = $1 AND id IS DISTINCT FROM $2",
                                     component.nid, component_id)
        if holder:
            raise InventoryError(409, f"nid {component.nid} already belongs to component {holder!r}")


async def create_component(conn: db.Connection, component_id: str, component: Component, origin: Origin, *,
                           interfaces: Sequence[Interface] = (), where: str = "$.spec", exist_ok: bool = False):
    """A new component (and its interfaces) and their events; its row.

    An id that exists is a 409, or, with `exist_ok`, None and nothing written.
    """
    if await component_exists(conn, component_id):
        if exist_ok:
            return None
        raise InventoryError(409, f"component {component_id!r} already exists")
    await check_macs_free(conn, [nic.mac for nic in interfaces])
    await check_references(conn, component_id, component, where)
    # With exist_ok, a concurrent writer that made the same id first wins quietly (two scans, one BMC).
    row = await conn.fetchrow(
        f"INSERT INTO smd.components (id, type, state, role, sub_role, nid, arch, enabled, parent_id, rack, unit, "
        f"slot, sub_slot, labels) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        f"{' ON CONFLICT (id) DO NOTHING' if exist_ok else ''} RETURNING {COMPONENT_COLUMNS}",
        component_id, *component.values())
    if row is None:
        return None
    await _emit_component(conn, "created", row, origin)
    await _insert_interfaces(conn, component_id, interfaces, origin)
    return row


async def replace_component(conn: db.Connection, component_id: str, component: Component, origin: Origin, *,
                            where: str = "$.spec", action: str = "updated"):
    """Every value of an existing component, and the event (`action`); its row, None if there is no such component."""
    await check_references(conn, component_id, component, where)
    row = await conn.fetchrow(
        f"UPDATE smd.components SET type = $2, state = $3, role = $4, sub_role = $5, nid = $6, arch = $7, "
        f"enabled = $8, parent_id = $9, rack = $10, unit = $11, slot = $12, sub_slot = $13, labels = $14, "
        f"updated_at = now() "
        f"WHERE id = $1 RETURNING {COMPONENT_COLUMNS}", component_id, *component.values())
    if row is not None:
        await _emit_component(conn, action, row, origin)
    return row


async def set_state(conn: db.Connection, component_id: str, state: str, origin: Origin, *,
                    only_from: Collection[str] | None = None):
    """The component's state, when it differs (and is one of `only_from`, if given); its row, or None if unchanged.

    One statement, so that it is safe on a pool too.
    """
    row = await conn.fetchrow(
        f"UPDATE smd.components SET state = $2 WHERE id = $1 AND state <> $2 "
        f"AND ($3::text[] IS NULL OR state = ANY($3::text[])) RETURNING {COMPONENT_COLUMNS}",
        component_id, state, list(only_from) if only_from is not None else None)
    if row is not None:
        await _emit_component(conn, "updated", row, origin)
    return row


async def check_deletable(conn: db.Connection, component_id: str) -> None:
    """A parent is not deleted under its children: a 409 naming some of them."""
    children = await conn.fetch("SELECT id FROM smd.components WHERE parent_id = $1 ORDER BY id LIMIT 6",
                                component_id)
    if children:
        names = ", ".join(repr(r["id"]) for r in children[:5]) + (" ..." if len(children) > 5 else "")
        raise InventoryError(409, f"component {component_id!r} is the parent of {names}; re-parent or delete "
                                  f"those first")


async def delete_component(conn: db.Connection, component_id: str, origin: Origin):
    """The component, with its interfaces and memberships (the database cascades), and its event; its last row."""
    await check_deletable(conn, component_id)
    row = await conn.fetchrow(f"DELETE FROM smd.components WHERE id = $1 RETURNING {COMPONENT_COLUMNS}",
                              component_id)
    if row is not None:
        await _emit_component(conn, "deleted", row, origin)
    return row


async def import_components(conn: db.Connection, nodes: Sequence[tuple[str, Component, Sequence[Interface]]],
                            origin: Origin) -> None:
    """Thousands of new components and their interfaces, one statement per table (bulk import).

    The caller has checked the batch (ids, MACs, nids free; parents exist), item by item so that it can name
    each bad one.  Parents are set after every row exists, so a batch may hold parents and children in any order.
    """
    ids = [node_id for node_id, _, _ in nodes]
    await conn.execute(
        """INSERT INTO smd.components (id, type, state, role, sub_role, nid, arch, enabled, rack, unit, slot, sub_slot)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[],
                                $8::boolean[], $9::text[], $10::int[], $11::int[], $12::int[])""",
        ids, *([getattr(c, name) for _, c, _ in nodes] for name in _COMPONENT_FIELDS if name not in ("parent_id", "labels")))
    children = [(node_id, c.parent_id) for node_id, c, _ in nodes if c.parent_id is not None]
    if children:
        await conn.execute("UPDATE smd.components c SET parent_id = u.parent FROM unnest($1::text[], $2::text[]) "
                           "AS u(id, parent) WHERE c.id = u.id", [c[0] for c in children], [c[1] for c in children])
    nics = [(node_id, nic) for node_id, _, node_nics in nodes for nic in node_nics]
    if nics:
        # jsonb values travel as text: a list of lists would read as a 2-D array.
        await conn.execute(
            "INSERT INTO smd.ethernet_interfaces (id, component_id, mac, ip_addrs, description) "
            "SELECT i, c, m, a::jsonb, d FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) "
            "AS u(i, c, m, a, d)",
            [n.id for _, n in nics], [c for c, _ in nics], [n.mac for _, n in nics],
            [json.dumps(n.ip_addrs) for _, n in nics], [n.description for _, n in nics])
    await events.emit_many(conn, "smd", "components", "created", ids,
                           [{**c.spec_data(), **origin.data(), "macs": [nic.mac for nic in node_nics]}
                            for _, c, node_nics in nodes])
    await events.emit_many(conn, "smd", "ethernetinterfaces", "created", [n.id for _, n in nics],
                           [{**n.spec_data(c), **origin.data()} for c, n in nics])


async def rotate_seed_token(conn: db.Connection, component_id: str, origin: Origin) -> bool:
    """A new cloud-init seed token for the component (the old one stops working); False if there is no such one."""
    # DEFAULT draws a fresh token (core/migrations/0011_cloud_init_token.sql).
    done = await conn.fetchval("UPDATE smd.components SET cloud_init_token = DEFAULT WHERE id = $1 RETURNING true",
                               component_id)
    if done:
        await events.emit(conn, "cloudinit", "seeds", "rotated", component_id, origin.data())
    return bool(done)


async def _emit_component(conn: db.Connection, action: str, row, origin: Origin) -> None:
    await events.emit(conn, "smd", "components", action, row["id"],
                      {**Component.from_row(row).spec_data(), **origin.data()})


# Ethernet interfaces.

async def fetch_interface(conn: db.Connection, nic_id: str, *, lock: bool = False):
    """The interface's row (INTERFACE_COLUMNS), or None."""
    return await conn.fetchrow(f"SELECT {INTERFACE_COLUMNS} FROM smd.ethernet_interfaces WHERE id = $1"
                               + (" FOR UPDATE" if lock else ""), nic_id)


def interface_from_row(row) -> Interface:
    return Interface(row["id"], row["mac"], row["ip_addrs"], row["description"])


async def check_macs_free(conn: db.Connection, macs: Sequence[str], own_ids: Sequence[str] = ()) -> None:
    """A MAC belongs to one interface: 409 naming the component that owns it."""
    if not macs:
        return
    row = await conn.fetchrow("SELECT mac, component_id, id FROM smd.ethernet_interfaces "
                              "WHERE mac = ANY($1::text[]) AND NOT id = ANY($2::text[]) LIMIT 1", list(macs),
                              list(own_ids))
    if row:
        raise InventoryError(409, f"MAC {row['mac']} already belongs to component {row['component_id']!r} "
                                  f"(interface {row['id']!r})")


async def _check_component(conn: db.Connection, component_id: str, where: str) -> None:
    if not await component_exists(conn, component_id):
        raise InventoryError(422, f"no component {component_id!r}", f"{where}.componentId")


async def create_interfaces(conn: db.Connection, component_id: str, nics: Sequence[Interface], origin: Origin, *,
                            where: str = "$.spec") -> None:
    """New interfaces of an existing component, and their events."""
    await _check_component(conn, component_id, where)
    await check_macs_free(conn, [nic.mac for nic in nics])
    await _insert_interfaces(conn, component_id, nics, origin)


async def _insert_interfaces(conn: db.Connection, component_id: str, nics: Sequence[Interface],
                             origin: Origin) -> None:
    if not nics:
        return
    taken = await conn.fetchval("SELECT id FROM smd.ethernet_interfaces WHERE id = ANY($1::text[]) LIMIT 1",
                                [n.id for n in nics])
    if taken:
        raise InventoryError(409, f"interface {taken!r} already exists")
    await conn.executemany(
        "INSERT INTO smd.ethernet_interfaces (id, component_id, mac, ip_addrs, description) VALUES ($1, $2, $3, $4, $5)",
        [(nic.id, component_id, nic.mac, nic.ip_addrs, nic.description) for nic in nics])
    await events.emit_many(conn, "smd", "ethernetinterfaces", "created", [n.id for n in nics],
                           [{**n.spec_data(component_id), **origin.data()} for n in nics])


async def replace_interface(conn: db.Connection, component_id: str, nic: Interface, origin: Origin, *,
                            where: str = "$.spec"):
    """Every value of an existing interface (`nic.id`), and its event; its row."""
    await _check_component(conn, component_id, where)
    await check_macs_free(conn, [nic.mac], (nic.id,))
    row = await conn.fetchrow(
        f"UPDATE smd.ethernet_interfaces SET component_id = $2, mac = $3, ip_addrs = $4, description = $5, "
        f"updated_at = now() WHERE id = $1 RETURNING {INTERFACE_COLUMNS}", nic.id, component_id, nic.mac,
        nic.ip_addrs, nic.description)
    if row is not None:
        await events.emit(conn, "smd", "ethernetinterfaces", "updated", nic.id,
                          {**nic.spec_data(component_id), **origin.data()})
    return row


async def delete_interface(conn: db.Connection, nic_id: str, origin: Origin):
    """The interface and its event; its last row, None if there was none."""
    row = await conn.fetchrow(f"DELETE FROM smd.ethernet_interfaces WHERE id = $1 RETURNING {INTERFACE_COLUMNS}",
                              nic_id)
    if row is not None:
        await _emit_interface_deleted(conn, row, origin)
    return row


async def delete_interfaces_of(conn: db.Connection, component_id: str, origin: Origin) -> list[str]:
    """Every interface of the component, and their events; their ids."""
    rows = await conn.fetch(f"DELETE FROM smd.ethernet_interfaces WHERE component_id = $1 "
                            f"RETURNING {INTERFACE_COLUMNS}", component_id)
    for row in rows:
        await _emit_interface_deleted(conn, row, origin)
    return [row["id"] for row in rows]


async def _emit_interface_deleted(conn: db.Connection, row, origin: Origin) -> None:
    await events.emit(conn, "smd", "ethernetinterfaces", "deleted", row["id"],
                      {**interface_from_row(row).spec_data(row["component_id"]), **origin.data()})
