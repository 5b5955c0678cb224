"""One evaluation of one model of the grid, through :func:`optical_viz.retrieval.evaluate`.

The grid adds nothing to the evaluation itself: it picks the languages (trained or unseen),
the fixed query / candidate subsets and the caches, and ``retrieval.evaluate`` does the
routing (the student encodes the non-English side), the e5 prefixes, the scoring, the
per-language rows and the pooled ``all`` rows, as everywhere else.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass

from optical_viz.experiments.grid import EvalSpec, Run
from optical_viz.options import AlignConfig


@dataclass
class Evaluation:
    """What :func:`evaluate_model` measured.

    report: a :class:`optical_viz.retrieval.RetrievalReport` (frame with CIs, per-query values).
    subsets: (lang, direction) -> (number of queries, number of candidates) scored.
    """

    report: typing.Any
    subsets: dict[tuple[str, str], tuple[int, int]]


def evaluate_model(
    ev: EvalSpec,
    student,
    teacher,
    langs: list[str],
    *,
    teacher_cache=None,
    student_cache=None,
    n_bootstrap: int = 1000,
    root=None,
    batch_size: int = 64,
    progress: bool = False,
) -> Evaluation:
    """Score one model on one evaluation, in the asymmetric OPTICAL setting.

    The student (an Encoder) embeds the non-English side (queries of ``xx->en``/``xx->pool``,
    candidates of ``en->xx``), the teacher the English side; for zero-shot pass the same
    encoder twice (then it is evaluated symmetrically, with ``teacher_cache``).
    langs: task-coded languages (``retrieval.resolve_task_languages``).
    teacher_cache / student_cache: :class:`optical_viz.cache.EmbeddingCache` (the teacher's
    on disk, shared by all runs; a student's in memory). None: in memory for this call.
    """
    from optical_viz import retrieval
    from optical_viz.cache import EmbeddingCache

    teacher_cache = teacher_cache if teacher_cache is not None else EmbeddingCache(":memory:")
    models = dict(encoder=teacher) if student is teacher else dict(
        student=student, teacher=teacher,
        student_cache=student_cache if student_cache is not None else EmbeddingCache(":memory:"))
    report = retrieval.evaluate(
        ev.task, **models, langs=langs, split=ev.split if ev.task == "flores" else None, scoring=ev.scoring,
        root=root, batch_size=batch_size, cache=teacher_cache, n_bootstrap=n_bootstrap, seed=0,
        progress=progress, directions=ev.directions, max_queries=ev.max_queries, max_candidates=ev.max_candidates,
        query_ids=ev.query_ids, english_queries=ev.english_by or "teacher",
    )
    return Evaluation(report, dict(report.sizes))


def eval_langs(run: Run, ev: EvalSpec, root=None) -> list[str]:
    """Task-coded languages of ``ev`` for ``run`` (trained languages the task has, or unseen)."""
    from optical_viz import retrieval

    wanted = {"unseen": run.unseen, "english": ["eng_Latn"]}.get(ev.langs, run.languages)
    if ev.include_english and "eng_Latn" not in wanted:
        wanted = [*wanted, "eng_Latn"]
    have = retrieval.task_languages(ev.task, root=root)
    langs = [code for code in wanted if code in have]
    if not langs:
        raise ValueError(f"{run.run_id}: {ev.task} has none of the languages {wanted}")
    return langs


def evaluate_alignment_model(ev: EvalSpec, student, root=None, teacher=None) -> dict:
    """Word alignment (task ``alignment``) of one model: the student embeds both sides of the
    gold pair ``ev.pair`` at ``ev.layer`` (``ev.english_by == "teacher"``: the student the
    source side, ``teacher`` the English target side, two tokenizers) and each of
    ``ev.align_methods`` extracts links ->
    ``{"task", "scoring", "split", "results": [{"pair", "method", "aer", "precision", "recall",
    "f1", "n", ...}]}`` (corpus-level AER; no per-query values)."""
    from optical_viz import alignment

    target = teacher if ev.english_by == "teacher" and teacher is not student else None
    out = alignment.evaluate_alignment(student, [ev.pair], ev.align_methods or [AlignConfig().method],
                                       [ev.layer], root=root, limit=ev.max_queries, target_encoder=target)
    return {"task": ev.task, "scoring": None, "split": None, "results": out["results"]}
