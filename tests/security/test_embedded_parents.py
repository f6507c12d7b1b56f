"""Finding 12: the embedded PostgreSQL, run as root, leaves the modes of the directories above it alone."""

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from core.embedded import EmbeddedPostgres, EmbeddedPostgresError, pgserver_bin_dir, system_bin_dir
from tests.helpers.ports import free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the service user is used only when running as root")


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def closed_dir():
    """A 0700 directory, like /root: the service user may not pass it."""
    path = Path(tempfile.mkdtemp(prefix="chamicore-closed-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_data_dir_behind_a_closed_parent_fails_with_a_hint_and_changes_nothing(closed_dir):
    cluster = EmbeddedPostgres(closed_dir / "data" / "pg", port=free_port(),
                               bin_dir=system_bin_dir() or pgserver_bin_dir(), durable=False)
    with pytest.raises(EmbeddedPostgresError) as failure:
        cluster.start()
    assert str(closed_dir) in failure.value.detail and "--data-dir" in failure.value.hint
    assert mode(closed_dir) == 0o700


def test_binaries_behind_a_closed_parent_are_copied_not_opened(closed_dir):
    source = pgserver_bin_dir()
    if source is None:
        pytest.skip("needs pgserver's bundled binaries (installed with the test dependencies)")
    # A site-packages of its own inside a closed directory, as a virtualenv under /root has.
    site = closed_dir / "venv" / "site-packages"
    shutil.copytree(source.parent.parent, site / "pgserver", symlinks=True)
    shutil.copytree(source.parent.parent.parent / "pgserver.libs", site / "pgserver.libs", symlinks=True)
    install = site / "pgserver" / "pginstall"
    work = Path(tempfile.mkdtemp(prefix="chamicore-open-"))
    work.chmod(0o711)
    cluster = EmbeddedPostgres(work / "pg", port=free_port(), bin_dir=install / "bin", durable=False)
    try:
        assert cluster.start()
        assert cluster.is_running()
        assert cluster.bin_dir.is_relative_to(work / "pg" / "pginstall")
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    assert mode(closed_dir) == 0o700
