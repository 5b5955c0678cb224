"""Typed loaders for the data sets of ``data/README.md``.

Every loader takes ``root=None`` (-> ``paths.data_root(root)``: the argument, else
``$OPTICAL_VIZ_DATA``, else ``data/`` in the repository) and a language in any form that
``resolve_language`` accepts; returned languages are canonical FLORES-style codes.
A missing or corrupt file raises ``MissingDataError`` / ``CorruptDataError`` naming the
file, the set and the command that fixes it (``optical-viz data fetch SET``).

>>> bt = load_bitext("yo", source="flores", split="dev")
>>> bt.lang, len(bt), bt.src[0][:20], bt.tgt[0][:20]          # doctest: +SKIP
('yor_Latn', 99, ..., ...)
"""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from optical_viz import paths
# the splits FLORES-200 ships, one TSV each (load_flores also takes "all" and "+" combinations);
# owned by options, with the retrieval task's splits built on them
from optical_viz.options import FLORES_SPLITS
from optical_viz.data.languages import (
    ENGLISH,
    MAFAND_CODES,
    TATOEBA_CODES,
    XQUAD_LANGUAGES,
    XQUAD_R_LANGUAGES,
    close_codes,
    resolve_language,
)
from optical_viz.data.manifest import (
    WORD_ALIGNMENT_SETS,
    manifest_index,
    CorruptDataError,
    MissingDataError,
    fix_command,
    get_set,
    manifest_files,
    require_file,
)

__all__ = [
    "Bitext",
    "FloresSplit",
    "XQuAD",
    "XQuADQuestion",
    "XQuADR",
    "XQuADRQuestion",
    "GoldAlignment",
    "BITEXT_SOURCES",
    "FLORES_SPLITS",
    "load_bitext",
    "load_flores",
    "load_xquad",
    "load_xquad_r",
    "load_word_alignment",
    "word_alignment_pairs",
    "languages",
]

PathLike = str | os.PathLike | None

# bitext source -> (data set, its splits, default split)
BITEXT_SOURCES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "flores": ("flores200", FLORES_SPLITS, "train"),
    "nllb_seed": ("nllb_seed", ("train",), "train"),
    "mafand": ("mafand_mt", ("train", "dev", "test"), "train"),
    "tatoeba": ("tatoeba", ("test",), "test"),
}
_MAFAND_DIR = re.compile(r"^(en|fr)[-_]([a-z]{2,3})$")  # en-yor, en_luo (sic), fr-wol
_TATOEBA_FILE = re.compile(r"^tatoeba\.([a-z]{3})-eng\.([a-z]{3})$")
_GOLD_LINK = re.compile(r"^(\d+)([-p])(\d+)$")


# --------------------------------------------------------------------------- result types


@dataclass
class Bitext:
    """Sentence pairs: ``src[i]`` (in ``lang``) translates ``tgt[i]`` (in ``tgt_lang``, English
    unless a pivot was asked for)."""

    lang: str
    source: str
    split: str
    src: list[str]
    tgt: list[str]
    tgt_lang: str = ENGLISH

    def __post_init__(self) -> None:
        if len(self.src) != len(self.tgt):
            raise ValueError(f"Bitext {self.lang}: {len(self.src)} source lines != {len(self.tgt)} target lines")

    def __len__(self) -> int:
        return len(self.src)


@dataclass
class FloresSplit:
    """FLORES-200 sentences of one variety, sorted by ``ids`` (FLORES ``index_id``, shared by
    all varieties: ``texts[k]`` of two varieties with equal ``ids[k]`` are translations)."""

    lang: str
    split: str
    ids: list[int]
    texts: list[str]
    categories: list[str]  # SIB-200 topic of each sentence

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class XQuADQuestion:
    id: str  # shared by the translations of a question across languages
    text: str
    paragraph: int  # index into XQuAD.paragraphs
    answer: str
    answer_start: int  # character offset of the answer in its paragraph


@dataclass
class XQuAD:
    lang: str
    paragraphs: list[str]
    questions: list[XQuADQuestion]


