"""A private PostgreSQL cluster under a data directory: the embedded default.

Uses the PostgreSQL 16 binaries bundled by the `pgserver` wheel (or any
other bin directory, such as Debian's /usr/lib/postgresql/N/bin, which the
tests use).  PostgreSQL refuses to run as root, so when we are root the
server runs as an unprivileged system user `chamicore` that owns the
cluster directory.  By default it listens on a unix socket inside the data
directory only; pass `port` to also listen on 127.0.0.1.

The permissions of directories above the cluster are never changed.  The
service user must be able to reach the cluster directory (choose one under a
traversable parent, such as /var/lib/chamicore); when it cannot reach the
binaries (a virtualenv under /root), they are copied once into the cluster
directory, which it can reach.
"""

from __future__ import annotations

import glob
import grp
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

SERVICE_USER = "chamicore"


class EmbeddedPostgresError(RuntimeError):
    def __init__(self, detail: str, hint: str) -> None:
        self.detail = detail
        self.hint = hint
        super().__init__(f"{detail}\nhint: {hint}")


def pgserver_bin_dir() -> Path | None:
    """The bin directory inside the pgserver wheel, found without importing it."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
    return path if (path / "pg_ctl").exists() else None


def system_bin_dir() -> Path | None:
    """The newest Debian-style PostgreSQL bin directory, if installed."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


class EmbeddedPostgres:
    """Owns one PostgreSQL cluster directory: initialise, start, stop."""

    def __init__(
        self,
        data_dir: str | os.PathLike,
        *,
        port: int | None = None,
        bin_dir: str | os.PathLike | None = None,
        durable: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.socket_dir = self.data_dir / "run"
        self.log_file = self.data_dir / "postgres.log"
        self.port = port
        found = Path(bin_dir) if bin_dir else (pgserver_bin_dir() or system_bin_dir())
        if found is None:
            raise EmbeddedPostgresError(
                "no PostgreSQL binaries found for the embedded database",
                "pip install pgserver, or set CHAMICORE_DATABASE_URL to an existing server",
            )
        self.bin_dir = found
        self.durable = durable
        self._owner = self._service_account() if os.geteuid() == 0 else None

    # -- public -----------------------------------------------------------

    @property
    def dsn(self) -> str:
        if self.port:
            return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        return f"postgresql://postgres@/postgres?host={quote(str(self.socket_dir))}&port=5432"

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        result = self._run("pg_ctl", "status", "-D", str(self.pgdata), check=False)
        return result.returncode == 0

    def start(self) -> bool:
        """Initialise on first use and start.  Returns False if it was already running."""
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--locale=C", *([] if self.durable else ["--no-sync"]))
        if self.is_running():
            return False
        options = [
            f"-c listen_addresses={'127.0.0.1' if self.port else chr(39) * 2}",
            f"-p {self.port or 5432}",
            f"-k {self.socket_dir}",
            "-c unix_socket_permissions=0700",
            "-c max_connections=200",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.pgdata), "-l", str(self.log_file),
                  "-o", " ".join(options))
        return True

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.pgdata))

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- internals --------------------------------------------------------

    def _service_account(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(SERVICE_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                 "--shell", "/usr/sbin/nologin", SERVICE_USER],
                check=True, capture_output=True,
            )
            return pwd.getpwnam(SERVICE_USER)

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._owner is not None:
            blocked = _blocking_parent(self.data_dir, self._owner)
            if blocked is not None:
                raise EmbeddedPostgresError(
                    f"the PostgreSQL service user {SERVICE_USER!r} cannot reach {self.data_dir}: "
                    f"{blocked} (mode {stat.filemode(blocked.stat().st_mode)}) does not let it through",
                    "choose a data directory under a parent it can traverse (as root, the default is "
                    "/var/lib/chamicore: --data-dir or CHAMICORE_DATA_DIR), or set CHAMICORE_DATABASE_URL",
                )
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        if self._owner is None:
            return
        for path in (self.data_dir, self.socket_dir):
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
        if self.pgdata.exists():
            os.chown(self.pgdata, self._owner.pw_uid, self._owner.pw_gid)
        if _blocking_parent(self.bin_dir / "pg_ctl", self._owner) is not None:
            self.bin_dir = self._copy_install()

    def _copy_install(self) -> Path:
        """The PostgreSQL install copied into the cluster directory, once per version.

        pgserver's binaries find their bundled libraries at $ORIGIN/../../../pgserver.libs
        (a repaired wheel), so the copy keeps that layout: PKG/pginstall/{bin,lib,share}
        beside PKG.libs.
        """
        source = self.bin_dir.parent
        target = self.data_dir / "pginstall"
        install = target / source.parent.name / source.name
        bundled_libs = source.parent.parent / f"{source.parent.name}.libs"
        version = (source / "bin" / "postgres").stat()
        marker = f"{source}|{version.st_size}|{version.st_mtime_ns}\n"
        stamp = target / "copied-from"
        if not (stamp.exists() and stamp.read_text() == marker):
            shutil.rmtree(target, ignore_errors=True)
            for part in ("bin", "lib", "share"):
                if (source / part).exists():
                    shutil.copytree(source / part, install / part, symlinks=True)
            if bundled_libs.is_dir():
                shutil.copytree(bundled_libs, target / bundled_libs.name, symlinks=True)
            stamp.write_text(marker)
        return install / "bin"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / tool), *args]
        owner = self._owner  # None: as this process's user (subprocess's defaults)
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.data_dir,
                                user=None if owner is None else owner.pw_uid,
                                group=None if owner is None else owner.pw_gid,
                                extra_groups=None if owner is None else [])
        if check and result.returncode != 0:
            log_tail = ""
            if self.log_file.exists():
                log_tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-10:])
            raise EmbeddedPostgresError(
                f"{tool} failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()}\n{log_tail}".strip(),
                f"see {self.log_file}; remove {self.pgdata} to start from an empty database",
            )
        return result


def _blocking_parent(path: Path, user: pwd.struct_passwd) -> Path | None:
    """The first directory above `path` that `user` may not traverse, if any."""
    groups = {user.pw_gid, *(g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem)}
    for parent in reversed(path.parents):
        info = parent.stat()
        if info.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif info.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return parent
    return None
