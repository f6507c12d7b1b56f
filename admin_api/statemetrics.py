"""Series read from the database when /metrics is scraped: the outbox backlog and the sync daemons'
replicas and failure counts.

Two cheap queries per scrape, whatever the size of the site: the outbox count stops at OUTBOX_COUNT_CAP
rows of its partial index of unsent events, and sync.status holds one row per replica.  They live here
rather than in the sync daemons because those serve no HTTP; any admin replica answers the same.
"""

from __future__ import annotations

from core import db

OUTBOX_COUNT_CAP = 100_000
# A replica that has not written its line for this long is "silent": an active one reports after every
# pass and at least every period (30 s), a standby every few seconds.
FRESH_S = 90.0
STATES = ("starting", "standby", "active", "stopped", "silent")
# sync.status counts -> counters: (job, key in counts, series).
COUNTERS = (
    ("discovery", "hosts", "chamicore_discovery_hosts_scanned_total", "Hosts a discovery scan finished."),
    ("discovery", "hostsFailed", "chamicore_discovery_hosts_failed_total", "Hosts a discovery scan failed on."),
    ("power", "tasksDone", "chamicore_power_tasks_done_total", "Per-node power tasks finished, failed or not."),
    ("power", "tasksFailed", "chamicore_power_tasks_failed_total", "Per-node power tasks that failed."),
)

OUTBOX_QUERY = (
    f"SELECT (SELECT count(*) FROM (SELECT 1 FROM events.outbox WHERE sent_at IS NULL LIMIT {OUTBOX_COUNT_CAP}) "
    "AS u) AS unsent, (SELECT extract(epoch FROM now() - created_at)::float8 FROM events.outbox "
    "WHERE sent_at IS NULL ORDER BY seq LIMIT 1) AS oldest")
SYNC_QUERY = ("SELECT job, instance, state, counts, extract(epoch FROM now() - updated_at)::float8 AS age "
              "FROM sync.status ORDER BY job, instance")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def render(conn: db.Connection) -> list[str]:
    """The lines of these series, read now."""
    unsent, oldest = await conn.fetchrow(OUTBOX_QUERY) or (0, None)  # a scalar subquery row: always one
    lines = [
        "# HELP chamicore_events_outbox_unsent Events written but not yet relayed to NATS (counted up to "
        f"{OUTBOX_COUNT_CAP}).",
        "# TYPE chamicore_events_outbox_unsent gauge",
        f"chamicore_events_outbox_unsent {unsent}",
        "# HELP chamicore_events_outbox_oldest_unsent_seconds Age of the oldest event not yet relayed (0: none).",
        "# TYPE chamicore_events_outbox_oldest_unsent_seconds gauge",
        f"chamicore_events_outbox_oldest_unsent_seconds {round(oldest or 0.0, 3)}",
    ]
    rows = await conn.fetch(SYNC_QUERY)
    replicas: dict[str, dict[str, int]] = {}
    for row in rows:
        state = row["state"] if row["age"] < FRESH_S or row["state"] == "stopped" else "silent"
        replicas.setdefault(row["job"], dict.fromkeys(STATES, 0))[state] += 1
    # `sync_job`, not `job`: Prometheus sets `job` to the scrape job.
    lines += ["# HELP chamicore_sync_replicas Sync daemon replicas by job and state ('silent': no report for "
              f"{FRESH_S:g} s).", "# TYPE chamicore_sync_replicas gauge"]
    for job, states in replicas.items():
        lines += [f'chamicore_sync_replicas{{sync_job="{_label(job)}",state="{state}"}} {count}'
                  for state, count in states.items()]
    for job, key, name, help_ in COUNTERS:
        lines += [f"# HELP {name} {help_} Per replica, since it started.", f"# TYPE {name} counter"]
        for row in rows:
            value = row["counts"].get(key)
            if row["job"] == job and isinstance(value, int):
                lines.append(f'{name}{{replica="{_label(row["instance"])}"}} {value}')
    return lines
