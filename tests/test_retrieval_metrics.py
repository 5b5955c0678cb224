"""Ranking metrics, bootstrap intervals, paired test and scoring against brute force."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from optical_viz.retrieval import (
    Relevance,
    TokenEmbeddings,
    bootstrap_ci,
    dense_scores,
    maxsim_scores,
    paired_test,
    query_metrics,
    top_k,
)

ATOL = 1e-12


def brute_force(scores: np.ndarray, relevant: list[list[int]]) -> dict[str, np.ndarray]:
    """Sort every row (stable, best first) and read the metrics off the ranking."""
    out = {k: [] for k in ("recall@1", "recall@5", "recall@10", "mrr@10", "map")}
    for s, rel in zip(scores, relevant):
        order = list(np.argsort(-s, kind="stable"))
        ranks = sorted(order.index(r) + 1 for r in rel)
        for k in (1, 5, 10):
            out[f"recall@{k}"].append(sum(r <= k for r in ranks) / len(rel))
        out["mrr@10"].append(1 / ranks[0] if ranks[0] <= 10 else 0.0)
        out["map"].append(np.mean([(i + 1) / r for i, r in enumerate(ranks)]))
    return {k: np.array(v) for k, v in out.items()}


@settings(max_examples=60, deadline=None)
@given(
    nq=st.integers(1, 12),
    nd=st.integers(1, 30),
    levels=st.integers(2, 50),  # few levels -> many ties
    seed=st.integers(0, 2**31 - 1),
)
def test_metrics_match_brute_force(nq, nd, levels, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, size=(nq, nd)).astype(np.float32)
    relevant = [sorted(rng.choice(nd, size=rng.integers(1, min(nd, 4) + 1), replace=False).tolist()) for _ in range(nq)]
    got = query_metrics(torch.from_numpy(scores), Relevance.from_lists(relevant, nd))
    want = brute_force(scores, relevant)
    for name, values in want.items():
        np.testing.assert_allclose(got[name], values, atol=ATOL, err_msg=name)


def test_single_gold_recall_is_hit_rate_and_topk_agrees():
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.normal(size=(50, 40)))
    gold = rng.integers(0, 40, size=50).tolist()
    m = query_metrics(scores, Relevance.from_lists(gold, 40), with_map=False)
    top = top_k(scores, 5)
    hits = np.array([g in row for g, row in zip(gold, top.tolist())], dtype=float)
    np.testing.assert_array_equal(m["recall@5"], hits)
    assert "map" not in m.values


def test_relevance_rejects_bad_input():
    with pytest.raises(ValueError, match="no relevant candidate"):
        Relevance.from_lists([[0], []], 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        Relevance.from_lists([[5]], 3)
    with pytest.raises(ValueError, match="num_queries=2"):
        query_metrics(torch.zeros(3, 4), Relevance.from_lists([[0], [1]], 4))
    with pytest.raises(ValueError, match="NaN"):
        query_metrics(torch.full((1, 2), float("nan")), Relevance.from_lists([[0]], 2))


def test_bootstrap_contains_estimate_and_narrows():
    rng = np.random.default_rng(1)
    widths = []
    for n in (50, 500, 5000):
        values = (rng.random(n) < 0.6).astype(float)
        ci = bootstrap_ci(values, n_resamples=500, seed=0)
        assert ci.low <= ci.estimate <= ci.high
        assert ci.estimate == pytest.approx(values.mean())
        widths.append(ci.high - ci.low)
    assert widths[0] > widths[1] > widths[2]
    # the width of a 95% interval of a proportion is close to 2 * 1.96 * sqrt(p(1-p)/n)
    assert widths[2] == pytest.approx(2 * 1.96 * np.sqrt(0.24 / 5000), rel=0.2)


@pytest.mark.parametrize("method", ["permutation", "bootstrap"])
def test_paired_test(method):
    rng = np.random.default_rng(2)
    a = (rng.random(300) < 0.5).astype(float)
    same = paired_test(a, a.copy(), method=method, n_resamples=2000)
    assert same.p_value == 1.0 and same.delta == 0.0
    better = np.maximum(a, (rng.random(300) < 0.4).astype(float))  # b >= a everywhere, +~20 points
    t = paired_test(a, better, method=method, n_resamples=2000)
    assert t.delta > 0.1 and t.p_value < 0.01
    assert t.delta_ci[0] > 0
    noise = paired_test(a, rng.permutation(a), method=method, n_resamples=2000)
    assert noise.p_value > 0.05


def test_dense_scores_are_cosines():
    rng = np.random.default_rng(3)
    q, c = rng.normal(size=(4, 8)), rng.normal(size=(6, 8))
    want = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (c / np.linalg.norm(c, axis=1, keepdims=True)).T
    np.testing.assert_allclose(dense_scores(torch.from_numpy(q), torch.from_numpy(c)).numpy(), want, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(4, 8\)"):
        dense_scores(torch.from_numpy(q), torch.zeros(6, 7))


def test_maxsim_matches_brute_force_and_ignores_padding():
    rng = np.random.default_rng(4)
    lens_q, lens_d, h = [3, 1, 5], [2, 6, 1, 4], 8
    q = [rng.normal(size=(n, h)) for n in lens_q]
    d = [rng.normal(size=(n, h)) for n in lens_d]

    def pad(blocks, fill):
        t = max(len(b) for b in blocks)
        e = np.full((len(blocks), t, h), fill)
        m = np.zeros((len(blocks), t), dtype=bool)
        for i, b in enumerate(blocks):
            e[i, : len(b)], m[i, : len(b)] = b, True
        return TokenEmbeddings(torch.from_numpy(e).float(), torch.from_numpy(m))

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    want = np.array([[np.mean((unit(qi) @ unit(dj).T).max(1)) for dj in d] for qi in q])
    # padding filled with large values must not matter; a tiny chunk exercises the loop
    got = maxsim_scores(pad(q, 100.0), pad(d, 100.0), max_elements=7)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    with pytest.raises(ValueError, match="at least one real token"):
        empty = TokenEmbeddings(torch.zeros(1, 2, h), torch.zeros(1, 2, dtype=torch.bool))
        maxsim_scores(empty, pad(d, 0.0))
