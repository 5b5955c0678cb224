"""One model on one evaluation (optical_viz.experiments.evaluation), against retrieval.evaluate
and a brute-force computation, with the query / candidate subsets it draws
(optical_viz.retrieval.subset_problem)."""
from __future__ import annotations

import numpy as np
import pytest

from optical_viz import experiments as ex
from optical_viz.retrieval import RetrievalProblem, subset_problem

TOL = 1e-6


def _toy_problem(nq=30, nc=50, lang="xx", direction="xx->en", multi=False):
    rng = np.random.default_rng(1)
    relevant = [sorted(rng.choice(nc, size=3 if multi else 1, replace=False).tolist()) for _ in range(nq)]
    return RetrievalProblem(lang, direction, [f"q{i}" for i in range(nq)], [f"c{j}" for j in range(nc)],
                            relevant, kind="qa", with_map=multi)


@pytest.mark.parametrize("multi", [False, True])
def test_subset_keeps_gold_and_remaps(multi):
    p = _toy_problem(multi=multi)
    s = subset_problem(p, max_queries=10, max_candidates=20)
    assert len(s.queries) == 10
    assert len(s.candidates) == max(20, len({c for i in range(10) for c in s.relevant[i]}))
    original = {q: [p.candidates[c] for c in rel] for q, rel in zip(p.queries, p.relevant)}
    for q, rel in zip(s.queries, s.relevant):
        assert [s.candidates[c] for c in rel] == original[q]  # the same gold texts after remapping
    # deterministic, and the same sentences for both directions of a language
    again = subset_problem(_toy_problem(multi=multi, direction="en->xx"), 10, 20)
    assert again.queries == s.queries and again.candidates == s.candidates
    assert subset_problem(p, None, None).candidates == p.candidates


# ----------------------------------------------------------------------------- evaluation


def _brute_force(encoder, problem, scoring):
    """Per-query metrics of ``problem`` without cache or evaluation code: the encoder's own
    embeddings (token embeddings rounded to float16, as the cache stores them), e5 prefixes
    ("passage: " for QA candidates, "query: " elsewhere), scores and metrics."""
    from optical_viz.retrieval import Relevance, TokenEmbeddings, dense_scores, maxsim_scores, query_metrics

    q_pre, c_pre = "query: ", "passage: " if problem.kind == "qa" else "query: "
    if scoring == "dense":
        scores = dense_scores(encoder.embed_sentences(problem.queries, prefix=q_pre),
                              encoder.embed_sentences(problem.candidates, prefix=c_pre))
    else:
        def tokens(texts, prefix):
            b = encoder.embed_tokens(texts, prefix=prefix)
            return TokenEmbeddings(b.embeddings.half().float(), b.mask)

        scores = maxsim_scores(tokens(problem.queries, q_pre), tokens(problem.candidates, c_pre))
    rel = Relevance.from_lists(problem.relevant, len(problem.candidates))
    return query_metrics(scores, rel, with_map=problem.with_map)


@pytest.mark.parametrize("scoring", ["dense", "maxsim"])
@pytest.mark.parametrize("task,lang", [pytest.param("xquad-r", "deu_Latn", marks=pytest.mark.slow),  # 30-60 s
                                       pytest.param("xquad", "deu_Latn", marks=pytest.mark.slow),  # (paragraphs)
                                       ("flores", "yor_Latn")])
def test_grid_evaluation_is_retrieval_evaluate_on_the_same_subset(encoder, data_root, task, lang, scoring):
    """The grid's numbers equal retrieval.evaluate's with the same subset, and both equal a
    brute-force computation on that subset (every task, both scorings)."""
    from optical_viz.retrieval import build_problems, evaluate

    ev = ex.EvalSpec(task=task, scoring=scoring, max_queries=6, max_candidates=15)
    mine = ex.evaluate_model(ev, encoder, encoder, [lang], root=data_root, n_bootstrap=50)
    ref = evaluate(task, encoder=encoder, langs=[lang], split="all" if task == "flores" else None, scoring=scoring,
                   root=data_root, cache=False, n_bootstrap=50, progress=False, max_queries=6, max_candidates=15)
    a = mine.report.frame.set_index(["lang", "direction"]).sort_index()
    b = ref.frame.set_index(["lang", "direction"]).sort_index()
    assert list(a.index) == list(b.index) and len(a) == len(build_problems(task, [lang], root=data_root))
    for m in ("recall@1", "recall@5", "recall@10", "mrr@10"):
        np.testing.assert_allclose(a[m].to_numpy(float), b[m].to_numpy(float), atol=TOL)
        np.testing.assert_allclose(np.stack(a[f"{m}_ci"]), np.stack(b[f"{m}_ci"]), atol=TOL)
    for p in build_problems(task, [lang], root=data_root):
        sub = subset_problem(p, 6, 15)
        assert mine.subsets[(lang, p.direction)] == (6, len(sub.candidates)) and len(sub.candidates) >= 6
        expected = _brute_force(encoder, sub, scoring)
        for m, values in mine.report.per_query[(lang, p.direction)].values.items():
            np.testing.assert_allclose(values, expected[m], atol=1e-5, err_msg=f"{p.direction} {m}")
