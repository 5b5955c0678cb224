"""`evaluate(task, ...)`: encode (through the embedding cache), score, measure, report."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from optical_viz.retrieval._metrics import (
    QueryMetrics,
    Relevance,
    bootstrap_ci,
    metrics_from_ranks,
    paired_test,
    query_metrics,
)
from optical_viz.retrieval._scoring import (
    INDEXES,
    SCORINGS,
    TokenEmbeddings,
    TopK,
    dense_search,
    exact_top_k,
    FaissIndex,
    maxsim_scores,
)
from optical_viz.retrieval._subset import select_queries, subset_problem
from optical_viz.retrieval._tasks import (
    RetrievalProblem,
    build_problems,
    default_flores_split,
    resolve_task_languages,
    trained_teacher,
)
from optical_viz.paths import TRAINING_INFO

QUERY_CHUNK = 2048  # queries scored at a time; dense scoring also streams over candidate chunks


@dataclass
class RetrievalReport:
    """Results of one evaluation.

    frame: one row per (lang, direction) with columns lang, direction, n, recall@1,
        recall@1_ci ([lo, hi]), recall@5(_ci), recall@10(_ci), mrr@10(_ci), and map(_ci)
        where the task has several relevant candidates per query (NaN elsewhere).
    per_query: (lang, direction) -> per-query values, for :func:`compare`.
    rankings: (lang, direction) -> the problem and its :class:`TopK` (``run_depth`` best
        candidates per query), when ``evaluate(run_depth=...)`` asked for them; written as a
        TREC run by :func:`optical_viz.retrieval.write_run`.
    sizes: (lang, direction) -> (number of queries, number of candidates) scored.
    """

    task: str
    model: str
    scoring: str
    split: str | None
    frame: pd.DataFrame
    per_query: dict[tuple[str, str], QueryMetrics]
    notes: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0
    rankings: dict = field(default_factory=dict)
    sizes: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The JSON document (a dict, ready for ``json.dump``):
        ``{"task", "model", "scoring", "split", "notes", "wall_time_s", "results": [{"lang", ...}]}``."""
        results = []
        for row in self.frame.to_dict("records"):
            clean = {}
            for k, v in row.items():
                if isinstance(v, float) and np.isnan(v):
                    continue
                clean[k] = [float(x) for x in v] if isinstance(v, (list, tuple)) else (v.item() if hasattr(v, "item") else v)
            results.append(clean)
        return {
            "task": self.task,
            "model": self.model,
            "scoring": self.scoring,
            "split": self.split,
            "notes": list(self.notes),
            "wall_time_s": round(self.wall_time_s, 2),
            "results": results,
        }

    def summary(self, metric: str = "recall@1") -> pd.DataFrame:
        """A compact table: languages as rows, directions as columns, ``metric`` as values."""
        return self.frame.pivot(index="lang", columns="direction", values=metric)


