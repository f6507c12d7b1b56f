"""The series the admin API's /metrics reads from the database at scrape time (admin_api/statemetrics.py)."""

import re

SAMPLE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$")


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, labels, value = SAMPLE.match(line).groups()
            pairs = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or ""))
            found[(name, pairs)] = float(value)
    return found


def key(name: str, **labels: str) -> tuple[str, frozenset]:
    return name, frozenset(labels.items())


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


async def test_an_unreadable_database_still_serves_the_request_counts(api, conn):
    await conn.execute("ALTER TABLE sync.status RENAME TO status_gone")
    text = (await api.get("/metrics")).text
    got = samples(text)
    assert got[key("chamicore_admin_database_up")] == 0
    assert "chamicore_admin_requests_total" in text and "chamicore_sync_replicas" not in text
