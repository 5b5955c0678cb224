"""Download data sets from their upstream repositories (or a mirror), verifying checksums.

Each file is streamed into a temporary file next to its destination, hashed on the way, and
moved into place with ``os.replace`` only when its size and SHA-256 match the manifest: an
interrupted or corrupt download never leaves a half-written file behind.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from optical_viz import paths
from optical_viz.data.manifest import (
    SETS,
    CorruptDataError,
    DataError,
    ManifestEntry,
    MissingDataError,
    fix_command,
    get_set,
    read_manifest,
    sha256_file,
)

__all__ = ["FetchReport", "fetch", "file_url"]

USER_AGENT = "optical-viz-data-fetch"


@dataclass
class FetchReport:
    """What ``fetch`` did: files downloaded, files already present and correct, bytes moved."""

    root: Path
    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes: int = 0


def file_url(entry: ManifestEntry, base_url: str | None = None) -> str:
    """Where to download ``entry``: upstream at the pinned commit, or ``base_url/<local path>``."""
    if base_url is None:
        return entry.url
    return f"{base_url.rstrip('/')}/{quote(entry.path)}"


def _is_intact(file: Path, entry: ManifestEntry) -> bool:
    return file.is_file() and file.stat().st_size == entry.size and sha256_file(file) == entry.sha256


def _download(entry: ManifestEntry, url: str, dest: Path, root, bar, timeout: float) -> None:
    """Stream ``url`` into ``dest`` atomically; raise a DataError naming file, set and fix."""
    fix = fix_command(entry.set, root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            try:
                response = urllib.request.urlopen(request, timeout=timeout)
            except urllib.error.HTTPError as exc:
                cls = MissingDataError if exc.code == 404 else DataError
                raise cls(
                    f"{entry.set}: cannot download {entry.path} from {url} (HTTP {exc.code} {exc.reason})",
                    file=dest, set=entry.set, fix=fix,
                ) from None
            except (urllib.error.URLError, OSError) as exc:
                raise DataError(
                    f"{entry.set}: cannot download {entry.path} from {url} ({exc}); "
                    "check the network or use --base-url with a mirror",
                    file=dest, set=entry.set, fix=fix,
                ) from None
            interrupted = None
            try:
                with response:
                    while block := response.read(1 << 16):
                        out.write(block)
                        digest.update(block)
                        size += len(block)
                        if bar is not None:
                            bar.update(len(block))
            except (OSError, http.client.HTTPException) as exc:
                interrupted = repr(exc)
            announced = response.headers.get("Content-Length", "")
            if interrupted is None and announced.isdigit() and size < int(announced):
                interrupted = f"{announced} bytes announced"  # the server closed early
            if interrupted is not None:
                raise DataError(
                    f"{entry.set}: download of {entry.path} from {url} was interrupted after "
                    f"{size} bytes ({interrupted}); nothing was written",
                    file=dest, set=entry.set, fix=fix,
                )
        if size != entry.size or digest.hexdigest() != entry.sha256:
            raise CorruptDataError(
                f"{entry.set}: downloaded {entry.path} from {url} does not match the manifest "
                f"({size} bytes, sha256 {digest.hexdigest()[:12]}...; expected {entry.size} bytes, "
                f"sha256 {entry.sha256[:12]}...); nothing was written",
                file=dest, set=entry.set, fix=fix,
            )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; data files are world-readable like any download
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch(
    name: str,
    root: str | os.PathLike | None = None,
    base_url: str | None = None,
    *,
    progress: bool = True,
    timeout: float = 60.0,
    manifest: list[ManifestEntry] | None = None,
) -> FetchReport:
    """Download the set ``name`` (or ``"all"``) into the data root, verifying each file.

    Files already present with the right checksum are skipped; a present but corrupt file is
    downloaded again. ``base_url`` replaces the upstream raw-file URLs by a mirror that serves
    the data root's layout (``<base_url>/<set>/<path>``).

    Raises:
        DataError (MissingDataError for HTTP 404, CorruptDataError for a checksum mismatch):
            for the first file that fails, after which nothing half-written is left.
    """
    from tqdm.auto import tqdm

    root_path = paths.data_root(root)
    entries = manifest if manifest is not None else read_manifest()
    names = list(SETS) if name == "all" else [get_set(name).name]
    todo: list[ManifestEntry] = []
    report = FetchReport(root=root_path)
    for e in entries:
        if e.set not in names:
            continue
        if _is_intact(root_path / e.path, e):
            report.skipped.append(e.path)
        else:
            todo.append(e)
    total = sum(e.size for e in todo)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"fetch {name}", disable=not progress) as bar:
        for e in todo:
            _download(e, file_url(e, base_url), root_path / e.path, root, bar, timeout)
            report.downloaded.append(e.path)
            report.bytes += e.size
    return report
