"""The series the admin API's /metrics reads from the database at scrape time (admin_api/statemetrics.py)."""

from tests.helpers.exposition import key, samples


async def test_outbox_backlog(api, conn):
    await conn.execute("UPDATE events.outbox SET sent_at = now()")
    quiet = samples((await api.get("/metrics")).text)
    assert quiet[key("chamicore_events_outbox_unsent")] == 0
    assert quiet[key("chamicore_events_outbox_oldest_unsent_seconds")] == 0
    await conn.execute("INSERT INTO events.outbox (source, type, created_at) VALUES "
                       "('test', 'old', now() - interval '10 minutes'), ('test', 'new', now()), ('test', 'new', now())")
    backlog = samples((await api.get("/metrics")).text)
    assert backlog[key("chamicore_events_outbox_unsent")] == 3
    assert 600 <= backlog[key("chamicore_events_outbox_oldest_unsent_seconds")] < 700
    assert backlog[key("chamicore_admin_database_up")] == 1


async def test_sync_replicas_and_failure_counters(api, conn):
    await conn.execute("""INSERT INTO sync.status (job, instance, state, counts, updated_at) VALUES
        ('power', 'a:1', 'active', '{"tasksDone": 7, "tasksFailed": 2}', now()),
        ('power', 'b:2', 'standby', '{}', now() - interval '5 minutes'),
        ('discovery', 'a:1', 'active', '{"hosts": 9, "hostsFailed": 4}', now() - interval '5 minutes'),
        ('kea', 'a:1', 'stopped', '{}', now() - interval '1 day')""")
    got = samples((await api.get("/metrics")).text)
    replicas = {(dict(labels)["sync_job"], dict(labels)["state"]): value
                for (name, labels), value in got.items() if name == "chamicore_sync_replicas"}
    assert {k: v for k, v in replicas.items() if v} == {("power", "active"): 1, ("power", "silent"): 1,
                                                         ("discovery", "silent"): 1, ("kea", "stopped"): 1}
    assert replicas[("discovery", "active")] == 0  # every state of a known job, so "no leader" is a 0, not a gap
    assert got[key("chamicore_power_tasks_done_total", replica="a:1")] == 7
    assert got[key("chamicore_power_tasks_failed_total", replica="a:1")] == 2
    assert got[key("chamicore_discovery_hosts_scanned_total", replica="a:1")] == 9
    assert got[key("chamicore_discovery_hosts_failed_total", replica="a:1")] == 4
    assert key("chamicore_power_tasks_failed_total", replica="b:2") not in got  # a replica that never counted


async def test_kea_outbox_and_sync_reports(api, conn):
    await conn.execute("""INSERT INTO sync.status (job, instance, state, counts, last_success, updated_at) VALUES
        ('kea', 'k:1', 'active', '{"passes": 12, "reservations": 250, "pushes": 3, "problems": ["x"]}',
         '2026-01-01T00:00:00Z', now()),
        ('outbox', 'o:1', 'active', '{"passes": 40, "published": 900}', NULL, now())""")
    got = samples((await api.get("/metrics")).text)
    assert got[key("chamicore_kea_reservations", replica="k:1")] == 250
    assert got[key("chamicore_kea_pushes_total", replica="k:1")] == 3
    assert got[key("chamicore_events_published_total", replica="o:1")] == 900
    assert got[key("chamicore_sync_passes_total", sync_job="kea", replica="k:1")] == 12
    assert got[key("chamicore_sync_last_success_timestamp_seconds", sync_job="kea", replica="k:1")] == 1767225600
    assert key("chamicore_sync_last_success_timestamp_seconds", sync_job="outbox", replica="o:1") not in got


async def test_progress_of_open_scans_and_transitions(api, conn):
    await conn.execute("INSERT INTO discovery.scans (id, state) VALUES ('open', 'running'), ('done', 'completed')")
    await conn.execute("""INSERT INTO discovery.scan_hosts (scan_id, target_id, host, state) VALUES
        ('open', 't', 'a', 'ok'), ('open', 't', 'b', 'failed'), ('open', 't', 'c', 'pending'),
        ('done', 't', 'a', 'ok'), ('done', 't', 'b', 'ok')""")
    running = await conn.fetchval("INSERT INTO power.transitions (operation, state) VALUES ('On', 'in-progress') "
                                  "RETURNING id")
    finished = await conn.fetchval("INSERT INTO power.transitions (operation, state) VALUES ('On', 'completed') "
                                   "RETURNING id")
    await conn.execute("INSERT INTO power.tasks (transition_id, node_id, state) VALUES ($1, 'n1', 'succeeded'), "
                       "($1, 'n2', 'verifying'), ($1, 'n3', 'verifying'), ($2, 'n1', 'failed')", running, finished)
    got = samples((await api.get("/metrics")).text)
    assert got[key("chamicore_discovery_scans_open")] == 1
    hosts = {state: got[key("chamicore_discovery_scan_hosts", state=state)]
             for state in ("pending", "running", "ok", "failed", "cancelled")}
    assert hosts == {"pending": 1, "running": 0, "ok": 1, "failed": 1, "cancelled": 0}  # the finished scan's: not
    assert got[key("chamicore_power_transitions_open")] == 1
    assert got[key("chamicore_power_transition_tasks", state="verifying")] == 2
    assert got[key("chamicore_power_transition_tasks", state="succeeded")] == 1
    assert got[key("chamicore_power_transition_tasks", state="failed")] == 0


async def test_an_unreadable_database_still_serves_the_request_counts(api, conn):
    await conn.execute("ALTER TABLE sync.status RENAME TO status_gone")
    text = (await api.get("/metrics")).text
    got = samples(text)
    assert got[key("chamicore_admin_database_up")] == 0
    assert "chamicore_admin_requests_total" in text and "chamicore_sync_replicas" not in text
