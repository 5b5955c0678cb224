"""Scoring queries against candidates: dense cosine and late-interaction MaxSim.

Pure torch on embeddings that are already computed. Inputs follow the encoder's
conventions (``optical_viz.encoder``): sentence embeddings (N, H), token embeddings
(N, T, H) with a (N, T) bool mask that is True on real tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from optical_viz.options import SCORINGS  # dense | maxsim (owned there: the CLI lists them without torch)


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
    Q = queries.embeddings.shape[0]
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


# ---- large collections: exact search streamed over candidate chunks, and FAISS ---------------
#: floats in one (queries, candidates) score block of :func:`dense_search` (64 MiB)
MAX_BLOCK = 2**24
INDEXES = ("exact", "faiss-flat", "faiss-hnsw")


@dataclass
class TopK:
    """The k best candidates of each of Q queries, best first.

    indices: (Q, k) long candidate indices; among equal scores the lower index comes first
        (as in :func:`optical_viz.retrieval.relevant_ranks`), so the order is exact and
        deterministic. scores: (Q, k) float32, non-increasing along each row.
    """

    indices: torch.Tensor
    scores: torch.Tensor


@dataclass
class DenseSearch:
    """What :func:`dense_search` found: ``top`` (None when k is 0) and ``ranks``, the (R,)
    long 1-based rank of each relevant pair of the given relevance (None when not given)."""

    top: TopK | None
    ranks: torch.Tensor | None


def _sort_rows(vals: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Order each row by decreasing value, ties by increasing index. vals, idx: (Q, n)."""
    by_index = torch.argsort(idx, dim=1, stable=True)  # (Q, n)
    vals, idx = vals.gather(1, by_index), idx.gather(1, by_index)
    by_value = torch.argsort(vals, dim=1, descending=True, stable=True)  # keeps index order among ties
    return vals.gather(1, by_value), idx.gather(1, by_value)


def exact_top_k(scores: torch.Tensor, k: int, offset: int = 0) -> TopK:
    """The k best columns of ``scores`` (Q, n) per row, ties broken by lower column index,
    returned as global indices ``offset + column``. Exact even when ties straddle the k-th place
    (``torch.topk`` alone would pick among them arbitrarily)."""
    k = min(int(k), scores.shape[1])
    vals, idx = torch.topk(scores, k, dim=1)  # (Q, k)
    if k < scores.shape[1] and k > 0:
        tied = (scores >= vals[:, -1:]).sum(1) > k  # rows with ties across the k-th place
        if bool(tied.any()):
            rows = tied.nonzero().squeeze(1)
            order = torch.argsort(scores[rows], dim=1, descending=True, stable=True)[:, :k]  # (r, k)
            idx[rows] = order
            vals[rows] = scores[rows].gather(1, order)
    vals, idx = _sort_rows(vals, idx)
    return TopK(idx + offset, vals)


def _merge(a: TopK | None, b: TopK, k: int) -> TopK:
    """Keep the k best of two top lists whose indices are all lower in ``a`` than in ``b``."""
    if a is None:
        return b
    vals = torch.cat([a.scores, b.scores], 1)  # (Q, ka + kb): a's (lower) indices first
    idx = torch.cat([a.indices, b.indices], 1)
    order = torch.argsort(vals, dim=1, descending=True, stable=True)[:, :k]  # ties keep a before b
    return TopK(idx.gather(1, order), vals.gather(1, order))


