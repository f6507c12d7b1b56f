"""A PostgreSQL primary and its streaming-replication standby on 127.0.0.1, for failover tests.

Both clusters run from the same binaries as the session's cluster (`core.embedded`, as an unprivileged user when
we are root).  The standby is a `pg_basebackup -R` copy of the primary (standby.signal and primary_conninfo written
by pg_basebackup) on a port of its own.  `synchronous` makes the primary wait for the standby's flush before a
commit returns (synchronous_standby_names = '*'), so that a commit a client saw succeed survives the failover;
without it, replication is asynchronous and the last commits before a crash may be lost.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir
from tests.helpers.ports import free_port


class ReplicatedPair:
    def __init__(self, root: Path, *, synchronous: bool = True) -> None:
        bin_dir = pgserver_bin_dir() or system_bin_dir()
        self.root = root
        self.primary = EmbeddedPostgres(root / "primary", port=free_port(), bin_dir=bin_dir)
        self.standby = EmbeddedPostgres(root / "standby", port=free_port(), bin_dir=bin_dir)
        self.synchronous = synchronous

    def dsn(self, database: str = "postgres") -> str:
        """The multi-host DSN a site would give Chamicore: whichever of the two takes writes."""
        return (f"postgresql://postgres@127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}/{database}"
                "?target_session_attrs=read-write")

    def start(self) -> ReplicatedPair:
        # initdb without its final fsync and the servers without fsync (a test's data need not survive a power
        # cut), but with the default synchronous_commit: durable=False would turn that off and with it the wait for
        # the synchronous standby.
        self.primary._prepare_dirs()
        self.primary._run("initdb", "-D", str(self.primary.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                          "--locale=C", "--no-sync")
        self.primary.start()
        self.sql(self.primary, "ALTER SYSTEM SET fsync = off")  # the standby's copy inherits it
        self.primary._run("pg_ctl", "reload", "-D", str(self.primary.pgdata))
        # The standby's directory, made as start() makes it (owned by the service user), then filled by the copy.
        self.standby._prepare_dirs()
        self.primary._run("pg_basebackup", "-D", str(self.standby.pgdata), "-R", "-X", "stream", "-c", "fast",
                          "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres")
        self.standby.start()
        self.wait_streaming()
        if self.synchronous:  # set after the copy: the standby, once promoted, must not wait for a standby of its own
            self.sql(self.primary, "ALTER SYSTEM SET synchronous_standby_names = '*'")
            self.primary._run("pg_ctl", "reload", "-D", str(self.primary.pgdata))
            self.wait_streaming(state="sync")
        return self

    def sql(self, cluster: EmbeddedPostgres, statement: str) -> str:
        """One statement through psql; returns the unaligned, tuples-only answer (a single value)."""
        result = cluster._run("psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                              "-p", str(cluster.port), "-U", "postgres", "-d", "postgres", "-c", statement)
        return result.stdout.strip()

    def wait_streaming(self, state: str = "async", timeout: float = 30) -> None:
        """Until the primary sees the standby streaming (with that sync_state)."""
        deadline = time.monotonic() + timeout
        query = f"SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = '{state}'"
        while self.sql(self.primary, query) != "1":
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby is not streaming ({state}) after {timeout} s")
            time.sleep(0.05)

    def kill_primary(self) -> None:
        """A crash: no shutdown checkpoint, every connection cut at once."""
        self.primary.stop("immediate")

    def freeze_primary(self, resume: bool = False) -> None:
        """A machine that stops answering without closing anything (a hung host, a pulled cable): every process of
        the primary stopped (SIGSTOP; `resume` sends SIGCONT).  Connections to it open at the TCP level, then hang."""
        postmaster = int((self.primary.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        children = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat")
                    if _parent_pid(p) == postmaster]
        for pid in (postmaster, *children):
            os.kill(pid, signal.SIGCONT if resume else signal.SIGSTOP)

    def promote(self) -> None:
        """The standby becomes the primary (`pg_ctl promote -w` returns once it takes writes)."""
        self.standby._run("pg_ctl", "promote", "-w", "-t", "60", "-D", str(self.standby.pgdata))

    def destroy(self) -> None:
        for cluster in (self.primary, self.standby):
            try:
                cluster.stop("immediate")
            except (OSError, subprocess.SubprocessError, RuntimeError):
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def _parent_pid(stat_file: Path) -> int | None:
    try:
        # /proc/PID/stat: "pid (comm) state ppid ...", comm may hold spaces and parentheses.
        return int(stat_file.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None  # the process ended meanwhile
