"""Run directories: atomic files and directories, metrics.jsonl, the run lock, checksums.

The trainer's use of them (a busy run directory, damaged checkpoints) is tested in
test_distill.py with real runs.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optical_viz.rundir import (
    CHECKSUMS,
    RunLock,
    RunLockedError,
    atomic_directory,
    atomic_write,
    read_metrics,
    usable_checkpoint,
    verify_checksums,
    write_checksums,
)

REPO = Path(__file__).resolve().parent.parent


def test_atomic_write_replaces_whole_files_or_nothing(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write(path, "héllo\n")
    assert path.read_text(encoding="utf-8") == "héllo\n"
    atomic_write(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    arrays = {"x": np.arange(3)}
    atomic_write(tmp_path / "a.npz", lambda f: np.savez_compressed(f, **arrays))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npz")["x"], arrays["x"])

    def fails(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fails)
    assert path.read_bytes() == b"\x00\x01"  # the old content, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]  # no temporary left
    with pytest.raises(TypeError, match="got int"):
        atomic_write(path, 3)


def test_atomic_directory(tmp_path):
    target = tmp_path / "ckpt" / "step-2"
    with atomic_directory(target, checksums=True) as tmp:
        assert not target.exists() and tmp.parent == target.parent
        (tmp / "a.bin").write_bytes(b"abc")
    assert sorted(p.name for p in target.iterdir()) == [CHECKSUMS, "a.bin"]
    assert verify_checksums(target) == []
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "b.bin").write_bytes(b"new")
            raise RuntimeError("killed")
    assert (target / "a.bin").read_bytes() == b"abc"  # untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["step-2"]  # no temporary left
    with atomic_directory(target) as tmp:
        (tmp / "b.bin").write_bytes(b"new")
    assert sorted(p.name for p in target.iterdir()) == ["b.bin"]  # replaced as a whole


def test_read_metrics(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="no run directory"):
        read_metrics(run)
    run.mkdir()
    assert read_metrics(run) == []  # nothing logged yet
    path = run / "metrics.jsonl"
    path.write_text('{"step": 0}\n\n{"step": 1, "loss": 0.5}\n{"step": 2, "lo')
    assert read_metrics(run) == read_metrics(path) == [{"step": 0}, {"step": 1, "loss": 0.5}]
    path.write_text('{"step": 0}\n{"step": 1, "lo\n')  # complete lines only: not a line cut by a kill
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2: expected one JSON object per line, got '\{\"step\": 1, \"lo'"):
        read_metrics(run)
    path.write_text('{"step": 0}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2: expected a JSON object, got list"):
        read_metrics(path)


def test_run_lock_is_exclusive_and_leaves_nothing(tmp_path):
    run = tmp_path / "run"
    with RunLock(run) as lock:
        assert lock.held and json.loads((run / ".lock").read_text())["pid"] == os.getpid()
        with pytest.raises(RunLockedError, match=rf"{run} is in use by another process \(optical-viz distill, pid {os.getpid()}"):
            RunLock(run).acquire()
        assert isinstance(RunLockedError("x"), FileExistsError)  # the CLI prints it, exit code 2
    assert not run.exists()  # created by the lock, still empty: removed
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with RunLock(run):
        pass
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


_HOLD = """
import sys, time
from optical_viz.rundir import RunLock
lock = RunLock(sys.argv[1]).acquire()  # kept referenced: held until the process dies
print("held", flush=True)
time.sleep(600)
"""


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(run)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=rf"pid {proc.pid}\b"):
            RunLock(run).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert json.loads((run / ".lock").read_text())["pid"] == proc.pid  # left behind by the kill
    with pytest.warns(RuntimeWarning, match=rf"took over the lock of a run that is no longer running \(pid {proc.pid},"):
        lock = RunLock(run).acquire()
    assert lock.previous["pid"] == proc.pid
    lock.release()


def test_checksums_catch_truncation_and_edits(tmp_path):
    def checkpoint(step: int) -> Path:
        d = tmp_path / f"step-{step}"
        d.mkdir()
        (d / "weights.bin").write_bytes(os.urandom(4096))
        (d / "state.json").write_text('{"step": %d}' % step)
        write_checksums(d)
        return d

    two, four, six = checkpoint(2), checkpoint(4), checkpoint(6)
    assert verify_checksums(six) == []
    with (six / "weights.bin").open("r+b") as f:
        f.truncate(100)
    (four / "state.json").write_text('{"step": 4}\n}')
    assert verify_checksums(six) == [f"weights.bin is damaged (sha256 differs from {CHECKSUMS}; 100 bytes now)"]
    found = usable_checkpoint([two, six, four])
    assert found.path == two and [p for p, _ in found.damaged] == [six, four]
    report = found.report()
    assert f"checkpoint {six} is damaged: weights.bin is damaged" in report
    assert f"checkpoint {four} is damaged: state.json is damaged" in report
    assert report.endswith(f"resuming from the previous intact checkpoint {two}")
    (two / "state.json").unlink()
    (tmp_path / "step-2" / CHECKSUMS).write_text((two / CHECKSUMS).read_text() + "not a line\n")
    assert verify_checksums(two) == ["state.json is missing", f"{CHECKSUMS}:3 is not '<sha256>  <file>': 'not a line'"]
    assert usable_checkpoint([two, four, six]).path is None
    (two / CHECKSUMS).unlink()
    assert "SHA256SUMS is missing" in verify_checksums(two)[0]


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775), (0o077, 0o600, 0o700)])
def test_atomic_directory_follows_the_umask(tmp_path, umask, file_mode, dir_mode):
    """safetensors writes 0600 files: a model or checkpoint directory would be unreadable by
    other users whatever their umask says; everything inside follows the umask instead."""
    from safetensors.numpy import save_file

    old = os.umask(umask)
    try:
        with atomic_directory(tmp_path / "model") as tmp:
            save_file({"w": np.zeros(3, dtype=np.float32)}, str(tmp / "model.safetensors"))
            (tmp / "1_Pooling").mkdir(mode=0o700)
            (tmp / "1_Pooling" / "config.json").write_text("{}")
    finally:
        os.umask(old)
    out = tmp_path / "model"
    assert (out / "model.safetensors").stat().st_mode & 0o777 == file_mode
    assert (out / "1_Pooling" / "config.json").stat().st_mode & 0o777 == file_mode
    assert (out / "1_Pooling").stat().st_mode & 0o777 == dir_mode
    assert out.stat().st_mode & 0o777 == dir_mode
