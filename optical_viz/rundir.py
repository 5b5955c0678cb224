"""Run directories that survive careless hands: one writer, atomic files, verified checkpoints.

Everything that writes into a run directory (``optical_viz.distill``, the model converter,
the figures) goes through these few functions:

- :func:`atomic_write` writes a file (text, bytes or a ``write(file)`` callback) into a
  temporary beside it and renames it into place: a reader sees the old file or the new
  one, never half of one.
- :func:`atomic_directory` does the same for a directory (a checkpoint, a model): it is
  filled under a temporary name and renamed into place, complete or absent.
- :func:`read_metrics` reads ``RUN/metrics.jsonl`` (one JSON object per line): the one
  reader of it (:func:`optical_viz.plots.metrics_frame` tabulates its records for the
  figures). A last line cut short by a kill is dropped; any other bad line is an error
  naming file:line.
- :class:`RunLock` makes a run directory single-writer: a second process that opens the
  same directory is refused with the holder's pid; the lock of a killed process is
  released by the kernel (``flock``) and taken over, with a note.
- :func:`write_checksums` / :func:`verify_checksums` keep a ``SHA256SUMS`` file in a
  checkpoint directory (``sha256sum`` format, so ``sha256sum -c SHA256SUMS`` checks it
  too); :func:`usable_checkpoint` picks the newest checkpoint that verifies.
- :func:`prepare_run_dir` checks a training run directory before a run (a non-empty one
  is resumed only on request, and only with the same config) and returns the checkpoint to
  resume from; :func:`list_checkpoints` / :func:`latest_checkpoint` find the
  ``RUN/checkpoints/step-N`` directories.

>>> with RunLock("runs/demo"):          # doctest: +SKIP
...     atomic_write("runs/demo/config.yaml", "steps: 10\\n")
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

__all__ = [
    "LOCK_NAME",
    "CHECKSUMS",
    "RunLockedError",
    "RunLock",
    "atomic_write",
    "atomic_directory",
    "apply_umask",
    "read_metrics",
    "write_checksums",
    "verify_checksums",
    "CheckpointCheck",
    "usable_checkpoint",
    "list_checkpoints",
    "latest_checkpoint",
    "prepare_run_dir",
]

LOCK_NAME = ".lock"  # RUN/.lock: pid, host and start time of the process writing RUN
CHECKSUMS = "SHA256SUMS"  # in each checkpoint directory: "<sha256>  <file name>" per line
_CHUNK = 1 << 20


# ----------------------------------------------------------------------------- files


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory entry (a rename into it) to disk; a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike,
    data: str | bytes | Callable[[IO[bytes]], None],
    *,
    fsync: bool = True,
) -> Path:
    """Write ``data`` to ``path`` so that readers never see a partial file.

    data: text (written as UTF-8), bytes, or a callable that writes into the binary file
        object it is given (``lambda f: np.savez_compressed(f, **arrays)``,
        ``lambda f: torch.save(state, f)``).
    The temporary ``.tmp-<pid>-<name>`` beside ``path`` is removed when writing fails.
    Parent directories are created. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            if isinstance(data, str):
                f.write(data.encode("utf-8"))
            elif isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            elif callable(data):
                data(f)
            else:
                raise TypeError(f"atomic_write: data must be str, bytes or a callable, got {type(data).__name__}")
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        fsync_dir(path.parent)
    return path


