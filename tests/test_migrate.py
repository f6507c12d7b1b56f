import asyncio
import dataclasses

import asyncpg
import pytest

from core import db, migrate


async def test_from_empty_then_rerun_is_a_noop(empty_dsn):
    conn = await db.connect(empty_dsn)
    try:
        applied = await migrate.migrate(conn)
        bundled = migrate.bundled_migrations()
        assert [m.version for m in applied] == [m.version for m in bundled]
        schemas = {r["nspname"] for r in await conn.fetch("SELECT nspname FROM pg_namespace")}
        assert {"smd", "bss", "cloudinit", "events"} <= schemas
        assert all(state.applied for state in await migrate.status(conn))
        assert await migrate.migrate(conn) == []
        assert await conn.fetchval("SELECT count(*) FROM public.schema_migrations") == len(bundled)
    finally:
        await conn.close()


async def test_status_lists_pending_before_migrating(empty_dsn):
    conn = await db.connect(empty_dsn)
    try:
        states = await migrate.status(conn)
        assert states and not any(state.applied for state in states)
    finally:
        await conn.close()


async def test_edited_migration_is_refused(dsn):
    conn = await db.connect(dsn)
    try:
        migrations = migrate.bundled_migrations()
        edited = [dataclasses.replace(migrations[0], sql=migrations[0].sql + "\n-- edited\n"), *migrations[1:]]
        with pytest.raises(migrate.MigrationError, match="edited after it was applied"):
            await migrate.migrate(conn, edited)
        with pytest.raises(migrate.MigrationError, match="0001_smd.sql"):
            await migrate.status(conn, edited)
    finally:
        await conn.close()


async def test_database_ahead_of_code_is_refused(dsn):
    conn = await db.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO public.schema_migrations (version, name, checksum) VALUES (9999, 'from_the_future', 'x')")
        with pytest.raises(migrate.MigrationError, match="9999_from_the_future") as info:
            await migrate.migrate(conn)
        assert "ahead" in info.value.hint
    finally:
        await conn.close()


async def test_failed_migration_leaves_nothing_behind(empty_dsn):
    conn = await db.connect(empty_dsn)
    try:
        broken = [migrate.Migration(1, "good", "CREATE TABLE public.a (x int)"),
                  migrate.Migration(2, "bad", "CREATE TABLE public.b (x int); SELECT no_such_function()")]
        with pytest.raises(migrate.MigrationError, match="0002_bad.sql failed"):
            await migrate.migrate(conn, broken)
        assert await conn.fetchval("SELECT to_regclass('public.a') IS NOT NULL")
        assert await conn.fetchval("SELECT to_regclass('public.b') IS NULL")
        assert await conn.fetchval("SELECT max(version) FROM public.schema_migrations") == 1
    finally:
        await conn.close()


async def test_concurrent_starters_apply_each_migration_once(empty_dsn):
    conns = [await db.connect(empty_dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate.migrate(c) for c in conns))
        applied = [m.version for result in results for m in result]
        assert sorted(applied) == [m.version for m in migrate.bundled_migrations()]
        # Exactly one starter did the work; the others waited on the lock and found nothing left.
        assert sum(1 for result in results if result) == 1
    finally:
        for c in conns:
            await c.close()


async def test_schema_rejects_bad_rows(conn):
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("INSERT INTO smd.components (id, type) VALUES ('bad id', 'Node')")
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("INSERT INTO smd.components (id, type) VALUES ('node-1', 'Toaster')")
    await conn.execute("INSERT INTO smd.components (id, type) VALUES ('node-1', 'Node')")
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("INSERT INTO smd.ethernet_interfaces (id, component_id, mac) VALUES ('n', 'node-1', 'AA:BB')")
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("INSERT INTO bss.boot_params (id, mac, role, kernel) VALUES ('bp', 'aa:bb:cc:dd:ee:ff', 'Compute', 'k')")
    await conn.execute("INSERT INTO bss.boot_params (id, role, kernel) VALUES ('bp1', 'Compute', 'k')")
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute("INSERT INTO bss.boot_params (id, role, kernel) VALUES ('bp2', 'Compute', 'k')")
    await conn.execute("INSERT INTO bss.boot_params (id, kernel) VALUES ('site', 'k')")
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute("INSERT INTO bss.boot_params (id, kernel) VALUES ('site2', 'k')")


async def test_a_component_joins_at_most_one_partition(conn):
    await conn.execute("INSERT INTO smd.components (id, type) VALUES ('node-1', 'Node')")
    await conn.execute("INSERT INTO smd.groups (name, exclusive) VALUES ('p1', true), ('p2', true), ('g1', false)")
    await conn.execute("INSERT INTO smd.group_members (group_name, exclusive, component_id) VALUES ('p1', true, 'node-1')")
    await conn.execute("INSERT INTO smd.group_members (group_name, component_id) VALUES ('g1', 'node-1')")
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute("INSERT INTO smd.group_members (group_name, exclusive, component_id) VALUES ('p2', true, 'node-1')")
    # A member row cannot claim a partition's exclusivity wrongly.
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await conn.execute("INSERT INTO smd.group_members (group_name, exclusive, component_id) VALUES ('p2', false, 'node-1')")


async def test_updated_at_moves_on_plain_sql_updates(conn):
    await conn.execute("INSERT INTO smd.components (id, type) VALUES ('node-1', 'Node')")
    before = await conn.fetchval("SELECT updated_at FROM smd.components WHERE id = 'node-1'")
    await conn.execute("UPDATE smd.components SET role = 'Service' WHERE id = 'node-1'")
    after = await conn.fetchval("SELECT updated_at FROM smd.components WHERE id = 'node-1'")
    assert after > before
