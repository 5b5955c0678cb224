"""TREC run and qrels files: what ``trec_eval`` / ``ir-measures`` read.

>>> report = evaluate("xquad-r", langs=["de"], run_depth=100)
>>> write_run(report, "xquad-r.trec"); write_qrels(report, "xquad-r.qrels")
>>> import ir_measures; ir_measures.calc_aggregate([ir_measures.RR @ 10], read_qrels(...), read_run(...))

Run lines: ``qid Q0 docid rank score tag`` (rank 1-based); qrels lines: ``qid 0 docid 1``.
Query ids are the collection's (CLIR qids, XQuAD-R question ids, else ``q<i>`` by position)
prefixed with ``<lang>.<direction>.`` (``deu_Latn.xx-en.``) so that one file holds every
(language, direction) of a report; a CLIR collection with a single ``queries.tsv`` keeps its
qids as they are. Document ids are the collection's (CLIR pids; XQuAD-R ``<lang>.s<i>``;
else ``d<i>``, the candidate's position, stable for the built-in sets).

trec_eval orders a run by score and breaks ties by document id (descending), while our
metrics break ties by candidate index; so that both see one order, equal scores are written
as successive float64 predecessors (``numpy.nextafter``): far below float32's resolution,
they change no other order.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

RUN_DEPTH = 100  # candidates per query in a run file (the TREC convention)


def _ids(problem) -> tuple[list[str], list[str]]:
    q, d = problem.ids()
    bad = [x for x in (*q[:1000], *d[:1000]) if not x or re.search(r"\s", x)]
    if bad:
        raise ValueError(f"TREC ids cannot be empty or hold whitespace; got {bad[0]!r} in {problem.lang} {problem.direction}")
    return q, d


def trec_query_ids(problem, single: bool = False) -> list[str]:
    """The run/qrels query ids of ``problem``'s queries (see the module docstring)."""
    q, _ = _ids(problem)
    if single and problem.lang == "xx":
        return list(q)
    prefix = f"{problem.lang}.{problem.direction.replace('->', '-')}."
    return [prefix + x for x in q]


def _problems(report):
    if not report.rankings:
        raise ValueError("the report has no rankings: evaluate with run_depth > 0 (e.g. run_depth=100)")
    single = len(report.rankings) == 1
    return single, list(report.rankings.values())


def write_run(report, path: str | os.PathLike, tag: str | None = None) -> int:
    """Write ``report.rankings`` as a six-column TREC run; returns the number of lines.

    tag: the run's name (last column); default ``optical_viz``.
    """
    tag = tag or "optical_viz"
    if re.search(r"\s", tag):
        raise ValueError(f"the run tag cannot hold whitespace, got {tag!r}")
    single, items = _problems(report)
    n = 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for problem, top in items:
            qids, dids = trec_query_ids(problem, single), _ids(problem)[1]
            idx, scores = top.indices.numpy(), top.scores.double().numpy()  # (Q, k)
            for qi, qid in enumerate(qids):
                written = _strictly_decreasing(scores[qi])
                for r, (d, s) in enumerate(zip(idx[qi], written), 1):
                    f.write(f"{qid} Q0 {dids[d]} {r} {s!r} {tag}\n")
                n += len(written)
    return n


def _strictly_decreasing(scores: np.ndarray) -> list[float]:
    """Scores (non-increasing) with each tie replaced by the float64 just below its predecessor."""
    out: list[float] = []
    for s in scores.tolist():
        out.append(float(np.nextafter(out[-1], -np.inf)) if out and s >= out[-1] else s)
    return out


def write_qrels(report, path: str | os.PathLike) -> int:
    """Write the relevance judgements of the report's problems (``qid 0 docid 1``); returns
    the number of lines."""
    single, items = _problems(report)
    n = 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for problem, _ in items:
            qids, dids = trec_query_ids(problem, single), _ids(problem)[1]
            for qid, rel in zip(qids, problem.relevant):
                for d in sorted(rel):
                    f.write(f"{qid} 0 {dids[d]} 1\n")
                    n += 1
    return n


def read_run(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """qid -> {docid: score} from a six-column TREC run (ValueError naming file:line otherwise)."""
    out: dict[str, dict[str, float]] = {}
    for n, parts in _lines(path):
        if len(parts) != 6:
            raise ValueError(f"{path}:{n}: a TREC run line has 6 fields (qid Q0 docid rank score tag), got {len(parts)}")
        try:
            out.setdefault(parts[0], {})[parts[2]] = float(parts[4])
        except ValueError:
            raise ValueError(f"{path}:{n}: score {parts[4]!r} is not a number") from None
    return out


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """qid -> {docid: relevance} from a four-column TREC qrels file."""
    out: dict[str, dict[str, int]] = {}
    for n, parts in _lines(path):
        if len(parts) != 4:
            raise ValueError(f"{path}:{n}: a TREC qrels line has 4 fields (qid iter docid relevance), got {len(parts)}")
        try:
            out.setdefault(parts[0], {})[parts[2]] = int(parts[3])
        except ValueError:
            raise ValueError(f"{path}:{n}: relevance {parts[3]!r} is not an integer") from None
    return out


def _lines(path):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if parts:
                yield n, parts