def evaluate(
    task: str,
    *,
    encoder=None,
    student=None,
    teacher=None,
    langs,
    split: str | None = None,
    scoring: str = "dense",
    root=None,
    batch_size: int = 64,
    cache=True,
    layer: int = -1,
    n_bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
    precision: str = "auto",
    run_depth: int = 0,
    index: str = "exact",
    directions=None,
    max_queries: int | None = None,
    max_candidates: int | None = None,
    student_cache=None,
    query_ids=None,
    english_queries: str = "teacher",
) -> RetrievalReport:
    """Evaluate a model on a retrieval task.

    task: ``"xquad-r"``, ``"xquad"``, ``"flores"``, ``"tatoeba"`` or ``"clir"``.
    encoder: symmetric setting: one model encodes queries and candidates (an Encoder, a
        model directory, or None for the default model when no student is given).
    student, teacher: the asymmetric OPTICAL setting: the student encodes the non-English
        side, the teacher the English side. Teacher None: the teacher the student was
        distilled against (its ``optical_viz_training.json``, a note says so), else the
        default model. For "xx->en" and
        "xx->pool" that is queries by the student, candidates by the teacher; for "en->xx"
        the English queries go to the teacher and the candidates to the student.
    langs: codes in any form ``resolve_language`` knows, a comma-separated string, or "all".
    split: FLORES split; None -> "dev+test" for a model distilled on FLORES train bitext
        (a note says so), else "all" (1004 sentences).
    scoring: ``"dense"`` (cosine of mean-pooled embeddings) or ``"maxsim"`` (late interaction).
    root: the data root (``OPTICAL_VIZ_DATA``); for ``"clir"`` the collection folder.
    cache: True (on-disk cache), False (in memory for this call), or an EmbeddingCache.
    n_bootstrap: query resamples for the 95% intervals (``<metric>_ci``); 0: no intervals
        (the ``_ci`` columns hold None).
    precision: "auto" (bf16 where the device computes it natively, else fp32), "fp32" or
        "bf16" for the models this call loads (paths, None); an Encoder given as such keeps its
        own. bf16 is 1.5-2.7x faster on CPUs with AVX512-BF16 and 6-7x slower on CPUs without;
        compare systems only at equal precision (the report's model name says which).
    progress: a bar over the problems, and the encoder's bars inside them.
    run_depth: keep the top ``run_depth`` candidates of each query in ``report.rankings``
        (0: none), for a TREC run file.
    index: dense search: ``"exact"`` (streamed over candidate chunks), ``"faiss-flat"`` or
        ``"faiss-hnsw"`` (approximate; needs faiss-cpu). With FAISS only the top
        ``max(run_depth, 100)`` candidates of each query are ranked: a relevant candidate
        below them counts as not retrieved (as trec_eval counts it).
    directions: evaluate only these directions of the task (None: all), e.g. ``["xx->en"]``.
    max_queries / max_candidates: per (language, direction), a fixed random subset of the
        queries and candidates (gold candidates of the kept queries stay; see
        :func:`optical_viz.retrieval.subset_problem`); None keeps everything.
    query_ids: keep only the queries with these ids (XQuAD / XQuAD-R question ids, CLIR qids),
        e.g. the dev split of a protocol; candidates stay the full pools. Applied before
        ``max_queries``.
    student_cache: the student's own EmbeddingCache (e.g. in memory for a model that is
        scored once); None: the student shares ``cache`` with the teacher.
    english_queries: with student=/teacher=, who encodes English queries: ``"teacher"`` (the
        asymmetric rule) or ``"student"`` (an English control: the student's English queries
        against the teacher's English candidates, e.g. XQuAD-R en->en).
    """
    from optical_viz.cache import EmbeddingCache

    start = time.perf_counter()
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; choose one of {', '.join(SCORINGS)}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be an integer >= 0 (0: no intervals), got {n_bootstrap!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if index not in INDEXES or (index != "exact" and scoring != "dense"):
        raise ValueError(f"index {index!r} with {scoring} scoring: choose one of {', '.join(INDEXES)} (FAISS only for dense)")
    if english_queries not in ("teacher", "student"):
        raise ValueError(f"english_queries must be 'teacher' or 'student', got {english_queries!r}")
    if encoder is not None and (student is not None or teacher is not None):
        raise ValueError("give either encoder= (symmetric) or student=/teacher= (asymmetric), not both")
    if teacher is not None and student is None:
        raise ValueError("teacher= needs student= as well")
    notes: list[str] = []
    if task != "flores" and split not in (None, "all"):
        raise ValueError(f"split={split!r} only applies to flores")
    if task == "flores" and split is None:
        split, note = default_flores_split(encoder, student)
        if note:
            notes.append(note)
    task_langs = resolve_task_languages(task, langs, root=root)
    problems = build_problems(task, task_langs, split=split or "all", root=root)
    if directions is not None:
        problems = [p for p in problems if p.direction in directions]
        if not problems:
            raise ValueError(f"{task} has no direction among {list(directions)}")
    if query_ids is not None:
        problems = [select_queries(p, query_ids) for p in problems]
    if max_queries is not None or max_candidates is not None:
        problems = [subset_problem(p, max_queries, max_candidates) for p in problems]

    if student is not None:
        if teacher is None and (recorded := trained_teacher(student)) is not None:
            teacher = recorded
            notes.append(f"teacher {recorded}: the model the student was distilled against (its {TRAINING_INFO})")
        student, teacher = _load(student, precision), _load(teacher, precision)
        model = f"student={student.name} teacher={teacher.name}"
    else:
        encoder = _load(encoder, precision)
        model = encoder.name
    encoders = [e for e in (encoder, student, teacher) if e is not None]
    precisions = sorted({getattr(e, "precision", "fp32") for e in encoders})
    if precisions != ["fp32"]:
        model += f" ({'/'.join(precisions)})"
    if isinstance(cache, EmbeddingCache):
        store = cache
    else:
        store = EmbeddingCache() if cache else EmbeddingCache(":memory:")
    student_store = student_cache if student_cache is not None else store

    rows, per_query, rankings, sizes = [], {}, {}, {}
    shown = [getattr(e, "progress", None) for e in encoders]
    try:
        for e, flag in zip(encoders, shown):
            if flag is not None:  # an Encoder (tests pass lighter objects)
                e.progress = flag and progress
        for problem in _progress(problems, progress, task):
            q_enc, c_enc = _encoders_for(problem, encoder, student, teacher, english_queries)
            q_pre, c_pre = _prefixes(problem.kind, q_enc), _prefixes(problem.kind, c_enc, candidate=True)
            embed = _embed_dense if scoring == "dense" else _embed_tokens
            q_store = student_store if (student is not None and q_enc is student) else store
            c_store = student_store if (student is not None and c_enc is student) else store
            q = embed(q_store, q_enc, problem.queries, q_pre, layer, batch_size)
            c = embed(c_store, c_enc, problem.candidates, c_pre, layer, batch_size)
            metrics, top = _measure(problem, q, c, scoring, run_depth, index)
            per_query[(problem.lang, problem.direction)] = metrics
            sizes[(problem.lang, problem.direction)] = (len(problem.queries), len(problem.candidates))
            if top is not None:
                rankings[(problem.lang, problem.direction)] = (problem, top)
            rows.append(_summarise(problem.lang, problem.direction, metrics, n_bootstrap, seed))
    finally:
        for e, flag in zip(encoders, shown):
            if flag is not None:
                e.progress = flag
    if len({p.lang for p in problems}) > 1:
        rows.extend(_pooled_rows(problems, per_query, n_bootstrap, seed))
    frame = pd.DataFrame(rows)
    return RetrievalReport(
        task=task, model=model, scoring=scoring, split=split if task == "flores" else None,
        frame=frame, per_query=per_query, notes=notes, wall_time_s=time.perf_counter() - start,
        rankings=rankings, sizes=sizes,
    )


def compare(
    a: RetrievalReport, b: RetrievalReport, metric: str = "recall@1", method: str = "permutation", seed: int = 0
) -> pd.DataFrame:
    """Paired test of system b against system a on each (lang, direction) both evaluated.

    Columns: lang, direction, n, a, b, delta (b - a), delta_ci, p_value.
    """
    rows = []
    for key in a.per_query.keys() & b.per_query.keys():
        va, vb = a.per_query[key][metric], b.per_query[key][metric]
        if len(va) != len(vb):
            raise ValueError(f"{key}: {len(va)} queries in a but {len(vb)} in b")
        t = paired_test(va, vb, method=method, seed=seed)
        rows.append(dict(lang=key[0], direction=key[1], n=t.n, a=t.mean_a, b=t.mean_b, delta=t.delta,
                         delta_ci=list(t.delta_ci), p_value=t.p_value))
    if not rows:
        raise ValueError("the two reports have no (lang, direction) in common")
    return pd.DataFrame(rows).sort_values(["lang", "direction"], ignore_index=True)


# ---- internals -------------------------------------------------------------------------
def _load(model, precision: str = "auto"):
    """An Encoder as is; a directory or None (the default model) through ``load_encoder``."""
    if model is None or isinstance(model, (str, os.PathLike)):
        from optical_viz.encoder import load_encoder

        return load_encoder(model, precision=precision)
    return model


def _progress(items, enabled, task):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=f"evaluate {task}", unit="set")