@dataclass
class XQuADRQuestion:
    id: str
    text: str
    gold: int  # index into XQuADR.sentences: the sentence that contains the answer


@dataclass
class XQuADR:
    """XQuAD-R: the candidate pool is every sentence of every paragraph (no deduplication,
    as in LAReQA), ``sentence_paragraph[k]`` is the paragraph of ``sentences[k]``."""

    lang: str
    sentences: list[str]
    sentence_paragraph: list[int]
    questions: list[XQuADRQuestion]
    paragraphs: list[str] = field(default_factory=list)


@dataclass
class GoldAlignment:
    """Gold word alignment of one sentence pair; 0-indexed (i, j) = (src word, tgt word);
    ``possible`` includes ``sure``."""

    src: list[str]
    tgt: list[str]
    sure: set[tuple[int, int]]
    possible: set[tuple[int, int]]


# --------------------------------------------------------------------------- file helpers


def _read_lines(set_name: str, rel: str, root: PathLike) -> list[str]:
    """Lines of a verified UTF-8 text file (no line terminators; a final newline is optional)."""
    file = require_file(set_name, rel, root)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _corrupt(set_name, file, root, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_json(set_name: str, rel: str, root: PathLike) -> dict:
    file = require_file(set_name, rel, root)
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(set_name, file, root, f"not valid JSON ({exc})") from None


def _corrupt(set_name: str, file, root: PathLike, why: str) -> CorruptDataError:
    """The error for a file that cannot be parsed. Fetching restores only the files of the
    manifest; a file of the user's own (a new word-alignment pair) must be corrected by hand."""
    try:
        local = Path(file).resolve().relative_to(paths.data_root(root).resolve()).as_posix()
    except ValueError:
        local = None
    if local is not None and local in manifest_index():
        fix = fix_command(set_name, root)
        return CorruptDataError(f"{set_name}: corrupt file {file}: {why}; fix: {fix}", file=file, set=set_name, fix=fix)
    fix = f"correct {file}"
    return CorruptDataError(
        f"{set_name}: bad file {file}: {why}; it is not in data/manifest.tsv (your own file?): {fix}",
        file=file, set=set_name, fix=fix,
    )


def _pair_lines(set_name: str, rel_src: str, rel_tgt: str, root: PathLike) -> tuple[list[str], list[str]]:
    src, tgt = _read_lines(set_name, rel_src, root), _read_lines(set_name, rel_tgt, root)
    if len(src) != len(tgt):
        raise _corrupt(
            set_name, require_file(set_name, rel_tgt, root), root,
            f"{len(tgt)} lines, but its parallel file {rel_src} has {len(src)}",
        )
    return src, tgt


def _set_files(set_name: str, root: PathLike) -> list[str]:
    """Files of a set folder, relative to it (posix); MissingDataError if the folder is absent."""
    base = paths.data_root(root) / set_name
    if not base.is_dir():
        fix = fix_command(set_name, root)
        raise MissingDataError(
            f"{set_name}: the set folder {base} is missing (data root {paths.data_root(root)}); fix: {fix}",
            file=base, set=set_name, fix=fix,
        )
    out = []
    for dirpath, _, files in os.walk(base):
        rel_dir = Path(dirpath).relative_to(base).as_posix()
        out += [f if rel_dir == "." else f"{rel_dir}/{f}" for f in files]
    return sorted(out)


# --------------------------------------------------------------------------- language index


def index_set(set_name: str, rel_paths: list[str]) -> dict[str, str]:
    """Canonical language code -> where it lives in the set (folder, file or native code).

    ``rel_paths`` are file paths relative to the set folder (from a folder scan or the
    manifest). English is included where the set has it as a language of its own.
    """
    out: dict[str, str] = {}
    for rel in rel_paths:
        parts = rel.split("/")
        if set_name == "flores200" and len(parts) == 3 and parts[0] == "annotated" and parts[2].endswith(".tsv"):
            out[parts[1]] = f"annotated/{parts[1]}"
        elif set_name == "nllb_seed" and len(parts) == 2 and parts[0] == "seed" and "_" in parts[1] and "." not in parts[1]:
            out[parts[1]] = rel
        elif set_name == "mafand_mt" and len(parts) == 4 and parts[:2] == ["data", "text_files"]:
            m = _MAFAND_DIR.match(parts[2])
            if m and m[2] in MAFAND_CODES and parts[3].endswith("." + m[2]):
                out[MAFAND_CODES[m[2]]] = parts[2]
        elif set_name == "tatoeba" and (m := _TATOEBA_FILE.match(rel)) and m[1] == m[2]:
            if m[1] in TATOEBA_CODES:
                out[TATOEBA_CODES[m[1]]] = m[1]
        elif set_name == "xquad" and (m := re.fullmatch(r"xquad\.([a-z]{2})\.json", rel)):
            if m[1] in XQUAD_LANGUAGES:
                out[XQUAD_LANGUAGES[m[1]]] = rel
        elif set_name == "xquad_r" and (m := re.fullmatch(r"([a-z]{2})\.json", rel)):
            if m[1] in XQUAD_R_LANGUAGES:
                out[XQUAD_R_LANGUAGES[m[1]]] = rel
    return out


def _mafand_pivot(folder: str) -> str:
    return ENGLISH if folder.startswith("en") else "fra_Latn"


def languages(
    source: str, root: PathLike = None, *, pivot: str | None = ENGLISH, split: str | None = None
) -> list[str]:
    """Canonical codes of the languages a source provides under the data root, sorted.

    For the bitext sources (``flores``, ``nllb_seed``, ``mafand``, ``tatoeba``): the languages
    that have bitext with ``pivot`` (English; MAFAND-MT also has ``pivot="fra_Latn"``; ``None``
    lists every language), the pivot itself excluded; with ``split``, only those that have
    every split it names (MAFAND-MT has no ``train`` for amh, kin, nya, sna, xho).
    For ``xquad`` / ``xquad_r``: all the set's languages, English included.
    """
    name = BITEXT_SOURCES[source][0] if source in BITEXT_SOURCES else get_set(source).name
    if name in WORD_ALIGNMENT_SETS:
        raise ValueError(f"{name} has language pairs, not languages: use word_alignment_pairs()")
    files = _set_files(name, root)
    index = index_set(name, files)
    if name in ("xquad", "xquad_r"):
        return sorted(index)
    pivot_code = resolve_language(pivot) if pivot is not None else None
    if name == "mafand_mt" and pivot_code is not None:
        index = {k: v for k, v in index.items() if _mafand_pivot(v) == pivot_code}
    elif pivot_code not in (None, ENGLISH) and name != "flores200":
        raise ValueError(f"{name} pairs every language with English only, not with {pivot!r}")
    if split is not None:
        splits = next(v[1] for v in BITEXT_SOURCES.values() if v[0] == name)
        wanted = _split_names(split, splits) if split != "all" else []
        files_set = set(files)
        index = {k: v for k, v in index.items() if all(_has_split(name, v, n, files_set) for n in wanted)}
    exclude = pivot_code or ENGLISH
    return sorted(k for k in index if k != exclude)


def _has_split(set_name: str, where: str, split: str, files: set[str]) -> bool:
    """Whether the language stored at ``where`` (see ``index_set``) has the split ``split``."""
    if set_name == "flores200":
        return f"{where}/{split}.tsv" in files
    if set_name == "mafand_mt":
        return f"data/text_files/{where}/{split}.{_MAFAND_DIR.match(where)[2]}" in files
    return True  # nllb_seed and tatoeba have a single split, validated by _split_names


def _known_files(set_name: str, root: PathLike) -> set[str]:
    """Files of a set on disk plus those the manifest lists: a listed file that is absent then
    reaches ``require_file`` and gives a MissingDataError with the fix command."""
    return set(_set_files(set_name, root)) | set(manifest_files(set_name))


def resolve_in(set_name: str, lang: str, root: PathLike) -> tuple[str, str]:
    """(canonical code, location in the set) of ``lang``; ValueError naming what is available."""
    index = index_set(set_name, sorted(_known_files(set_name, root)))
    try:
        code = resolve_language(lang, among=index)
    except ValueError as exc:
        raise ValueError(f"{set_name}: {exc}") from None
    return code, index[code]


# --------------------------------------------------------------------------- FLORES


def _split_names(split: str, allowed: tuple[str, ...]) -> list[str]:
    if split == "all":
        return list(allowed)
    parts = split.split("+")
    bad = [p for p in parts if p not in allowed]
    if bad or not parts:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(allowed)}, 'all', or a '+' combination")
    return parts


