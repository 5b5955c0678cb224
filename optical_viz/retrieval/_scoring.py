"""Scoring queries against candidates: dense cosine and late-interaction MaxSim.

Pure torch on embeddings that are already computed. Inputs follow the encoder's
conventions (``optical_viz.encoder``): sentence embeddings (N, H), token embeddings
(N, T, H) with a (N, T) bool mask that is True on real tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

SCORINGS = ("dense", "maxsim")


@dataclass
class TokenEmbeddings:
    """Token embeddings of N texts, padded.

    embeddings: (N, T, H) float, zero at padding
    mask:       (N, T) bool, True on real tokens
    """

    embeddings: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self):
        e, m = self.embeddings, self.mask
        if e.ndim != 3 or m.shape != e.shape[:2]:
            raise ValueError(f"embeddings (N, T, H) and mask (N, T) expected, got {tuple(e.shape)} and {tuple(m.shape)}")

    def __len__(self) -> int:
        return self.embeddings.shape[0]


def dense_scores(queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every query with every candidate.

    queries: (Q, H), candidates: (D, H) float (need not be normalised).
    Returns (Q, D) float32.
    """
    if queries.ndim != 2 or candidates.ndim != 2 or queries.shape[1] != candidates.shape[1]:
        raise ValueError(f"queries (Q, H) and candidates (D, H) expected, got {tuple(queries.shape)} and {tuple(candidates.shape)}")
    q = torch.nn.functional.normalize(queries.float(), dim=-1)
    c = torch.nn.functional.normalize(candidates.float(), dim=-1)
    return q @ c.T  # (Q, D)


def maxsim_scores(
    queries: TokenEmbeddings,
    candidates: TokenEmbeddings,
    max_elements: int = 2**25,
) -> torch.Tensor:
    """ColBERT late interaction: ``s(q, d) = mean_i max_j cos(q_i, d_j)`` over real tokens.

    ColBERT sums over query tokens; we average (divide by the query's token count) so that
    scores of queries of different lengths are comparable; rankings per query are the same.

    queries: Q texts with (Q, Tq, H) embeddings; candidates: D texts with (D, Td, H).
    Returns (Q, D) float32. Works in chunks of query tokens so that the (tokens, D, Td)
    similarity block stays under ``max_elements`` floats.
    """
    if queries.embeddings.shape[-1] != candidates.embeddings.shape[-1]:
        raise ValueError(
            f"hidden sizes differ: queries {tuple(queries.embeddings.shape)}, candidates {tuple(candidates.embeddings.shape)}"
        )
    if not bool(queries.mask.any(1).all()) or not bool(candidates.mask.any(1).all()):
        raise ValueError("every text needs at least one real token (a mask row is all False)")
    Q, H = queries.embeddings.shape[0], queries.embeddings.shape[-1]
    D = candidates.embeddings.shape[0]
    q_tok = torch.nn.functional.normalize(queries.embeddings[queries.mask].float(), dim=-1)  # (Nq, H)
    d_tok = torch.nn.functional.normalize(candidates.embeddings[candidates.mask].float(), dim=-1)  # (Nd, H)
    q_owner = torch.arange(Q).repeat_interleave(queries.mask.sum(1))  # (Nq,) query of each token
    d_owner = torch.arange(D).repeat_interleave(candidates.mask.sum(1))  # (Nd,) candidate of each token
    scores = torch.zeros(Q, D)
    step = max(1, max_elements // len(d_tok))
    for start in range(0, len(q_tok), step):
        sim = q_tok[start : start + step] @ d_tok.T  # (n, Nd): real tokens only, no padding
        best = torch.full((len(sim), D), float("-inf")).scatter_reduce(
            1, d_owner.expand(len(sim), -1), sim, reduce="amax"
        )  # (n, D): best match of each query token in each candidate
        scores.index_add_(0, q_owner[start : start + step], best)
    return scores / queries.mask.sum(1, keepdim=True).float()


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(Q, min(k, D)) long: the indices of the k best candidates per query, best first."""
    return torch.topk(scores, min(k, scores.shape[1]), dim=1).indices