def dense_search(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    k: int = 0,
    relevance=None,
    max_block: int = MAX_BLOCK,
) -> DenseSearch:
    """Exact cosine search streamed over chunks of candidates: no (Q, D) score matrix.

    queries: (Q, H), candidates: (D, H) float (need not be normalised).
    k: keep a running top-k per query (0: none). relevance: an
        :class:`optical_viz.retrieval.Relevance` of the Q queries; the rank of each relevant
        pair is then counted as :func:`optical_viz.retrieval.relevant_ranks` defines it
        (``1 + #higher + #equal with a lower index``), in a second pass over the chunks that
        recomputes the same blocks, so the gold score is compared bit for bit.
    max_block: floats in one (Q, chunk) score block; the chunk is ``max_block // Q``
        candidates (at least 1024). Memory: the block plus (Q, 2k) for the running top-k.
    Scores are those of :func:`dense_scores`.
    """
    if queries.ndim != 2 or candidates.ndim != 2 or queries.shape[1] != candidates.shape[1]:
        raise ValueError(f"queries (Q, H) and candidates (D, H) expected, got {tuple(queries.shape)} and {tuple(candidates.shape)}")
    Q, D = queries.shape[0], candidates.shape[0]
    q = torch.nn.functional.normalize(queries.float(), dim=-1)  # (Q, H)
    step = max(1024, max_block // max(Q, 1))

    def blocks():
        for start in range(0, D, step):
            c = torch.nn.functional.normalize(candidates[start : start + step].float(), dim=-1)  # (n, H)
            yield start, q @ c.T  # (Q, n)

    top, gold = None, None
    if relevance is not None:
        if relevance.num_queries != Q:
            raise ValueError(f"relevance has {relevance.num_queries} queries, queries {Q}")
        gold = torch.empty(len(relevance.query), dtype=torch.float32)
    for start, s in blocks():
        if torch.isnan(s).any():
            raise ValueError("scores contain NaN")
        if k > 0:
            top = _merge(top, exact_top_k(s, k, offset=start), min(k, D))
        if gold is not None:  # the gold scores, read off the very blocks that are counted below
            inside = (relevance.candidate >= start) & (relevance.candidate < start + s.shape[1])
            gold[inside] = s[relevance.query[inside], relevance.candidate[inside] - start]
    ranks = None
    if gold is not None:
        ranks = torch.ones(len(gold), dtype=torch.long)
        for start, s in blocks():
            idx = torch.arange(start, start + s.shape[1])  # (n,)
            for r0 in range(0, len(gold), max(1, Q)):  # (r, n) at most the size of a block
                qr = relevance.query[r0 : r0 + Q]
                g = gold[r0 : r0 + Q, None]  # (r, 1)
                rows = s[qr]  # (r, n)
                c = relevance.candidate[r0 : r0 + Q, None]
                ranks[r0 : r0 + Q] += ((rows > g) | ((rows == g) & (idx[None, :] < c))).sum(1)
    return DenseSearch(top, ranks)


class FaissIndex:
    """A FAISS index over L2-normalised candidates (``pip install optical_viz[faiss]``, i.e. faiss-cpu);
    build once, :meth:`search` many times.

    candidates: (D, H) float. kind: "faiss-flat" (exact inner product, FAISS's BLAS) or
    "faiss-hnsw" (approximate: HNSW graph with ``hnsw_m`` links per node, ``ef_construction``
    / ``ef_search`` beam widths).
    """

    def __init__(self, candidates: torch.Tensor, kind: str = "faiss-flat", hnsw_m: int = 32,
                 ef_construction: int = 80, ef_search: int = 128):
        if kind not in ("faiss-flat", "faiss-hnsw"):
            raise ValueError(f"index must be faiss-flat or faiss-hnsw, got {kind!r}")
        faiss = import_faiss()
        H = candidates.shape[1]
        if kind == "faiss-flat":
            self.index = faiss.IndexFlatIP(H)
        else:
            self.index = faiss.IndexHNSWFlat(H, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = ef_construction
            self.index.hnsw.efSearch = ef_search
        self.index.add(torch.nn.functional.normalize(candidates.float(), dim=-1).contiguous().numpy())
        self.size = candidates.shape[0]

    def search(self, queries: torch.Tensor, k: int) -> TopK:
        """queries (Q, H) float -> :class:`TopK` (ties in FAISS's own order; HNSW may return
        -1 indices when it finds fewer than k)."""
        q = torch.nn.functional.normalize(queries.float(), dim=-1).contiguous().numpy()
        vals, idx = self.index.search(q, min(k, self.size))  # (Q, k) float32, int64
        return TopK(torch.from_numpy(idx), torch.from_numpy(vals))


def faiss_search(queries: torch.Tensor, candidates: torch.Tensor, k: int, index: str = "faiss-flat", **kw) -> TopK:
    """Cosine top-k of ``queries`` (Q, H) among ``candidates`` (D, H) with a :class:`FaissIndex`."""
    return FaissIndex(candidates, index, **kw).search(queries, k)


def import_faiss():
    """The faiss module, or ImportError saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise ImportError(
            "FAISS indexes need the faiss-cpu package: pip install 'optical_viz[faiss]' (or pip install faiss-cpu), "
            "or use the exact search (index='exact')"
        ) from None
    return faiss
