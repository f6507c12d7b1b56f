"""The wheel (what deploy/container/Dockerfile installs) holds every package, the compiled boot path and the SQL."""

import os
import subprocess
import sys
import zipfile

import pytest

from tests.helpers.paths import ROOT

DOCKERFILE = ROOT / "deploy" / "container" / "Dockerfile"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    [path] = out.glob("chamicore-*.whl")
    return path


def test_the_wheel_runs_on_its_own(wheel, tmp_path):
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("_render", "_dispatch", "_activity"):
        assert any(n.startswith(f"hotpath/{module}") and n.endswith(".so") for n in names), module
    assert sum(n.startswith("core/migrations/") and n.endswith(".sql") for n in names) == len(
        list((ROOT / "core" / "migrations").glob("*.sql")))
    target = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    # From outside the checkout, so only the wheel's code can be imported.
    env = dict(os.environ, PYTHONPATH=str(target))
    check = subprocess.run(
        [sys.executable, "-c",
         "import hotpath._render, hotpath._dispatch, hotpath._activity, hotpath.app, admin_api.app, sync.runner, "
         "cli.main, core.migrate;"
         "from core.migrate import bundled_migrations; print(hotpath._render.__file__, len(bundled_migrations()))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    where, count = check.stdout.split()
    assert where.startswith(str(target)) and int(count) == len(list((ROOT / "core" / "migrations").glob("*.sql")))
    usage = subprocess.run([sys.executable, "-m", "cli.main", "--help"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=60)
    assert usage.returncode == 0 and "power" in usage.stdout and "discovery" in usage.stdout


def test_the_dockerfile_builds_one_non_root_image_for_all_roles():
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip() and
             not line.strip().startswith("#")]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    runtime = lines[lines.index(stages[1]):]
    assert not any("gcc" in line for line in runtime)  # no compiler in the image that runs
    assert any('import hotpath._render, hotpath._dispatch' in line for line in runtime)
    user = next(line for line in runtime if line.startswith("USER "))
    assert user.split()[1].split(":")[0] not in ("0", "root")
    assert runtime.index(user) < runtime.index('ENTRYPOINT ["chamicore"]')
    # Every package the wheel needs is copied into the build stage.
    copied = {source for line in lines if line.startswith("COPY ") and "--from" not in line
              for source in line.split()[1:-1]}
    assert {"core", "hotpath", "admin_api", "sync", "cli", "setup.py"} <= copied
