"""Retrieval tasks: turn a data set into queries, candidates and gold links.

A task yields one :class:`RetrievalProblem` per (language, direction). Directions are
``"xx->en"`` (queries in the language, English candidates), ``"en->xx"`` and
``"xx->pool"`` (XQuAD-R: candidates are the sentences of all 11 languages, LAReQA).

CLIR collections are three UTF-8 TSV files in one folder (see :func:`load_clir`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from optical_viz.data.languages import ENGLISH
# the tasks, and the splits the FLORES task evaluates on (all of FLORES's, one of them, or dev
# and test: those held out from distillation on FLORES train bitext); owned by options, which
# the CLI reads without importing torch
from optical_viz.options import FLORES_TASK_SPLITS, TASKS
from optical_viz.paths import TRAINING_INFO


@dataclass
class RetrievalProblem:
    """Queries, candidates and the relevant candidates of each query.

    kind: ``"qa"`` (question -> passage: e5 prefixes "query: " / "passage: ") or
    ``"bitext"`` (symmetric: "query: " on both sides).
    query_is_english: decides, in the asymmetric setting, which side the student encodes.
    query_ids / candidate_ids: ids as in the collection (CLIR qids and pids, XQuAD and XQuAD-R
        question ids), for TREC files; None -> ``q<i>`` / ``d<i>`` by position (stable for built-in sets).
    """

    lang: str
    direction: str
    queries: list[str]
    candidates: list[str]
    relevant: list[list[int]]
    kind: str
    query_is_english: bool = False
    with_map: bool = False
    query_ids: list[str] | None = None
    candidate_ids: list[str] | None = None

    def __post_init__(self):
        if not self.queries:
            raise ValueError(f"{self.lang} {self.direction}: the query set is empty")
        if not self.candidates:
            raise ValueError(f"{self.lang} {self.direction}: the candidate set is empty")
        if len(self.relevant) != len(self.queries):
            raise ValueError(f"{len(self.queries)} queries but {len(self.relevant)} relevance lists")

    def ids(self) -> tuple[list[str], list[str]]:
        """(query ids, candidate ids): ``query_ids`` / ``candidate_ids``, else ``q<i>`` / ``d<i>``."""
        return (
            self.query_ids or [f"q{i}" for i in range(len(self.queries))],
            self.candidate_ids or [f"d{i}" for i in range(len(self.candidates))],
        )


def task_languages(task: str, root=None) -> tuple[str, ...]:
    """All languages of a task, as canonical codes (``deu_Latn``, see ``optical_viz.data``)."""
    _check_task(task)
    if task == "clir":
        return tuple(clir_query_languages(root))
    from optical_viz import data

    if task == "xquad-r":
        return tuple(data.XQUAD_R_LANGUAGES.values())
    if task == "xquad":
        return tuple(data.XQUAD_LANGUAGES.values())
    if task == "flores":
        return tuple(c for c in data.languages("flores", root=root) if c != ENGLISH)
    return tuple(data.languages("tatoeba", root=root))


def resolve_task_languages(task: str, langs, root=None) -> list[str]:
    """Map the user's codes (``"yo"``, ``"yor"``, ``"yor_Latn"``; a list, a comma-separated
    string, or ``"all"``/None for every language of the task) to the task's canonical codes.

    Raises ValueError for an unknown language or one the task does not have (listing those it has).
    """
    available = task_languages(task, root)
    if isinstance(langs, str):
        langs = [x.strip() for x in langs.split(",") if x.strip()]
    if langs is None or list(langs) == ["all"]:
        return list(available)
    if not langs:
        raise ValueError(f"no language given for {task}; it has: {', '.join(available)}")
    if task == "clir":
        unknown = [c for c in langs if c not in available]
        if unknown:
            raise ValueError(f"the CLIR collection has no queries in {unknown}; it has: {', '.join(available)}")
        return list(dict.fromkeys(langs))
    from optical_viz.data import resolve_language

    out = []
    for code in langs:
        try:
            out.append(resolve_language(code, among=available))
        except ValueError:
            canonical = resolve_language(code)  # ValueError for an unknown or ambiguous code
            raise ValueError(f"{task} has no language {code!r} ({canonical}); it has: {', '.join(available)}") from None
    return list(dict.fromkeys(out))


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


# ---- the tasks -------------------------------------------------------------------------
def build_problems(task: str, langs: list[str], *, split: str = "all", root=None) -> list[RetrievalProblem]:
    """The retrieval problems of ``task`` for the task-coded languages ``langs``."""
    _check_task(task)
    builder = {
        "xquad-r": _xquad_r,
        "xquad": _xquad,
        "flores": lambda ls, root: _flores(ls, split, root),
        "tatoeba": _tatoeba,
        "clir": _clir,
    }[task]
    return builder(langs, root)


def _xquad_r(langs, root):
    from optical_viz.data import XQUAD_R_LANGUAGES, load_xquad_r

    sets = {lang: load_xquad_r(lang, root=root) for lang in XQUAD_R_LANGUAGES.values()}
    en = sets[ENGLISH]
    # the gold sentence of each question id in every language (XQuAD-R is parallel by id)
    offsets, pool, gold_by_id = {}, [], {}
    for lang, s in sets.items():
        offsets[lang] = len(pool)
        pool.extend(s.sentences)
        for q in s.questions:
            gold_by_id.setdefault(q.id, []).append(offsets[lang] + q.gold)
    en_gold = {q.id: q.gold for q in en.questions}
    pool_ids = [f"{lang}.s{i}" for lang, s in sets.items() for i in range(len(s.sentences))]  # stable ids
    problems = []
    for lang in langs:
        qs = [q for q in sets[lang].questions if q.id in en_gold]
        problems.append(
            RetrievalProblem(
                lang, "xx->en", [q.text for q in qs], list(en.sentences),
                [[en_gold[q.id]] for q in qs], kind="qa", query_is_english=lang == ENGLISH, with_map=True,
                query_ids=[q.id for q in qs],
                candidate_ids=pool_ids[offsets[ENGLISH] : offsets[ENGLISH] + len(en.sentences)],
            )
        )
        problems.append(
            RetrievalProblem(
                lang, "xx->pool", [q.text for q in sets[lang].questions], pool,
                [gold_by_id[q.id] for q in sets[lang].questions], kind="qa",
                query_is_english=lang == ENGLISH, with_map=True,
                query_ids=[q.id for q in sets[lang].questions], candidate_ids=pool_ids,
            )
        )
    return problems


def _xquad(langs, root):
    from optical_viz.data import load_xquad

    en = load_xquad(ENGLISH, root=root)
    problems = []
    for lang in langs:
        x = en if lang == ENGLISH else load_xquad(lang, root=root)
        if len(x.paragraphs) != len(en.paragraphs):
            raise ValueError(f"xquad {lang} has {len(x.paragraphs)} paragraphs, English {len(en.paragraphs)}")
        problems.append(
            RetrievalProblem(
                lang, "xx->en", [q.text for q in x.questions], list(en.paragraphs),
                [[q.paragraph] for q in x.questions], kind="qa", query_is_english=lang == ENGLISH,
                query_ids=[q.id for q in x.questions],
            )
        )
    return problems


def _flores(langs, split, root):
    from optical_viz.data import load_flores

    if split not in FLORES_TASK_SPLITS:
        raise ValueError(f"unknown FLORES split {split!r}; choose one of {', '.join(FLORES_TASK_SPLITS)}")
    eng = load_flores("eng_Latn", split=split, root=root)
    problems = []
    for lang in langs:
        x = load_flores(lang, split=split, root=root)
        if list(x.ids) != list(eng.ids):
            raise ValueError(f"FLORES {lang} ({split}) is not aligned with eng_Latn by index_id")
        problems += _both_directions(lang, x.texts, eng.texts)
    return problems


def _tatoeba(langs, root):
    from optical_viz.data import load_bitext

    problems = []
    for lang in langs:
        b = load_bitext(lang, source="tatoeba", split="test", root=root)
        if len(b.src) != len(b.tgt):
            raise ValueError(f"tatoeba {lang}: {len(b.src)} sentences but {len(b.tgt)} English ones")
        problems += _both_directions(lang, b.src, b.tgt)
    return problems


def _both_directions(lang: str, texts, english) -> list[RetrievalProblem]:
    """The "xx->en" and "en->xx" problems of parallel sentences: ``texts[i]`` translates
    ``english[i]`` (and is its only relevant candidate)."""
    gold = [[i] for i in range(len(texts))]
    return [
        RetrievalProblem(lang, "xx->en", list(texts), list(english), gold, kind="bitext"),
        RetrievalProblem(lang, "en->xx", list(english), list(texts), gold, kind="bitext", query_is_english=True),
    ]


# ---- CLIR: any collection from three TSV files -----------------------------------------
@dataclass
class CLIRCollection:
    """A query -> passage collection.

    queries:  qid -> text;  passages: pid -> text;  qrels: qid -> set of relevant pids
    """

    queries: dict[str, str]
    passages: dict[str, str]
    qrels: dict[str, set[str]]


_HEADER_IDS = ("qid", "pid", "id", "query_id", "doc_id", "passage_id", "docid")


def _lines(path: Path, sep: str | None):
    """(line number, fields) of each line that is not blank, a ``#`` comment or the header.

    sep: "\t" (fields may be empty) or None (any run of whitespace, as in TREC qrels).
    """
    with open(path, encoding="utf-8", newline="") as f:
        try:
            lines = f.read().splitlines()
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    first = True
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(sep) if sep else line.split()
        if first and fields[0].strip().lower() in _HEADER_IDS:
            first = False
            continue
        first = False
        yield n, fields


def _fields(n: int) -> str:
    return f"{n} field" + ("" if n == 1 else "s")


def _read_texts(path: Path, kind: str, shapes: str, sizes: tuple[int, ...]) -> dict[str, str]:
    """id -> text of a ``id<TAB>text`` (or ``id<TAB>title<TAB>text``) file; every malformed
    line, empty id or text and duplicate id is a ValueError naming ``file:line``."""
    out: dict[str, str] = {}
    where: dict[str, int] = {}
    for n, fields in _lines(path, "\t"):
        if len(fields) not in sizes:
            line = "\t".join(fields)
            raise ValueError(f"{path}:{n}: expected {shapes}, got {_fields(len(fields))}: {line[:80]!r}")
        key, text = fields[0].strip(), " ".join(x.strip() for x in fields[1:] if x.strip())
        if not key:
            raise ValueError(f"{path}:{n}: empty {kind} id")
        if not text:
            raise ValueError(f"{path}:{n}: empty {kind} text for id {key!r}")
        if key in out:
            raise ValueError(f"{path}:{n}: duplicate {kind} id {key!r} (first on line {where[key]})")
        out[key], where[key] = text, n
    return out


def _read_qrels(path: Path, first_lines: dict[str, int] | None = None) -> dict[str, set[str]]:
    """qid -> relevant pids; relevance must be a number (<= 0: not relevant); a pair judged
    twice is an error. first_lines: filled with qid -> the line of its first judgement."""
    qrels: dict[str, set[str]] = {}
    seen: dict[tuple[str, str], int] = {}
    for n, parts in _lines(path, None):
        if len(parts) == 4:
            qid, _, pid, rel = parts
        elif len(parts) == 3:
            qid, pid, rel = parts
        elif len(parts) == 2:
            (qid, pid), rel = parts, "1"
        else:
            raise ValueError(
                f"{path}:{n}: expected 'qid pid', 'qid pid relevance' or 'qid 0 pid relevance', got {_fields(len(parts))}"
            )
        try:
            relevance = float(rel)
        except ValueError:
            raise ValueError(f"{path}:{n}: relevance {rel!r} is not a number (TREC qrels: 0 not relevant, >= 1 relevant)") from None
        if (qid, pid) in seen:
            raise ValueError(f"{path}:{n}: duplicate judgement of {(qid, pid)!r} (first on line {seen[qid, pid]})")
        seen[qid, pid] = n
        if first_lines is not None:
            first_lines.setdefault(qid, n)
        if relevance > 0:
            qrels.setdefault(qid, set()).add(pid)
    return qrels


def load_clir(folder, queries: str = "queries.tsv") -> CLIRCollection:
    """Read a CLIR collection from ``folder``.

    Formats (UTF-8, tab-separated, optional header line whose first field is ``qid``/``pid``/
    ``id``, blank lines and lines starting with ``#`` ignored):

    - ``queries.tsv`` (or ``queries.<lang>.tsv``, one file per query language): ``qid<TAB>text``
    - ``passages.tsv``: ``pid<TAB>text`` or ``pid<TAB>title<TAB>text`` (title and text are joined)
    - ``qrels.tsv``: ``qid<TAB>pid``, ``qid<TAB>pid<TAB>relevance`` or TREC ``qid 0 pid relevance``
      (whitespace-separated); pairs with relevance <= 0 are not relevant.

    Nothing is dropped or overwritten silently: a line with the wrong number of fields, an
    empty id or text, a duplicate id or judgement, a relevance that is not a number, or a
    judgement of a query id that the queries file does not hold raises ValueError naming
    ``file:line`` and what was expected (judged passages absent from passages.tsv are an
    error of the evaluation, naming their count).
    """
    folder = Path(folder)
    for name in (queries, "passages.tsv", "qrels.tsv"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"CLIR collection {folder} has no {name} (needs {queries}, passages.tsv, qrels.tsv)")
    qs = _read_texts(folder / queries, "query", "'qid<TAB>text' (2 tab-separated fields)", (2,))
    ps = _read_texts(folder / "passages.tsv", "passage", "'pid<TAB>text' or 'pid<TAB>title<TAB>text'", (2, 3))
    judged: dict[str, int] = {}  # qid -> line of its first judgement
    qrels = _read_qrels(folder / "qrels.tsv", judged)
    if not qs:
        raise ValueError(f"{folder / queries}: the query set is empty (expected lines 'qid<TAB>text')")
    if qrels and not set(qrels) & set(qs):
        raise ValueError(
            f"{folder / 'qrels.tsv'} names none of the {len(qs)} query ids of {folder / queries} "
            f"(qrels: {sorted(qrels)[:3]}; queries: {sorted(qs)[:3]}): do the files belong together?"
        )
    unknown = [q for q in judged if q not in qs]  # in file order
    if unknown:
        q = unknown[0]
        more = f"; {len(unknown)} judged query ids are absent, e.g. {unknown[:3]}" if len(unknown) > 1 else ""
        raise ValueError(
            f"{folder / 'qrels.tsv'}:{judged[q]}: query id {q!r} is not in {folder / queries}{more} "
            "(their judgements would be dropped: remove them or add the queries)"
        )
    return CLIRCollection(qs, ps, qrels)


def clir_query_languages(folder) -> list[str]:
    """Query languages of a collection: ``<lang>`` of each ``queries.<lang>.tsv``, else ``["xx"]``."""
    if folder is None:
        raise ValueError("the clir task needs the collection folder (root=... / --data-root DIR)")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"CLIR collection folder {folder} does not exist")
    langs = sorted(p.name[len("queries.") : -len(".tsv")] for p in folder.glob("queries.*.tsv"))
    return langs or ["xx"]


def _clir(langs, root):
    problems = []
    for lang in langs:
        name = "queries.tsv" if lang == "xx" else f"queries.{lang}.tsv"
        col = load_clir(root, name)
        pids = list(col.passages)
        index = {p: i for i, p in enumerate(pids)}
        unknown = {p for rel in col.qrels.values() for p in rel if p not in index}
        if unknown:
            raise ValueError(
                f"{Path(root) / 'qrels.tsv'} names {len(unknown)} passage(s) absent from {Path(root) / 'passages.tsv'}, "
                f"e.g. {sorted(unknown)[:3]}"
            )
        qids = [q for q in col.queries if q in col.qrels]
        problems.append(
            RetrievalProblem(
                lang, "xx->en",
                [col.queries[q] for q in qids], [col.passages[p] for p in pids],
                [sorted(index[p] for p in col.qrels[q]) for q in qids], kind="qa",
                query_is_english=lang in ("en", ENGLISH), with_map=True, query_ids=qids, candidate_ids=pids,
            )
        )
    return problems


def default_flores_split(*models) -> tuple[str, str | None]:
    """``("dev+test", note)`` when one of the models was distilled on the FLORES train split
    (its ``optical_viz_training.json`` lists a FLORES bitext source), else ``("all", None)``."""
    import json

    for model in models:
        if model is None:
            continue
        for folder in _model_folders(model):
            info = folder / TRAINING_INFO
            if info.is_file():
                meta = json.loads(info.read_text())
                sources = meta.get("bitext_sources") or []
                if not any("flores" in str(s).lower() for s in sources):
                    continue
                trained_on = str(meta.get("bitext_split", "train"))
                if trained_on == "train":
                    return "dev+test", (
                        f"{folder} was distilled on FLORES train bitext: evaluating on the held-out "
                        "dev+test split (303 sentences), not all 1004"
                    )
                return "all", (
                    f"warning: {folder} was distilled on FLORES {trained_on} bitext, so no FLORES "
                    "sentence is held out; pass split= to choose one"
                )
    return "all", None


def trained_teacher(model) -> str | None:
    """The teacher a distilled student was trained against, as its ``optical_viz_training.json``
    records it (a model directory or hub id); None when the model records none (not a
    distilled student, or one distilled from the default model).

    A student trained into another model's space is only meaningful against that model's
    English side: :func:`optical_viz.retrieval.evaluate` uses this teacher when none is given.
    """
    import json

    if model is None:
        return None
    for folder in _model_folders(model):
        info = folder / TRAINING_INFO
        if info.is_file():
            teacher = json.loads(info.read_text()).get("teacher")
            return str(teacher) if teacher is not None else None
    return None


def _model_folders(model) -> list[Path]:
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
    else:
        p = None
        hf_model = getattr(model, "model", None)  # a transformers model remembers its folder
        for v in (getattr(model, "path", None), getattr(hf_model, "name_or_path", None), getattr(model, "name", None)):
            if isinstance(v, (str, os.PathLike)) and Path(v).is_dir():
                p = Path(v)
                break
        if p is None:
            return []
    return [p, p / "student"]