def _encoders_for(problem: RetrievalProblem, encoder, student, teacher, english_queries: str = "teacher"):
    if student is None:
        return encoder, encoder
    # English queries go to the teacher, unless an English control asks for the student on an
    # English-only problem (the candidates are English as well: the teacher encodes them)
    if problem.query_is_english and (english_queries == "teacher" or problem.direction == "en->xx"):
        return teacher, student
    return student, teacher


def _prefixes(kind: str, enc, candidate: bool = False) -> str:
    """e5 models (``enc.prefix == "query: "``): "query: " / "passage: " for QA, "query: " for bitext."""
    if getattr(enc, "prefix", "") != "query: ":
        return getattr(enc, "prefix", "") or ""
    return "passage: " if (candidate and kind == "qa") else "query: "


def _embed_dense(store, enc, texts, prefix, layer, batch_size) -> torch.Tensor:
    return store.sentences(enc, texts, prefix=prefix, layer=layer, batch_size=batch_size)  # (N, H)


def _embed_tokens(store, enc, texts, prefix, layer, batch_size) -> TokenEmbeddings:
    blocks = store.tokens(enc, texts, prefix=prefix, layer=layer, batch_size=max(1, batch_size // 2))
    return pad_tokens(blocks)


def pad_tokens(blocks: list[np.ndarray]) -> TokenEmbeddings:
    """Pad per-text (T_i, H) arrays into (N, T, H) float32 embeddings with a (N, T) mask."""
    if not blocks:
        raise ValueError("no texts to pad")
    n, t, h = len(blocks), max(b.shape[0] for b in blocks), blocks[0].shape[1]
    emb = torch.zeros(n, t, h)
    mask = torch.zeros(n, t, dtype=torch.bool)
    for i, b in enumerate(blocks):
        emb[i, : len(b)] = torch.from_numpy(np.asarray(b, dtype=np.float32))
        mask[i, : len(b)] = True
    return TokenEmbeddings(emb, mask)


def _measure(
    problem: RetrievalProblem, q, c, scoring: str, depth: int = 0, index: str = "exact"
) -> tuple[QueryMetrics, TopK | None]:
    """Per-query metrics and (depth > 0) the top ``depth`` candidates, QUERY_CHUNK queries at a
    time; dense scoring streams over candidate chunks too (no (chunk, D) block)."""
    parts, tops = [], []
    ann = FaissIndex(c, index) if index != "exact" else None  # built once per problem
    for start in range(0, len(problem.queries), QUERY_CHUNK):
        sl = slice(start, start + QUERY_CHUNK)
        rel = Relevance.from_lists(problem.relevant[sl], len(problem.candidates))
        if index != "exact":
            top = ann.search(q[sl], max(depth, 100))
            parts.append(metrics_from_ranks(_ranks_in(top, rel), rel, with_map=problem.with_map))
            tops.append(TopK(top.indices[:, :depth], top.scores[:, :depth]) if depth > 0 else None)
        elif scoring == "dense":
            found = dense_search(q[sl], c, k=depth, relevance=rel)
            parts.append(metrics_from_ranks(found.ranks, rel, with_map=problem.with_map))
            tops.append(found.top)
        else:
            scores = maxsim_scores(TokenEmbeddings(q.embeddings[sl], q.mask[sl]), c)  # (chunk, D)
            parts.append(query_metrics(scores, rel, with_map=problem.with_map))
            tops.append(exact_top_k(scores, depth) if depth > 0 else None)
    metrics = QueryMetrics({k: np.concatenate([p[k] for p in parts]) for k in parts[0].values})
    if depth <= 0:
        return metrics, None
    return metrics, TopK(torch.cat([t.indices for t in tops]), torch.cat([t.scores for t in tops]))


NOT_RETRIEVED = 2**40  # the rank of a relevant candidate an approximate index did not return (AP term < 1e-12)


def _ranks_in(top: TopK, rel: Relevance) -> torch.Tensor:
    """(R,) long: the 1-based position of each relevant pair in its query's top list, or
    NOT_RETRIEVED (recall 0, reciprocal rank 0, AP term < 1e-12) when it is not there."""
    hit = top.indices[rel.query] == rel.candidate[:, None]  # (R, k)
    pos = hit.float().argmax(1) + 1
    return torch.where(hit.any(1), pos, torch.full_like(pos, NOT_RETRIEVED))


def _summarise(lang, direction, metrics: QueryMetrics, n_bootstrap, seed) -> dict:
    row = {"lang": lang, "direction": direction, "n": int(len(next(iter(metrics.values.values()))))}
    for name, values in metrics.values.items():
        if n_bootstrap == 0:  # no intervals asked for
            row[name] = float(np.mean(values))
            row[f"{name}_ci"] = None
            continue
        ci = bootstrap_ci(values, n_resamples=n_bootstrap, seed=seed)
        row[name] = ci.estimate
        row[f"{name}_ci"] = [ci.low, ci.high]
    return row


def _pooled_rows(problems, per_query, n_bootstrap, seed) -> list[dict]:
    """One ``lang="all"`` row per direction: all queries of the evaluated languages pooled."""
    rows = []
    for direction in dict.fromkeys(p.direction for p in problems):
        parts = [per_query[(p.lang, p.direction)] for p in problems if p.direction == direction]
        if len(parts) < 2:
            continue
        pooled = QueryMetrics({k: np.concatenate([m[k] for m in parts]) for k in parts[0].values})
        rows.append(_summarise("all", direction, pooled, n_bootstrap, seed))
    return rows
