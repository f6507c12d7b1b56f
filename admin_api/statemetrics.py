"""Series read from the database when /metrics is scraped: the outbox backlog, the sync daemons' replicas and
what each reports (discovery and power totals, Kea reservations, events relayed), and the progress of the
discovery scans and power transitions under way.

A few cheap queries per scrape, whatever the size of the site: the outbox count stops at OUTBOX_COUNT_CAP
rows of its partial index of unsent events, sync.status holds one row per replica, and the progress queries
start from the partial indexes of open scans and transitions.  They live here rather than in the sync
daemons because those serve no HTTP; any admin replica answers the same.
"""

from __future__ import annotations

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from core import db

OUTBOX_COUNT_CAP = 100_000
# A replica that has not written its line for this long is "silent": an active one reports after every
# pass and at least every period (30 s), a standby every few seconds.
FRESH_S = 90.0
STATES = ("starting", "standby", "active", "stopped", "silent")
SCAN_HOST_STATES = ("pending", "running", "ok", "failed", "cancelled")
TASK_STATES = ("pending", "sending", "verifying", "succeeded", "failed", "aborted")
# sync.status counts -> series, per replica: (job, key in counts, name, help, Family).
REPORTED = (
    ("discovery", "hosts", "chamicore_discovery_hosts_scanned", "Hosts a discovery scan finished.",
     CounterMetricFamily),
    ("discovery", "hostsFailed", "chamicore_discovery_hosts_failed", "Hosts a discovery scan failed on.",
     CounterMetricFamily),
    ("power", "tasksDone", "chamicore_power_tasks_done", "Per-node power tasks finished, failed or not.",
     CounterMetricFamily),
    ("power", "tasksFailed", "chamicore_power_tasks_failed", "Per-node power tasks that failed.", CounterMetricFamily),
    ("kea", "reservations", "chamicore_kea_reservations", "DHCP reservations Kea holds from the inventory, as last "
     "pushed.", GaugeMetricFamily),
    ("kea", "pushes", "chamicore_kea_pushes", "Configurations pushed to Kea.", CounterMetricFamily),
    ("outbox", "published", "chamicore_events_published", "Events relayed to NATS.", CounterMetricFamily),
)

OUTBOX_QUERY = (
    f"SELECT (SELECT count(*) FROM (SELECT 1 FROM events.outbox WHERE sent_at IS NULL LIMIT {OUTBOX_COUNT_CAP}) "
    "AS u) AS unsent, (SELECT extract(epoch FROM now() - created_at)::float8 FROM events.outbox "
    "WHERE sent_at IS NULL ORDER BY seq LIMIT 1) AS oldest")
SYNC_QUERY = ("SELECT job, instance, state, counts, extract(epoch FROM now() - updated_at)::float8 AS age, "
              "extract(epoch FROM last_success)::float8 AS last_success FROM sync.status ORDER BY job, instance")
SCANS_QUERY = ("SELECT h.state, count(*) FROM discovery.scans s JOIN discovery.scan_hosts h ON h.scan_id = s.id "
               "WHERE s.state IN ('pending', 'running') GROUP BY h.state")
OPEN_SCANS_QUERY = "SELECT count(*) FROM discovery.scans WHERE state IN ('pending', 'running')"
TRANSITIONS_QUERY = ("SELECT t.state, count(*) FROM power.transitions r JOIN power.tasks t ON t.transition_id = r.id "
                     "WHERE r.state IN ('new', 'in-progress', 'abort-signaled') GROUP BY t.state")
OPEN_TRANSITIONS_QUERY = "SELECT count(*) FROM power.transitions WHERE state IN ('new', 'in-progress', 'abort-signaled')"


async def read(conn: db.Connection) -> list[Metric]:
    """These series' families, read now."""
    unsent, oldest = await conn.fetchrow(OUTBOX_QUERY) or (0, None)  # a scalar subquery row: always one
    families: list[Metric] = [
        GaugeMetricFamily("chamicore_events_outbox_unsent", "Events written but not yet relayed to NATS (counted up "
                          f"to {OUTBOX_COUNT_CAP}).", value=unsent),
        GaugeMetricFamily("chamicore_events_outbox_oldest_unsent_seconds", "Age of the oldest event not yet relayed "
                          "(0: none): the relay's lag.", value=round(oldest or 0.0, 3)),
    ]
    rows = await conn.fetch(SYNC_QUERY)
    replicas: dict[str, dict[str, int]] = {}
    for row in rows:
        state = row["state"] if row["age"] < FRESH_S or row["state"] == "stopped" else "silent"
        replicas.setdefault(row["job"], dict.fromkeys(STATES, 0))[state] += 1
    # `sync_job`, not `job`: Prometheus sets `job` to the scrape job.
    states = GaugeMetricFamily("chamicore_sync_replicas", "Sync daemon replicas by job and state ('silent': no "
                               f"report for {FRESH_S:g} s).", labels=("sync_job", "state"))
    for job, counts in replicas.items():
        for state, count in counts.items():
            states.add_metric((job, state), count)
    succeeded = GaugeMetricFamily("chamicore_sync_last_success_timestamp_seconds",
                                  "When a sync daemon replica last finished a pass without error.",
                                  labels=("sync_job", "replica"))
    passes = CounterMetricFamily("chamicore_sync_passes", "Passes of a sync daemon replica, since it started.",
                                 labels=("sync_job", "replica"))
    for row in rows:
        if row["last_success"] is not None:
            succeeded.add_metric((row["job"], row["instance"]), row["last_success"])
        if isinstance(row["counts"].get("passes"), int):
            passes.add_metric((row["job"], row["instance"]), row["counts"]["passes"])
    families += [states, succeeded, passes]
    for job, key, name, help_, family in REPORTED:
        series = family(name, f"{help_} Per replica, since it started.", labels=("replica",))
        for row in rows:
            value = row["counts"].get(key)
            if row["job"] == job and isinstance(value, int):
                series.add_metric((row["instance"],), value)
        families.append(series)
    families += await _progress(conn)
    return families


async def _progress(conn: db.Connection) -> list[Metric]:
    """The hosts of the discovery scans and the tasks of the power transitions under way, by state."""
    hosts: dict[str, int] = {state: count for state, count in await conn.fetch(SCANS_QUERY)}
    tasks: dict[str, int] = {state: count for state, count in await conn.fetch(TRANSITIONS_QUERY)}
    scan_hosts = GaugeMetricFamily("chamicore_discovery_scan_hosts", "Hosts of the discovery scans under way, by "
                                   "state.", labels=("state",))
    for state in SCAN_HOST_STATES:
        scan_hosts.add_metric((state,), hosts.get(state, 0))
    transition_tasks = GaugeMetricFamily("chamicore_power_transition_tasks", "Per-node tasks of the power transitions "
                                         "under way, by state.", labels=("state",))
    for state in TASK_STATES:
        transition_tasks.add_metric((state,), tasks.get(state, 0))
    return [
        GaugeMetricFamily("chamicore_discovery_scans_open", "Discovery scans pending or running.",
                          value=await conn.fetchval(OPEN_SCANS_QUERY)),
        scan_hosts,
        GaugeMetricFamily("chamicore_power_transitions_open", "Power transitions not finished.",
                          value=await conn.fetchval(OPEN_TRANSITIONS_QUERY)),
        transition_tasks,
    ]