def current_umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike) -> None:
    """Give ``path`` and everything under it the modes a plain ``touch`` / ``mkdir`` would:
    0666 (files) or 0777 (directories) less the user's umask.

    Writers that create 0600 files (safetensors, ``tempfile.mkstemp``) would otherwise leave
    model files other users cannot read; with the usual umask 022 files become 0644 and
    directories 0755, with 077 both stay private. Symbolic links are left alone.
    """
    mask = current_umask()
    root = Path(path)
    for p in [root, *root.rglob("*")] if root.is_dir() else [root]:
        if p.is_symlink():
            continue
        p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, checksums: bool = False, create: bool = True) -> Iterator[Path]:
    """Fill a directory under a temporary name; on success rename it to ``path``.

    Yields the temporary directory ``.<name>.tmp-<pid>`` beside ``path`` (removed if the
    block raises). An existing ``path`` is replaced (moved to ``.<name>.old-<pid>``, then
    deleted), so readers see the old directory or the new one, never a mix.
    checksums: write ``SHA256SUMS`` over the files before the rename (see :func:`verify_checksums`).
    create: create the temporary directory (False: the block creates it, e.g. a writer that
        calls ``mkdir`` itself).
    The directory and its files get the modes the user's umask gives (:func:`apply_umask`),
    whatever the writers inside chose (safetensors writes 0600).

    >>> with atomic_directory("runs/x/checkpoints/step-20", checksums=True) as tmp:  # doctest: +SKIP
    ...     torch.save(state, tmp / "optimizer.pt")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    if create:
        tmp.mkdir()
    try:
        yield tmp
        if checksums:
            write_checksums(tmp)
        apply_umask(tmp)
        fsync_dir(tmp)
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_metrics(source: str | os.PathLike) -> list[dict]:
    """The records of a run's ``metrics.jsonl``, in file order.

    source: a run directory (holding ``metrics.jsonl``) or the path of the file itself.
    A run directory that has not logged yet gives ``[]``; a directory that does not exist
    raises FileNotFoundError. A last line cut short (a run killed while writing it, or
    being written now) is dropped; a bad line anywhere else raises ValueError naming
    ``file:line``.
    """
    path = Path(source)
    if path.is_dir() or (not path.suffix and not path.exists()):
        path = path / "metrics.jsonl"
    if not path.parent.is_dir():
        raise FileNotFoundError(f"no run directory at {path.parent}")
    if not path.is_file():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    last = len(lines) - 1 if lines[-1].strip() else len(lines) - 2  # index of the last non-empty line
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if i == last and not raw.endswith(b"\n"):  # cut short by a kill; resume recomputes it
                break
            snippet = line[:80].decode("utf-8", "replace")
            raise ValueError(f"{path}:{i + 1}: expected one JSON object per line, got {snippet!r}") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{i + 1}: expected a JSON object, got {type(rec).__name__}")
        records.append(rec)
    return records


# ----------------------------------------------------------------------------- lock


class RunLockedError(FileExistsError):
    """Another live process holds the run directory (a FileExistsError: the directory exists
    and is taken; the command line prints the message, exit code 2)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _read_holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


class RunLock:
    """An exclusive lock on a run directory (``RUN/.lock``), held while a run writes into it.

    Uses ``flock``: the kernel releases it when the holder exits, however it exits, so the
    lock of a killed run is never in the way; taking it over says so (a RuntimeWarning naming
    the old pid). A second holder, in this process or another, gets :class:`RunLockedError`
    naming the holder's pid, host and start time. On release the lock file is removed, and
    the run directory too when the lock created it and it is still empty (a run that failed
    before writing anything leaves nothing behind).

    >>> with RunLock("runs/x"):     # doctest: +SKIP
    ...     ...                      # only this process writes runs/x
    """

    def __init__(self, run_dir: str | os.PathLike, *, purpose: str = "optical-viz distill"):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.purpose = purpose
        self._file = None
        self._created_dir = False
        self.previous: dict = {}  # the holder recorded in a stale lock file that was taken over

    def acquire(self) -> "RunLock":
        if self._file is not None:
            raise RunLockedError(f"{self.path} is already held by this RunLock")
        self._created_dir = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            f = open(self.path, "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(self.path)
                f.close()
                self._drop_created_dir()
                raise RunLockedError(self._busy_message(holder)) from None
            # the holder before us may have removed the file after we opened it: retry on the new one
            try:
                same = os.fstat(f.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            f.close()
        self._file = f
        self.previous = _read_holder(self.path)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "purpose": self.purpose}
        f.seek(0)
        f.truncate()
        f.write(json.dumps(me) + "\n")
        f.flush()
        old = self.previous.get("pid")
        if isinstance(old, int) and old != os.getpid():
            warnings.warn(
                f"{self.run_dir}: took over the lock of a run that is no longer running "
                f"(pid {old}, started {self.previous.get('started', '?')}); it was interrupted or killed",
                RuntimeWarning,
                stacklevel=2,
            )
        return self

    def _busy_message(self, holder: dict) -> str:
        pid = holder.get("pid", "?")
        where = f" on {holder['host']}" if holder.get("host") not in (None, socket.gethostname()) else ""
        since = f" since {holder['started']}" if holder.get("started") else ""
        return (
            f"run directory {self.run_dir} is in use by another process ({holder.get('purpose', 'a run')}, "
            f"pid {pid}{where}{since}): wait for it to finish (or stop it), or choose another output directory (--out)"
        )

    def release(self) -> None:
        if self._file is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still holding it: a waiter re-opens the path (see acquire)
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None
        self._drop_created_dir()

    def _drop_created_dir(self) -> None:
        if self._created_dir:
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()  # only if empty
            self._created_dir = False

    @property
    def held(self) -> bool:
        return self._file is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------- checksums


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def write_checksums(directory: str | os.PathLike) -> Path:
    """Write ``directory/SHA256SUMS`` over every regular file in it (not recursive), atomically."""
    directory = Path(directory)
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != CHECKSUMS and not p.name.startswith(".tmp-"))
    text = "".join(f"{_sha256(p)}  {p.name}\n" for p in files)
    return atomic_write(directory / CHECKSUMS, text)


