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


def test_fast_target_runs_the_two_shards_at_once(tmp_path):
    """`make test-fast`: two single-threaded processes, one per core, shard 1/2 in the background."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(shutil.which("python3"))
    script = "\n".join(_dry_run("test-fast", venv))
    runs = [line for line in script.splitlines() if "-m pytest" in line]
    assert len(runs) == 2 and all('OMP_NUM_THREADS=1' in r and '-m "not slow"' in r for r in runs)
    assert "--shard 1/2" in runs[0] and runs[0].rstrip(" \\").endswith("& pid=$!;")
    assert "--shard 0/2" in runs[1] and "wait $pid" in script


class _Item:
    def __init__(self, name):
        self.name = name


class _Config:
    def __init__(self, shard):
        self.shard, self.deselected = shard, []
        self.hook = self

    def getoption(self, name):
        assert name == "--shard"
        return self.shard

    def pytest_deselected(self, items):
        self.deselected += items


def test_shards_split_the_collected_tests_into_disjoint_parts():
    from conftest import pytest_collection_modifyitems

    names = [f"t{k}" for k in range(7)]
    parts = []
    for i in range(3):
        items, config = [_Item(n) for n in names], _Config(f"{i}/3")
        pytest_collection_modifyitems(config, items)
        parts.append([it.name for it in items])
        assert sorted(it.name for it in config.deselected + items) == names  # nothing lost
    assert parts == [["t0", "t3", "t6"], ["t1", "t4"], ["t2", "t5"]]
    items = [_Item(n) for n in names]
    pytest_collection_modifyitems(_Config(None), items)  # no --shard: everything runs
    assert [it.name for it in items] == names
    for bad in ("2/2", "1", "a/b", "-1/2"):
        with pytest.raises(pytest.UsageError, match="--shard: expected"):
            pytest_collection_modifyitems(_Config(bad), [_Item("t0")])
