"""Download data sets from their upstream repositories (or a mirror), verifying checksums.

Each file is streamed into a temporary file next to its destination, hashed on the way, and
moved into place with ``os.replace`` only when its size and SHA-256 match the manifest: an
interrupted or corrupt download never leaves a half-written file behind.
"""
from __future__ import annotations

import dataclasses
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

__all__ = ["FetchReport", "fetch", "file_url", "convert_bicici_wa", "CONVERTERS"]

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


def _download(entry: ManifestEntry, url: str, dest: Path, root, bar, timeout: float, verify: bool = True) -> None:
    """Stream ``url`` into ``dest`` atomically; raise a DataError naming file, set and fix.
    ``verify=False``: no size and checksum check (an archive whose converted files are checked)."""
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
        if verify and (size != entry.size or digest.hexdigest() != entry.sha256):
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


def convert_bicici_wa(archive: bytes) -> dict[str, bytes]:
    """``deen.src-tgt`` and ``deen.gold`` from bicici/SMTData's ``German-English_WordAlignment.zip``.

    As the data README describes: the archive's ``*.ref.wa`` has rows ``sentence de en S``
    (0-indexed; every link sure), its ``*.de`` and ``*.en`` members the sentences (one a
    line, whitespace tokens). Output lines are ``de ||| en`` and 1-indexed ``i-j`` links in
    the order of the archive's rows; a link past its sentence is dropped. ``fetch`` checks the results
    against the manifest's SHA-256, so a different archive layout fails loudly.
    """
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]

        def member(suffix: str) -> str:
            found = sorted(n for n in names if n.endswith(suffix))
            if not found:
                raise ValueError(f"no member *{suffix} in the archive (members: {', '.join(names[:20])})")
            return found[0]

        text = {k: z.read(member(f".{k}")).decode("utf-8").splitlines() for k in ("de", "en")}
        wa = z.read(member(".ref.wa")).decode("utf-8").splitlines()
    if len(text["de"]) != len(text["en"]):
        raise ValueError(f"{len(text['de'])} German and {len(text['en'])} English sentences in the archive")
    src, tgt = [t.split() for t in text["de"]], [t.split() for t in text["en"]]
    links: list[dict[tuple[int, int], None]] = [{} for _ in src]  # ordered sets: the rows' order
    for row in wa:
        f = row.split()
        if not f:
            continue
        k, i, j = int(f[0]), int(f[1]), int(f[2])
        if 0 <= k < len(src) and 0 <= i < len(src[k]) and 0 <= j < len(tgt[k]):
            links[k][(i, j)] = None
    pairs = "".join(f"{' '.join(a)} ||| {' '.join(b)}\n" for a, b in zip(src, tgt))
    gold = "".join(" ".join(f"{i + 1}-{j + 1}" for i, j in ls) + "\n" for ls in links)
    return {"deen.src-tgt": pairs.encode("utf-8"), "deen.gold": gold.encode("utf-8")}


#: converters of upstream archives, by ``DataSet.convert``
CONVERTERS = {"bicici_wa": convert_bicici_wa}


def _fetch_converted(entries: list[ManifestEntry], root, root_path: Path, timeout: float) -> None:
    """Download each upstream archive of ``entries`` once, convert it, and write the files
    that match the manifest (all checked before any is written)."""
    for upstream in sorted({e.upstream_path for e in entries}):
        group = [e for e in entries if e.upstream_path == upstream]
        s = SETS[group[0].set]
        fix = fix_command(s.name, root)
        fd, tmp = tempfile.mkstemp(prefix=".archive.", suffix=".part")
        os.close(fd)
        try:
            archive_entry = dataclasses.replace(group[0], size=-1, sha256="")
            _download(archive_entry, archive_entry.url, Path(tmp), root, None, timeout, verify=False)
            try:
                files = CONVERTERS[s.convert](Path(tmp).read_bytes())
            except (ValueError, KeyError, UnicodeDecodeError, OSError) as exc:
                raise CorruptDataError(f"{s.name}: cannot convert {upstream} ({exc})", file=upstream, set=s.name,
                                       fix=fix) from None
        finally:
            Path(tmp).unlink(missing_ok=True)
        for e in group:
            data = files.get(e.path[len(s.name) + 1:])
            if data is None or len(data) != e.size or hashlib.sha256(data).hexdigest() != e.sha256:
                raise CorruptDataError(
                    f"{s.name}: {e.path} converted from {upstream} does not match the manifest; nothing was written",
                    file=root_path / e.path, set=s.name, fix=fix,
                )
        for e in group:
            dest = root_path / e.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, part = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            with os.fdopen(fd, "wb") as out:
                out.write(files[e.path[len(s.name) + 1:]])
            os.chmod(part, 0o644)
            os.replace(part, dest)


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
    the data root's layout (``<base_url>/<set>/<path>``). A set made from an upstream archive
    (``DataSet.convert``, e.g. ``word_alignment_deen``) is downloaded as that archive, converted,
    and written only when every converted file matches the manifest; a mirror serves the
    converted files.

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
    converted = [e for e in todo if SETS[e.set].convert and base_url is None]  # a mirror serves them as they are
    todo = [e for e in todo if e not in converted]
    if converted:
        _fetch_converted(converted, root, root_path, timeout)
        report.downloaded += [e.path for e in converted]
        report.bytes += sum(e.size for e in converted)
    total = sum(e.size for e in todo)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"fetch {name}", disable=not progress) as bar:
        for e in todo:
            _download(e, file_url(e, base_url), root_path / e.path, root, bar, timeout)
            report.downloaded.append(e.path)
            report.bytes += e.size
    return report
