"""core/inventory.py, the inventory's one write path: defaults, reference checks, one event shape."""

import pytest

from core import inventory
from core.inventory import ADMIN, Component, Interface, InventoryError, Origin


async def _events(conn, subject: str) -> list:
    return [(r["type"].rsplit(".", 2)[-2:], r["data"]) for r in await conn.fetch(
        "SELECT type, data FROM events.outbox WHERE subject = $1 ORDER BY seq", subject)]


async def test_defaults_and_one_event_shape_for_every_writer(conn):
    async with conn.transaction():
        await inventory.create_component(conn, "bmc-1", Component(type="BMC", state="Ready"),
                                         Origin("discovery", {"scan": "s1"}),
                                         interfaces=[Interface("aa0000000001", "aa:00:00:00:00:01")])
        row = await inventory.create_component(conn, "node-1", Component(type="Node", parent_id="bmc-1", nid=1),
                                               ADMIN)
    assert (row["state"], row["role"], row["arch"], row["enabled"], row["slot"]) == ("Empty", "", "x86_64", True, 0)
    await inventory.set_state(conn, "node-1", "On", Origin("power"), only_from=("Empty", "Off"))
    assert await inventory.set_state(conn, "node-1", "On", Origin("power")) is None  # unchanged: no write, no event
    (created, created_data), (updated, updated_data) = await _events(conn, "node-1")
    assert created == ["components", "created"] and updated == ["components", "updated"]
    assert created_data == {"type": "Node", "state": "Empty", "role": None, "subRole": "", "nid": 1, "arch": "x86_64",
                            "enabled": True, "parentId": "bmc-1",
                            "location": {"rack": None, "unit": None, "slot": 0, "subSlot": 0}, "labels": {},
                            "source": "admin"}
    assert updated_data == {**created_data, "state": "On", "source": "power"}
    [(kind, nic_data)] = await _events(conn, "aa0000000001")
    assert kind == ["ethernetinterfaces", "created"]
    assert nic_data == {"componentId": "bmc-1", "macAddr": "aa:00:00:00:00:01", "ipAddrs": [], "description": "",
                        "source": "discovery", "scan": "s1"}


async def test_references_are_checked_before_anything_is_written(conn):
    await inventory.create_component(conn, "node-1", Component(type="Node", nid=1), ADMIN)
    with pytest.raises(InventoryError) as refused:
        await inventory.create_component(conn, "node-2", Component(type="Node", parent_id="nobody"), ADMIN,
                                         where="$[3]")
    assert refused.value.problem.status == 422 and refused.value.problem.errors[0].field == "$[3].parentId"
    with pytest.raises(InventoryError) as refused:
        await inventory.create_component(conn, "node-2", Component(type="Node", nid=1), ADMIN)
    assert refused.value.problem.status == 409 and "nid 1 already belongs to component 'node-1'" in str(refused.value)
    with pytest.raises(InventoryError):
        await inventory.replace_component(conn, "node-1", Component(type="Node", parent_id="node-1"), ADMIN)
    assert await inventory.create_component(conn, "node-1", Component(type="Node"), ADMIN, exist_ok=True) is None
    assert await conn.fetchval("SELECT count(*) FROM smd.components") == 1
    assert await conn.fetchval("SELECT count(*) FROM events.outbox") == 1
