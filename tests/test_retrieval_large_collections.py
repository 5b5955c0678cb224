"""Exact search streamed over candidate chunks (ranks and running top-k, ties included)
against brute force on the full score matrix, and FAISS indexes against it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from optical_viz.retrieval import Relevance, dense_scores, dense_search, exact_top_k, faiss_search, relevant_ranks


@pytest.fixture(scope="module")
def small_collection(tmp_path_factory, data_root):
    """A small real model and a FLORES-dev CLIR collection (see tests/test_retrieval_trec.py)."""
    from test_retrieval_trec import _clir_collection, _small_model

    root = tmp_path_factory.mktemp("clir")
    return _small_model(root / "bert-2x64"), _clir_collection(data_root, root / "clir")


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
    # (Q, D), scored chunk by chunk as the search does: with several BLAS threads, a (Q, 1024)
    # and a (Q, D) product may round differently, which is not what this test is about
    full = torch.cat([dense_scores(queries, c) for c in cand.split(1024)], dim=1)
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


def test_evaluate_with_a_faiss_index_matches_exact_search(small_collection):
    from optical_viz.retrieval import evaluate

    model, folder = small_collection
    kw = dict(encoder=str(model), langs="all", root=folder, cache=False, n_bootstrap=10, progress=False)
    exact = evaluate("clir", **kw)
    flat = evaluate("clir", index="faiss-flat", **kw)  # top 100 of 198 passages
    for key, m in exact.per_query.items():
        for name in ("recall@1", "recall@5", "recall@10", "mrr@10"):
            assert np.allclose(flat.per_query[key][name], m[name], atol=1e-9), name
        # AP: relevant candidates below the index's top 100 count as not retrieved
        assert (flat.per_query[key]["map"] <= m["map"] + 1e-9).all()
    with pytest.raises(ValueError, match="index 'faiss-hnsw' with maxsim scoring"):
        evaluate("clir", index="faiss-hnsw", scoring="maxsim", **kw)


def test_missing_faiss_is_one_line_saying_what_to_install(monkeypatch, capsys):
    import sys

    from optical_viz.cli import main

    monkeypatch.setitem(sys.modules, "faiss", None)  # as if faiss-cpu were not installed
    with pytest.raises(ImportError, match=r"pip install 'optical_viz\[faiss\]'"):
        faiss_search(torch.randn(2, 4), torch.randn(5, 4), 2)
    code = main(["evaluate", "clir", "--collection", "/nonexistent", "--index", "faiss-flat"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "faiss-cpu" in err[0]
