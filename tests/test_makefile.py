"""The README's commands on a fresh clone: `make test`, `make demo` and `make lab` do the
set-up they need (venv, packages, fonts, model), and a second run does not redo it."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry_run(target: str, venv: Path) -> list[str]:
    """The commands `make TARGET` would run (``make -n``: nothing is executed)."""
    res = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "MAKEFLAGS": ""})
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


@pytest.mark.parametrize("target,command", [("test", "-m pytest"), ("demo", "optical-viz demo"), ("lab", "jupyter lab")])
def test_each_entry_point_sets_up_first(tmp_path, target, command):
    """Bug 8: on a fresh clone (no venv) `make test` / `make lab` failed with 'No module named
    pytest' / 'jupyter: No such file': they created the venv but never installed into it."""
    lines = _dry_run(target, tmp_path / "venv")
    at = lambda needle: next(i for i, line in enumerate(lines) if needle in line)
    assert at("-m venv") < at("pip install -q -e '.[dev]'") < at("fonts-noto") < at("optical-viz model build") < at(command)


def test_set_up_is_not_redone(tmp_path):
    """Once installed (the stamp is newer than pyproject.toml), only the quick checks remain."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(shutil.which("python3"))
    (venv / ".installed").touch()
    later = (REPO / "pyproject.toml").stat().st_mtime + 10
    os.utime(venv / ".installed", (later, later))
    lines = _dry_run("test", venv)
    assert not any("pip install" in line or "-m venv" in line for line in lines), lines
    assert any("-m pytest" in line for line in lines)


@pytest.mark.parametrize("target", ["test", "test-fast"])
def test_test_targets_run_two_single_threaded_workers(tmp_path, target):
    """`make test` / `make test-fast`: pytest-xdist, one single-threaded worker per core of the
    2-core machines the suite is timed on; test-fast leaves out the slow tests."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(shutil.which("python3"))
    (venv / ".installed").touch()
    runs = [line for line in _dry_run(target, venv) if "-m pytest" in line]
    assert len(runs) == 1 and "OMP_NUM_THREADS=1" in runs[0] and "-n 2 --dist worksteal" in runs[0], runs
    assert "PYTHONDONTWRITEBYTECODE= " in runs[0]  # pytest keeps its rewritten test modules (~10 s of test-fast)
    assert ('-m "not slow"' in runs[0]) == (target == "test-fast")


def test_xdist_is_a_dev_dependency():
    import tomllib

    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert any(d.startswith("pytest-xdist") for d in dev)