def verify_checksums(directory: str | os.PathLike) -> list[str]:
    """The problems found in ``directory`` against its ``SHA256SUMS`` ([] when it is intact).

    Each problem names the file: missing, size or content changed (sha256 differs), or the
    ``SHA256SUMS`` file itself missing or unreadable.
    """
    directory = Path(directory)
    sums = directory / CHECKSUMS
    if not sums.is_file():
        return [f"{CHECKSUMS} is missing (written by an older optical_viz, or altered by hand)"]
    problems = []
    for n, line in enumerate(sums.read_text(errors="replace").splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name or "/" in name:
            problems.append(f"{CHECKSUMS}:{n} is not '<sha256>  <file>': {line[:80]!r}")
            continue
        p = directory / name
        if not p.is_file():
            problems.append(f"{name} is missing")
        elif _sha256(p) != digest:
            problems.append(f"{name} is damaged (sha256 differs from {CHECKSUMS}; {p.stat().st_size} bytes now)")
    return problems


@dataclass
class CheckpointCheck:
    """The checkpoint chosen for a resume, and the newer ones that failed verification.

    path: the newest checkpoint directory that verifies, or None.
    damaged: (checkpoint directory, its problems) for each newer one that did not verify.
    """

    path: Path | None
    damaged: list[tuple[Path, list[str]]]

    def report(self) -> str:
        """One line per damaged checkpoint and what is used instead ('' when none was damaged)."""
        if not self.damaged:
            return ""
        lines = [f"checkpoint {p} is damaged: {'; '.join(probs)}" for p, probs in self.damaged]
        if self.path is not None:
            lines.append(f"resuming from the previous intact checkpoint {self.path}")
        return "\n".join(lines)


def usable_checkpoint(checkpoints: list[Path]) -> CheckpointCheck:
    """Verify ``checkpoints`` from the newest (highest ``step-N``) down; stop at the first intact one."""
    damaged = []
    for path in sorted(checkpoints, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        problems = verify_checksums(path)
        if not problems:
            return CheckpointCheck(path, damaged)
        damaged.append((path, problems))
    return CheckpointCheck(None, damaged)


# ----------------------------------------------------------------------------- training runs


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The ``RUN/checkpoints/step-N`` directories of a run, in no order."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint directory with the highest step, or None."""
    ckpts = list_checkpoints(Path(run_dir))
    return max(ckpts, key=lambda p: int(p.name.split("-")[1])) if ckpts else None


def prepare_run_dir(config, run_dir: Path, resume: bool) -> Path | None:
    """Check a training run directory before a run; return the checkpoint to resume from (or None).

    config: the run's configuration (a ``DistillConfig``: ``to_dict()`` and ``from_yaml``);
    resuming requires it to equal ``RUN/config.yaml`` but for ``output_dir``. Without
    ``resume``, a non-empty run directory is an error (FileExistsError).
    """
    started = run_dir.exists() and any(p.name != LOCK_NAME for p in run_dir.iterdir())
    if resume and not started:  # killed before it wrote anything: nothing to resume, start it
        return None
    if resume:
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise FileNotFoundError(f"cannot resume: {saved} does not exist")
        old = type(config).from_yaml(saved).to_dict()
        new = config.to_dict()
        old.pop("output_dir"), new.pop("output_dir")
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if diff:
            raise ValueError(f"cannot resume {run_dir}: the config differs from its config.yaml in {diff}")
        found = usable_checkpoint(list_checkpoints(run_dir))
        if found.path is None and found.damaged:
            detail = "; ".join(f"{p.name}: {', '.join(probs)}" for p, probs in found.damaged)
            raise ValueError(
                f"cannot resume {run_dir}: no intact checkpoint in {run_dir / 'checkpoints'}: {detail}; "
                "start afresh with another --out (or delete the checkpoints/ folder to restart this one)"
            )
        if found.damaged:
            warnings.warn(found.report(), RuntimeWarning, stacklevel=3)
        return found.path
    if started:
        raise FileExistsError(
            f"run directory {run_dir} already exists and is not empty: pass --resume to continue it, "
            "or choose another output directory (--out)"
        )
    return None
