"""A fixed random subset of a retrieval problem's queries and candidates (for grids of models).

>>> small = subset_problem(problem, max_queries=30, max_candidates=200)

The subset depends only on the language and the sizes (not on the direction or the task),
so every model of a grid is scored on the same queries (paired tests need that), and the
two directions of FLORES (and XQuAD / XQuAD-R, whose questions are the same) keep the same
sentences, encoded once.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from optical_viz.retrieval._tasks import RetrievalProblem


def select_queries(problem: RetrievalProblem, query_ids) -> RetrievalProblem:
    """A copy of ``problem`` with only the queries whose id is in ``query_ids`` (candidates
    unchanged), e.g. the dev questions of a by-article split. The problem must carry
    ``query_ids`` (XQuAD, XQuAD-R, CLIR); ValueError if none of its queries is selected."""
    if problem.query_ids is None:
        raise ValueError(f"{problem.lang} {problem.direction}: this task's queries have no ids to select by")
    wanted = set(query_ids)
    keep = [i for i, q in enumerate(problem.query_ids) if q in wanted]
    if not keep:
        raise ValueError(f"{problem.lang} {problem.direction}: none of its {len(problem.query_ids)} queries is in the "
                         f"{len(wanted)} selected ids")
    return dataclasses.replace(
        problem, queries=[problem.queries[i] for i in keep], relevant=[problem.relevant[i] for i in keep],
        query_ids=[problem.query_ids[i] for i in keep],
    )


def subset_problem(
    problem: RetrievalProblem, max_queries: int | None, max_candidates: int | None, seed: int = 0
) -> RetrievalProblem:
    """A copy of ``problem`` restricted to a fixed random subset of queries and candidates.

    max_queries / max_candidates: the sizes kept (None, or at least the problem's size: all).
    The gold candidates of the kept queries are always kept; the rest of the candidate
    budget is filled with random other candidates. Indices in ``relevant`` are remapped; the
    ids (``query_ids``, ``candidate_ids``, or the positions ``q<i>`` / ``d<i>``) are the whole
    problem's.
    """
    for name, v in (("max_queries", max_queries), ("max_candidates", max_candidates)):
        if v is not None and v < 1:
            raise ValueError(f"{name} must be >= 1 or None, got {v}")
    nq, nc = len(problem.queries), len(problem.candidates)
    rng = np.random.default_rng([seed, *problem.lang.encode()])
    q_idx = np.arange(nq)
    if max_queries is not None and max_queries < nq:
        q_idx = np.sort(rng.choice(nq, size=max_queries, replace=False))
    relevant = [problem.relevant[i] for i in q_idx]
    c_idx = np.arange(nc)
    if max_candidates is not None and max_candidates < nc:
        gold = np.unique(np.array([c for rel in relevant for c in rel], dtype=np.int64))
        others = np.setdiff1d(np.arange(nc), gold)
        extra = max(0, max_candidates - len(gold))
        c_idx = np.sort(np.concatenate([gold, rng.choice(others, size=min(extra, len(others)), replace=False)]))
    remap = {int(c): i for i, c in enumerate(c_idx)}
    # the ids of the whole problem (q<i> / d<i> are positions in it), so that a TREC run of the
    # subset names the same queries and documents as one of the whole
    qids, dids = problem.ids()
    return RetrievalProblem(
        problem.lang, problem.direction,
        [problem.queries[i] for i in q_idx], [problem.candidates[i] for i in c_idx],
        [[remap[c] for c in rel] for rel in relevant],
        kind=problem.kind, query_is_english=problem.query_is_english, with_map=problem.with_map,
        query_ids=[qids[i] for i in q_idx], candidate_ids=[dids[i] for i in c_idx],
    )
