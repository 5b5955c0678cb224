"""The held-out signal of a training run: how well student sentences find their English translations.

:func:`heldout_scores` scores one language's aligned (student, teacher) sentence
embeddings as a :class:`HeldoutScores`; the trainer (:mod:`optical_viz.distill`) logs them
on FLORES dev under the ``metrics.jsonl`` keys of :data:`HELDOUT_KEYS`.

>>> import torch
>>> heldout_scores(torch.eye(3), torch.eye(3)).translation_gap
1.0
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HELDOUT_KEYS", "HeldoutScores", "heldout_scores"]

# metrics.jsonl key -> HeldoutScores attribute (each also logged per language as KEY_by_lang)
HELDOUT_KEYS = {"heldout_cosine": "cosine", "translation_gap": "translation_gap", "dev_recall@1": "recall_at_1"}


@dataclass
class HeldoutScores:
    """How well n student sentences find their n English translations (one language).

    cosine: mean cosine of the n translation pairs (row i with row i).
    random_cosine: mean cosine of the n (n - 1) non-matching pairs (row i with row j != i).
    translation_gap: ``cosine - random_cosine``; a student that moves every sentence towards
        one point raises ``cosine`` but not the gap.
    recall_at_1: share of the n sentences whose translation is the most similar of the n
        English sentences (ties go to the lower index, as in :mod:`optical_viz.retrieval`).
    """

    cosine: float
    random_cosine: float
    translation_gap: float
    recall_at_1: float


def heldout_scores(student, teacher) -> HeldoutScores:
    """Scores of the similarity matrix between aligned sentence embeddings.

    student: (n, H) float tensor, L2-normalised embeddings of n sentences of one language.
    teacher: (n, H) float tensor, L2-normalised embeddings of their English translations
        (row i translates student row i); n >= 2.

    >>> import torch
    >>> heldout_scores(torch.eye(3), torch.eye(3))
    HeldoutScores(cosine=1.0, random_cosine=0.0, translation_gap=1.0, recall_at_1=1.0)
    """
    from optical_viz.retrieval import Relevance, relevant_ranks

    if student.ndim != 2 or tuple(student.shape) != tuple(teacher.shape) or student.shape[0] < 2:
        raise ValueError(
            f"student and teacher must both be (n, H) with n >= 2, got {tuple(student.shape)} and {tuple(teacher.shape)}"
        )
    sim = (student.float() @ teacher.float().T).cpu()  # (n, n): student i vs English j
    n = sim.shape[0]
    pos = sim.diagonal().sum() / n
    neg = (sim.sum() - sim.diagonal().sum()) / (n * (n - 1))
    ranks = relevant_ranks(sim, Relevance.from_lists(list(range(n)), n))  # (n,) 1-based rank of each translation
    return HeldoutScores(cosine=float(pos), random_cosine=float(neg), translation_gap=float(pos - neg),
                         recall_at_1=float((ranks == 1).double().mean()))
