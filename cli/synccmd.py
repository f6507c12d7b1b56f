"""`chamicore sync status`."""

from __future__ import annotations

import asyncio
import json

from cli.command import Commands, Invocation, handles, verbs
from cli.dbcmd import _connect, require_database_url


def register(commands: Commands) -> None:
    sync = verbs(commands.add_parser("sync", help="sync daemons"), "sync_command", "ACTION")
    handles(sync.add_parser("status", help="every replica: active or standby, last success, last error, counts"),
            status)


def status(run: Invocation) -> int:
    return asyncio.run(print_status(require_database_url(run.config)))


async def print_status(dsn: str) -> int:
    from core.syncstatus import replicas

    conn = await _connect(dsn)
    try:
        found = await replicas(conn)
    finally:
        await conn.close()
    if not found:
        print("no sync daemon has reported yet: start one with `chamicore serve sync` (or `chamicore up`)")
        return 0
    for status in found:
        success = status.last_success.isoformat(timespec="seconds") if status.last_success else "never"
        print(f"{status.job:<8} {status.state:<8} {status.instance:<28} reported {status.seconds_since_report:>6.1f} s "
              f"ago  last success {success}")
        if status.last_error:
            print(f"{'':<8} last error ({status.last_error_at:%Y-%m-%d %H:%M:%S}): {status.last_error}")
        print(f"{'':<8} {json.dumps(status.counts)}")
    return 0
