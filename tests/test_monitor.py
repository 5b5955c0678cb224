"""The held-out signal of optical_viz.monitor: cosine, translation gap and recall@1 on
hand-made embeddings (against a brute-force reference) and on the default model."""
from __future__ import annotations

import pytest


def test_heldout_scores_of_hand_made_embeddings():
    import torch

    from optical_viz.monitor import heldout_scores

    eye = heldout_scores(torch.eye(4), torch.eye(4))  # each sentence is its translation, orthogonal to the rest
    assert (eye.cosine, eye.random_cosine, eye.translation_gap, eye.recall_at_1) == (1.0, 0.0, 1.0, 1.0)
    # a collapsed student (every sentence the same vector): pairs no closer than non-pairs;
    # all ties, which go to the lowest index: only sentence 0 is found
    teacher = torch.nn.functional.normalize(torch.randn(5, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    same = heldout_scores(teacher[:1].expand(5, 8), teacher[:1].expand(5, 8))
    assert same.translation_gap == pytest.approx(0.0, abs=1e-6) and same.recall_at_1 == pytest.approx(1 / 5)
    # noisy translations in 3 dimensions against a brute-force reference (loops over the n x n cosines)
    g = torch.Generator().manual_seed(0)
    teacher = torch.nn.functional.normalize(torch.randn(6, 3, generator=g), dim=-1)
    s = torch.nn.functional.normalize(teacher + torch.randn(6, 3, generator=g), dim=-1)
    sim = [[float(s[i] @ teacher[j]) for j in range(6)] for i in range(6)]
    pos = sum(sim[i][i] for i in range(6)) / 6
    neg = sum(sim[i][j] for i in range(6) for j in range(6) if i != j) / 30
    hits = sum(max(range(6), key=lambda j: sim[i][j]) == i for i in range(6)) / 6
    got = heldout_scores(s, teacher)
    assert got.cosine == pytest.approx(pos, rel=1e-5) and got.random_cosine == pytest.approx(neg, rel=1e-5)
    assert got.translation_gap == pytest.approx(pos - neg, rel=1e-5) and got.recall_at_1 == hits
    assert 0 < hits < 1  # the case is not trivial
    with pytest.raises(ValueError, match=r"\(n, H\) with n >= 2, got \(6, 3\) and \(4, 3\)"):
        heldout_scores(s, teacher[:4])
    with pytest.raises(ValueError, match=r"n >= 2, got \(1, 3\)"):
        heldout_scores(s[:1], teacher[:1])


def test_heldout_scores_of_the_default_model(data_root, encoder):
    """Before training (student = teacher = the default model) Yoruba FLORES dev sentences are
    closer to their translations than to other sentences, and mostly find them."""
    from optical_viz import data
    from optical_viz.monitor import heldout_scores

    yo = data.load_flores("yor_Latn", split="dev", root=data_root).texts[:24]
    en = data.load_flores("eng_Latn", split="dev", root=data_root).texts[:24]
    got = heldout_scores(encoder.embed_sentences(yo), encoder.embed_sentences(en))
    assert 0.02 < got.translation_gap < got.cosine and 0 < got.random_cosine  # e5's cosines are all high
    assert 0.5 < got.recall_at_1 <= 1
