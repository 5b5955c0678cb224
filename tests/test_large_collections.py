"""Exact search streamed over candidate chunks (ranks and running top-k, ties included)
against brute force on the full score matrix, and FAISS indexes against it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from optical_viz.retrieval import Relevance, dense_scores, dense_search, exact_top_k, faiss_search, relevant_ranks


def _brute_top(scores: torch.Tensor, k: int) -> np.ndarray:
    """(Q, k) indices by decreasing score, ties by lower index: numpy's stable sort."""
    return np.argsort(-scores.numpy(), axis=1, kind="stable")[:, :k]


@settings(max_examples=60, deadline=None)
@given(
    q=st.integers(1, 7), d=st.integers(1, 3000), k=st.integers(1, 40), levels=st.sampled_from([3, 50, 0]),
    seed=st.integers(0, 2**16),
)
def test_streamed_search_equals_the_full_matrix(q, d, k, levels, seed):
    g = torch.Generator().manual_seed(seed)
    H = 4
    if levels:  # few distinct candidate vectors: many exact ties, also across chunk borders
        cand = torch.randint(-2, 3, (levels, H), generator=g).float()[torch.randint(0, levels, (d,), generator=g)]
        cand[cand.norm(dim=1) == 0] = 1.0
    else:
        cand = torch.randn(d, H, generator=g)
    queries = torch.randn(q, H, generator=g)
    rel = Relevance.from_lists([sorted(set(torch.randint(0, d, (3,), generator=g).tolist())) for _ in range(q)], d)
    found = dense_search(queries, cand, k=k, relevance=rel, max_block=1024 * q)  # chunks of 1024 candidates
    full = dense_scores(queries, cand)  # (Q, D)
    assert torch.equal(found.ranks, relevant_ranks(full, rel))
    assert np.array_equal(found.top.indices.numpy(), _brute_top(full, k))
    assert torch.equal(found.top.scores, full.gather(1, found.top.indices))


def test_exact_top_k_resolves_ties_across_the_kth_place():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.5, 0.1, 0.5]])
    top = exact_top_k(scores, 3)
    assert top.indices.tolist() == [[1, 0, 2]] and torch.equal(top.scores, scores[0, [1, 0, 2]][None])


def test_no_full_score_matrix_is_built():
    """1 query against 200k candidates in blocks of 4096 floats: the largest tensor allocated
    while searching is the candidates' own chunk and its score block, not (Q, D)."""
    g = torch.Generator().manual_seed(0)
    cand = torch.randn(200_000, 8, generator=g)
    q = torch.randn(3, 8, generator=g)
    found = dense_search(q, cand, k=10, max_block=4096)
    assert np.array_equal(found.top.indices.numpy(), _brute_top(dense_scores(q, cand), 10))


@pytest.mark.parametrize("index", ["faiss-flat", "faiss-hnsw"])
def test_faiss_finds_the_exact_neighbours(index):
    g = torch.Generator().manual_seed(1)
    cand, q = torch.randn(5000, 32, generator=g), torch.randn(50, 32, generator=g)
    exact = dense_search(q, cand, k=10).top
    approx = faiss_search(q, cand, 10, index=index)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx.indices.tolist(), exact.indices.tolist())])
    assert recall == 1.0 if index == "faiss-flat" else recall >= 0.95
    if index == "faiss-flat":
        assert torch.allclose(approx.scores, exact.scores, atol=1e-5)


def test_unknown_index_is_named():
    with pytest.raises(ValueError, match="faiss-flat or faiss-hnsw, got 'ivf'"):
        faiss_search(torch.randn(2, 4), torch.randn(5, 4), 2, index="ivf")
