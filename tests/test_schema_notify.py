"""The triggers of 0005_boot_notify.sql, heard by a real asyncpg listener."""

import asyncio
import json

import pytest

from core import db
from tests.helpers.seed import add_node

CHANNEL = "chamicore_boot"


@pytest.fixture
async def heard(dsn):
    listener = await db.connect(dsn)
    queue: asyncio.Queue = asyncio.Queue()
    await listener.add_listener(CHANNEL, lambda *args: queue.put_nowait(json.loads(args[3])))

    async def take(count: int = 1, timeout: float = 2.0):
        messages = [await asyncio.wait_for(queue.get(), timeout) for _ in range(count)]
        await asyncio.sleep(0.05)
        assert queue.empty(), f"unexpected extra notification {queue.get_nowait()}"
        return messages

    yield take
    await listener.close()


async def test_single_row_insert_update_delete(conn, heard):
    await conn.execute("INSERT INTO smd.components (id, type, role) VALUES ('node-1', 'Node', 'Compute')")
    (message,) = await heard()
    assert message == {"table": "smd.components", "op": "INSERT", "keys": {"componentIds": ["node-1"]}}

    await conn.execute("UPDATE smd.components SET nid = 7 WHERE id = 'node-1'")
    (message,) = await heard()
    assert message["op"] == "UPDATE" and message["keys"] == {"componentIds": ["node-1"]}

    await conn.execute("DELETE FROM smd.components WHERE id = 'node-1'")
    (message,) = await heard()
    assert message["op"] == "DELETE" and message["keys"] == {"componentIds": ["node-1"]}


async def test_update_that_touches_nothing_is_silent(conn, heard):
    await conn.execute("UPDATE smd.components SET nid = 1 WHERE id = 'missing'")
    with pytest.raises(asyncio.TimeoutError):
        await heard(timeout=0.3)


async def test_interface_move_names_both_components_and_the_mac(conn, heard):
    await add_node(conn, "node-a", ["aa:aa:aa:aa:aa:01"])
    await add_node(conn, "node-b")
    await heard(3)  # component a, interface, component b
    await conn.execute("UPDATE smd.ethernet_interfaces SET component_id = 'node-b' WHERE mac = 'aa:aa:aa:aa:aa:01'")
    (message,) = await heard()
    assert message["table"] == "smd.ethernet_interfaces"
    assert sorted(message["keys"]["componentIds"]) == ["node-a", "node-b"]
    assert message["keys"]["macs"] == ["aa:aa:aa:aa:aa:01"]


async def test_bulk_statement_sends_one_notification_with_every_key(conn, heard):
    await conn.execute(
        "INSERT INTO smd.components (id, type) SELECT 'node-' || i, 'Node' FROM generate_series(1, 50) i")
    (message,) = await heard()
    assert sorted(message["keys"]["componentIds"]) == sorted(f"node-{i}" for i in range(1, 51))


async def test_statement_too_big_for_a_payload_sends_resync(conn, heard):
    await conn.execute(
        "INSERT INTO smd.components (id, type) SELECT 'node-' || i, 'Node' FROM generate_series(1, 2000) i")
    (message,) = await heard()
    assert message == {"table": "smd.components", "op": "INSERT", "resync": True}
    await conn.execute("TRUNCATE smd.components CASCADE")
    messages = await heard(count=5)  # the cascade reaches every watched table
    assert all(m["resync"] and m["op"] == "TRUNCATE" for m in messages)
    assert {m["table"] for m in messages} == {
        "smd.components", "smd.ethernet_interfaces", "smd.group_members", "bss.boot_params", "cloudinit.payloads"}


async def test_scoped_rows_carry_their_scope(conn, heard):
    await conn.execute("INSERT INTO smd.groups (name) VALUES ('rack1')")
    await conn.execute(
        "INSERT INTO bss.boot_params (id, group_name, kernel) VALUES ('bp-g', 'rack1', 'http://k')")
    (message,) = await heard()
    assert message == {"table": "bss.boot_params", "op": "INSERT", "keys": {"groups": ["rack1"]}}
    await conn.execute("INSERT INTO bss.boot_params (id, role, kernel) VALUES ('bp-r', 'Storage', 'http://k')")
    (message,) = await heard()
    assert message["keys"] == {"roles": ["Storage"]}
    await conn.execute("INSERT INTO bss.boot_params (id, mac, kernel) VALUES ('bp-m', 'aa:bb:cc:dd:ee:ff', 'http://k')")
    (message,) = await heard()
    assert message["keys"] == {"macs": ["aa:bb:cc:dd:ee:ff"]}
    await conn.execute("INSERT INTO bss.boot_params (id, nid, kernel) VALUES ('bp-n', 12, 'http://k')")
    (message,) = await heard()
    assert message["keys"] == {"nids": [12]}
    await conn.execute("UPDATE bss.boot_params SET nid = 13 WHERE id = 'bp-n'")
    (message,) = await heard()
    assert message["keys"] == {"nids": [12, 13]}
    await conn.execute("INSERT INTO cloudinit.payloads (id, user_data) VALUES ('site', '#cloud-config')")
    (message,) = await heard()
    assert message == {"table": "cloudinit.payloads", "op": "INSERT", "keys": {"site": True}}


async def test_group_membership_changes_name_the_members(conn, heard):
    await add_node(conn, "node-1", groups=["compute"])
    messages = await heard(2)
    assert messages[1] == {"table": "smd.group_members", "op": "INSERT", "keys": {"componentIds": ["node-1"]}}
    await conn.execute("DELETE FROM smd.groups WHERE name = 'compute'")
    (message,) = await heard()  # the cascade removes the membership
    assert message == {"table": "smd.group_members", "op": "DELETE", "keys": {"componentIds": ["node-1"]}}


async def test_nothing_is_sent_when_the_transaction_rolls_back(conn, heard):
    tx = conn.transaction()
    await tx.start()
    await conn.execute("INSERT INTO smd.components (id, type) VALUES ('node-x', 'Node')")
    await tx.rollback()
    with pytest.raises(asyncio.TimeoutError):
        await heard(timeout=0.3)