def load_flores(lang: str, split: str = "all", root: PathLike = None) -> FloresSplit:
    """FLORES-200 sentences of one variety (SIB-200 packaging: 701 train / 99 dev / 204 test).

    ``split`` is ``train``, ``dev``, ``test``, ``dev+test`` (any ``+`` combination) or ``all``.
    Rows are sorted by ``index_id``, so equal positions are translations across varieties.
    The TSVs use CSV-style quoting (a field in double quotes, inner quotes doubled); it is undone.
    """
    code, folder = resolve_in("flores200", lang, root)
    rows: list[tuple[int, str, str]] = []
    for name in _split_names(split, FLORES_SPLITS):
        rel = f"{folder}/{name}.tsv"
        file = require_file("flores200", rel, root)
        with open(file, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t", quotechar='"')
            header = next(reader, None)
            if header != ["index_id", "category", "text"]:
                raise _corrupt("flores200", file, root, f"header {header}, expected index_id/category/text")
            for lineno, row in enumerate(reader, start=2):
                if len(row) != 3 or not row[0].isdigit():
                    raise _corrupt("flores200", file, root, f"row {lineno} has {len(row)} fields: {row[:3]}")
                rows.append((int(row[0]), row[1], row[2]))
    rows.sort(key=lambda r: r[0])
    ids = [r[0] for r in rows]
    if len(set(ids)) != len(ids):
        raise _corrupt("flores200", paths.data_root(root) / "flores200" / folder, root, "duplicate index_id values")
    return FloresSplit(code, split, ids, [r[2] for r in rows], [r[1] for r in rows])


# --------------------------------------------------------------------------- bitext


def load_bitext(
    lang: str,
    source: str = "flores",
    split: str | None = None,
    root: PathLike = None,
    *,
    pivot: str = ENGLISH,
) -> Bitext:
    """Sentence pairs between ``lang`` (``src``) and English (``tgt``) from one source.

    Args:
        lang: language in any form ``resolve_language`` accepts (``yor_Latn``, ``yor``, ``yo``).
        source: ``flores`` (multi-parallel, any pivot), ``nllb_seed`` (one ``train`` split),
            ``mafand`` (news; ``train`` missing for some languages) or ``tatoeba`` (one ``test``
            split).
        split: a split of the source, ``+`` combinations (``dev+test``) or ``all``; ``None``
            means the source's usual split (``train``; ``test`` for Tatoeba).
        pivot: the ``tgt`` language. MAFAND-MT pairs six languages (bam, bbj, ewe, fon, mos,
            wol) with French only: they need ``pivot="fra_Latn"`` explicitly.
    """
    if source not in BITEXT_SOURCES:
        raise ValueError(f"unknown bitext source {source!r}; expected one of {', '.join(BITEXT_SOURCES)}")
    set_name, splits, default = BITEXT_SOURCES[source]
    split = default if split is None else split
    names = _split_names(split, splits)
    pivot = resolve_language(pivot)
    if source == "flores":
        a, b = load_flores(lang, split, root), load_flores(pivot, split, root)
        if a.ids != b.ids:
            raise _corrupt("flores200", paths.data_root(root) / "flores200", root,
                           f"index_id values of {a.lang} and {b.lang} differ in split {split}")
        return Bitext(a.lang, source, split, a.texts, b.texts, pivot)
    if pivot != ENGLISH and source != "mafand":
        raise ValueError(f"{source} pairs every language with English only; got pivot={pivot!r}")
    code, where = resolve_in(set_name, lang, root)
    if code == pivot:
        raise ValueError(f"{source}: {code} is the pivot language itself; ask for the other side of a pair")
    src: list[str] = []
    tgt: list[str] = []
    if source == "nllb_seed":
        src, tgt = _pair_lines(set_name, where, "seed/eng_Latn", root)
    elif source == "tatoeba":
        src, tgt = _pair_lines(set_name, f"tatoeba.{where}-eng.{where}", f"tatoeba.{where}-eng.eng", root)
    else:  # mafand
        if _mafand_pivot(where) != pivot:
            raise ValueError(
                f"MAFAND-MT pairs {code} with {_mafand_pivot(where)} (folder {where}), not {pivot}: "
                f"there is no {pivot} side; pass pivot={_mafand_pivot(where)!r} to load it"
            )
        files = _known_files(set_name, root)
        side, native = _MAFAND_DIR.match(where).groups()  # e.g. ("en", "luo") for en_luo
        base = f"data/text_files/{where}"
        present = [n for n in splits if f"{base}/{n}.{native}" in files]
        missing = [n for n in names if n not in present]
        if missing and split != "all":
            raise ValueError(
                f"MAFAND-MT has no {'/'.join(missing)} split for {code} ({where}); available: {', '.join(present)}"
            )
        for n in (present if split == "all" else names):
            s, t = _pair_lines(set_name, f"{base}/{n}.{native}", f"{base}/{n}.{side}", root)
            src += s
            tgt += t
    return Bitext(code, source, split, src, tgt, pivot)


# --------------------------------------------------------------------------- XQuAD / XQuAD-R


def load_xquad(lang: str, root: PathLike = None) -> XQuAD:
    """XQuAD (SQuAD v1.1 format): 240 paragraphs and 1190 questions, parallel across languages
    (question ``id`` and paragraph order are shared)."""
    code, rel = resolve_in("xquad", lang, root)
    data = read_json("xquad", rel, root)
    paragraphs: list[str] = []
    questions: list[XQuADQuestion] = []
    try:
        for article in data["data"]:
            for p in article["paragraphs"]:
                paragraphs.append(p["context"])
                for q in p["qas"]:
                    ans = q["answers"][0]
                    questions.append(
                        XQuADQuestion(q["id"], q["question"], len(paragraphs) - 1, ans["text"], int(ans["answer_start"]))
                    )
    except (KeyError, IndexError, TypeError) as exc:
        raise _corrupt("xquad", require_file("xquad", rel, root), root, f"unexpected structure ({exc!r})") from None
    return XQuAD(code, paragraphs, questions)


def load_xquad_r(lang: str, root: PathLike = None) -> XQuADR:
    """XQuAD-R (LAReQA): questions, the candidate sentences of all paragraphs, gold sentences.

    The gold sentence of a question is the one whose ``sentence_breaks`` span contains the
    answer's start offset.
    """
    code, rel = resolve_in("xquad_r", lang, root)
    data = read_json("xquad_r", rel, root)
    sentences: list[str] = []
    sentence_paragraph: list[int] = []
    paragraphs: list[str] = []
    questions: list[XQuADRQuestion] = []
    try:
        for article in data["data"]:
            for p in article["paragraphs"]:
                first = len(sentences)
                breaks = [(int(b0), int(b1)) for b0, b1 in p["sentence_breaks"]]
                if len(breaks) != len(p["sentences"]):
                    raise ValueError(f"{len(breaks)} sentence_breaks but {len(p['sentences'])} sentences")
                sentences += p["sentences"]
                sentence_paragraph += [len(paragraphs)] * len(breaks)
                paragraphs.append(p["context"])
                for q in p["qas"]:
                    start = int(q["answers"][0]["answer_start"])
                    hit = [k for k, (b0, b1) in enumerate(breaks) if b0 <= start < b1]
                    if not hit:
                        raise ValueError(f"answer of question {q['id']} (offset {start}) is in no sentence")
                    questions.append(XQuADRQuestion(q["id"], q["question"], first + hit[0]))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise _corrupt("xquad_r", require_file("xquad_r", rel, root), root, f"unexpected structure ({exc})") from None
    return XQuADR(code, sentences, sentence_paragraph, questions, paragraphs)


# --------------------------------------------------------------------------- word alignment


def _word_alignment_sets(root: PathLike) -> dict[str, str]:
    """Pair -> the set folder holding its ``XXYY.src-tgt`` and ``XXYY.gold``, over the gold sets
    (``word_alignment/``, ``word_alignment_deen/``); the first set wins a pair found twice."""
    out: dict[str, str] = {}
    missing = None
    for name in WORD_ALIGNMENT_SETS:
        try:
            files = set(_set_files(name, root))
        except MissingDataError as exc:
            missing = missing or exc
            continue
        for f in sorted(files):
            key = f[: -len(".src-tgt")]
            if f.endswith(".src-tgt") and key + ".gold" in files:
                out.setdefault(key, name)
    if not out and missing is not None:
        raise missing
    return out


def word_alignment_pairs(root: PathLike = None) -> list[str]:
    """Pairs (``"deen"``, ``"enfr"``, ``"roen"``...) whose ``XXYY.src-tgt`` and ``XXYY.gold``
    both exist in one of the gold sets' folders (``word_alignment/``, ``word_alignment_deen/``)."""
    return sorted(_word_alignment_sets(root))


def load_word_alignment(pair: str, root: PathLike = None) -> list[GoldAlignment]:
    """Gold word alignments of a pair (``"enfr"``: English source, French target).

    ``XXYY.src-tgt`` lines are ``source ||| target`` with tokens separated by ASCII spaces
    (awesome-align's format: other Unicode spaces, such as the full-width U+3000 of Japanese
    text, are tokens or parts of tokens); ``XXYY.gold`` lines hold 1-indexed links ``i-j``
    (sure) and ``ipj`` (possible), converted here to 0-indexed ``(i, j)``; ``possible``
    includes ``sure``. Any pair with both files in the folder is read, also one that is not
    in the manifest (a gold set of your own), with every line validated.
    """
    sets = _word_alignment_sets(root)
    available = sorted(sets)
    key = pair.lower().replace("-", "").replace("_", "")
    if key not in available:
        folders = " and ".join(str(paths.data_root(root) / s) for s in WORD_ALIGNMENT_SETS)
        raise ValueError(
            f"word_alignment: no pair {pair!r} under {folders}; "
            f"available: {', '.join(available) or 'none'}; closest: {', '.join(close_codes(key, available)) or 'none'}"
        )
    set_name = sets[key]
    texts, golds = _pair_lines(set_name, f"{key}.src-tgt", f"{key}.gold", root)
    gold_file = require_file(set_name, f"{key}.gold", root)
    out: list[GoldAlignment] = []
    for lineno, (text, gold) in enumerate(zip(texts, golds), start=1):
        if text.count("|||") != 1:
            raise _corrupt(set_name, require_file(set_name, f"{key}.src-tgt", root), root,
                           f"line {lineno} is not 'source ||| target'")
        left, right = text.split("|||")
        src, tgt = _ascii_tokens(left), _ascii_tokens(right)
        sure: set[tuple[int, int]] = set()
        possible: set[tuple[int, int]] = set()
        for link in gold.split():
            m = _GOLD_LINK.match(link)
            i, j = (int(m[1]) - 1, int(m[3]) - 1) if m else (-1, -1)
            if not m or not (0 <= i < len(src) and 0 <= j < len(tgt)):
                raise _corrupt(set_name, gold_file, root,
                               f"line {lineno}: link {link!r} is not 1-indexed i-j / ipj within "
                               f"{len(src)} x {len(tgt)} words")
            possible.add((i, j))
            if m[2] == "-":
                sure.add((i, j))
        out.append(GoldAlignment(src, tgt, sure, possible))
    return out


def _ascii_tokens(text: str) -> list[str]:
    """Tokens separated by ASCII spaces (runs of them), not by ``str.split``'s Unicode spaces."""
    return [t for t in text.split(" ") if t]
