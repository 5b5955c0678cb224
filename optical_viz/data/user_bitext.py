"""Your own bitext: a TSV file (``src<TAB>tgt``) or a pair of aligned text files.

A ``bitext_sources`` entry of a distillation config is a named source (``flores``,
``nllb_seed``, ``mafand``, ``tatoeba``), a path to a TSV file, or a mapping::

    bitext_sources:
      - flores
      - data/my-yor-eng.tsv                                   # the config's one language
      - {path: data/more.tsv, lang: yor_Latn}                 # a TSV for one language
      - {src: data/train.yo, tgt: data/train.en, lang: yo}    # aligned text files

Files are UTF-8, one sentence (pair) per line; a TSV may start with a header line
(``src<TAB>tgt``, ``source<TAB>target``). Reading validates every line: a TSV line needs
exactly one tab (else ValueError naming file:line); pairs with an empty side are dropped,
exact duplicate pairs are dropped, and pairs whose character lengths differ more than
``MAX_LENGTH_RATIO`` times are kept but reported; each with file:line in one warning per
file. :class:`BitextFile` records the file's sha256 for the run's provenance.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from optical_viz.data.languages import resolve_language

__all__ = ["BitextFile", "check_bitext_source", "bitext_source_language", "read_bitext_file", "is_named_source",
           "MAX_LENGTH_RATIO"]

MAX_LENGTH_RATIO = 4.0  # characters; CJK vs Latin translations reach ~3
_MIN_CHARS = 8  # shorter sides are not judged by ratio
_HEADERS = {("src", "tgt"), ("source", "target"), ("src", "trg")}
_KEYS = ({"path"}, {"path", "lang"}, {"src", "tgt"}, {"src", "tgt", "lang"})


@dataclass
class BitextFile:
    """What was read from one user bitext source (the run's provenance).

    files: the path(s) read (TSV, or source and target files), sha256: their sha256s
    (same order), pairs: pairs kept; empty / duplicates: pairs dropped for an empty side or
    as an exact repeat; ratio_outliers: kept pairs with a length ratio above
    ``MAX_LENGTH_RATIO``; issues: up to 20 ``file:line: why`` strings.
    """

    lang: str
    files: list[str]
    sha256: list[str]
    pairs: int = 0
    empty: int = 0
    duplicates: int = 0
    ratio_outliers: int = 0
    issues: list[str] = field(default_factory=list)
    src: list[str] = field(default_factory=list, repr=False)
    tgt: list[str] = field(default_factory=list, repr=False)

    def provenance(self) -> dict:
        """A JSON-ready record without the sentences."""
        d = asdict(self)
        del d["src"], d["tgt"]
        return d


def is_named_source(entry) -> bool:
    from optical_viz.data.loaders import BITEXT_SOURCES

    return isinstance(entry, str) and entry in BITEXT_SOURCES


def _files(entry) -> list[Path]:
    if isinstance(entry, (str, os.PathLike)):
        return [Path(entry).expanduser()]
    return [Path(entry["path"]).expanduser()] if "path" in entry else [Path(entry["src"]).expanduser(), Path(entry["tgt"]).expanduser()]


def check_bitext_source(entry) -> None:
    """Raise ValueError / FileNotFoundError unless ``entry`` is a named source, an existing TSV
    file, or a mapping ``{path[, lang]}`` / ``{src, tgt[, lang]}`` of existing files."""
    from optical_viz.data.loaders import BITEXT_SOURCES

    if is_named_source(entry):
        return
    if isinstance(entry, dict):
        keys = set(entry)
        if keys not in _KEYS or not all(isinstance(v, (str, os.PathLike)) for v in entry.values()):
            raise ValueError(
                f"bitext source {entry!r}: a mapping needs {{path: TSV}} or {{src: FILE, tgt: FILE}}, "
                "each with an optional lang, all strings"
            )
        if "lang" in entry:
            resolve_language(entry["lang"])  # KeyError / ValueError for an unknown code
    elif not isinstance(entry, (str, os.PathLike)):
        raise ValueError(f"bitext source {entry!r}: expected a name, a path or a mapping, got {type(entry).__name__}")
    for f in _files(entry):
        if not f.is_file():
            looks_named = isinstance(entry, str) and os.sep not in entry and "." not in entry
            raise FileNotFoundError(
                f"bitext source {str(f)!r} is not a file"
                + (f" nor one of the named sources {sorted(BITEXT_SOURCES)}" if looks_named else "")
                + "; give a TSV (src<TAB>tgt) or {src: FILE, tgt: FILE}"
            )


def bitext_source_language(entry) -> str | None:
    """The language a user source is for (its ``lang``, resolved), or None if it does not say."""
    if isinstance(entry, dict) and "lang" in entry:
        return resolve_language(entry["lang"])
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def read_bitext_file(entry, lang: str) -> BitextFile:
    """Read, validate, deduplicate a user bitext source for language ``lang`` (see the module
    docstring). Raises ValueError naming file:line for a malformed TSV or files of different
    lengths; warns (one line per file) about dropped and suspicious pairs."""
    check_bitext_source(entry)
    files = _files(entry)
    rows: list[tuple[str, str, str]] = []  # (src, tgt, where)
    if len(files) == 1:
        lines = _read_lines(files[0])
        bad = []
        for n, line in enumerate(lines, 1):
            line = line.rstrip("\r")
            if n == 1 and tuple(x.strip().lower() for x in line.split("\t")) in _HEADERS:
                continue
            if line.count("\t") != 1:
                if line.strip():
                    bad.append(f"{n} ({line.count(chr(9))} tabs)")
                continue
            a, b = line.split("\t")
            rows.append((a.strip(), b.strip(), f"{files[0]}:{n}"))
        if bad:
            raise ValueError(
                f"{files[0]}: {len(bad)} line(s) without exactly one tab, e.g. line {', '.join(bad[:5])}: "
                "each line must be src<TAB>tgt"
            )
    else:
        a, b = _read_lines(files[0]), _read_lines(files[1])
        if len(a) != len(b):
            raise ValueError(f"{files[0]} has {len(a)} lines but {files[1]} has {len(b)}: the files must be aligned line by line")
        rows = [(x.strip(), y.strip(), f"{files[0]}:{n}") for n, (x, y) in enumerate(zip(a, b), 1)]
    out = BitextFile(lang=lang, files=[str(f) for f in files], sha256=[_sha256(f) for f in files])
    seen: set[tuple[str, str]] = set()
    for s, t, where in rows:
        if not s or not t:
            out.empty += 1
            out.issues.append(f"{where}: empty {'source' if not s else 'target'} side (dropped)")
            continue
        if (s, t) in seen:
            out.duplicates += 1
            continue
        seen.add((s, t))
        short, long_ = sorted((len(s), len(t)))
        if long_ >= _MIN_CHARS and long_ > MAX_LENGTH_RATIO * max(short, 1):
            out.ratio_outliers += 1
            out.issues.append(f"{where}: length ratio {long_ / max(short, 1):.1f} > {MAX_LENGTH_RATIO} (kept)")
        out.src.append(s)
        out.tgt.append(t)
    out.pairs = len(out.src)
    out.issues = out.issues[:20]
    if out.empty or out.duplicates or out.ratio_outliers:
        warnings.warn(
            f"{', '.join(out.files)}: {out.pairs} pairs kept; {out.empty} with an empty side dropped, "
            f"{out.duplicates} duplicates dropped, {out.ratio_outliers} length-ratio outliers kept"
            + (f"; e.g. {'; '.join(out.issues[:3])}" if out.issues else ""),
            stacklevel=2,
        )
    if not out.pairs:
        raise ValueError(f"{', '.join(out.files)}: no usable sentence pair")
    return out


