"""Ranking metrics from a score matrix, bootstrap intervals and a paired test.

Everything here is pure torch / numpy on scores that are already computed: no model,
no I/O. Ranks are exact and deterministic: candidates are ordered by decreasing score,
ties broken by candidate index (as ``numpy.argsort(-s, kind="stable")`` would), so the
metrics agree with a brute-force sort.

Relevance is binary and given per query as a list of candidate indices. With several
relevant candidates, ``recall@k`` is the share of a query's relevant candidates found in
its top k (the IR definition; with one gold it is the hit rate, Tatoeba's "accuracy"),
``mrr@10`` is the reciprocal rank of the first relevant candidate (0 past rank 10) and
``map`` is the mean average precision over the full ranking (as LAReQA reports it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

RECALL_KS = (1, 5, 10)
MRR_CUTOFF = 10


@dataclass
class Relevance:
    """Relevant candidates of each query in a flat (CSR-like) layout.

    query:     (R,) long, the query of each relevant pair, sorted ascending
    candidate: (R,) long, the relevant candidate of each pair
    num_queries: Q
    """

    query: torch.Tensor
    candidate: torch.Tensor
    num_queries: int

    @classmethod
    def from_lists(cls, relevant: list[list[int]] | list[int], num_candidates: int) -> "Relevance":
        """``relevant[q]``: the relevant candidate indices of query q (or one int per query)."""
        rows = [[r] if isinstance(r, (int, np.integer)) else list(r) for r in relevant]
        empty = [q for q, r in enumerate(rows) if len(r) == 0]
        if empty:
            raise ValueError(f"queries {empty[:5]} have no relevant candidate ({len(empty)} in all)")
        q = torch.tensor([i for i, r in enumerate(rows) for _ in r], dtype=torch.long)
        c = torch.tensor([x for r in rows for x in r], dtype=torch.long)
        if len(c) and (int(c.min()) < 0 or int(c.max()) >= num_candidates):
            raise ValueError(
                f"relevant candidate indices must lie in [0, {num_candidates}), got "
                f"[{int(c.min())}, {int(c.max())}]"
            )
        return cls(q, c, len(rows))

    def counts(self) -> torch.Tensor:
        """(Q,) long: number of relevant candidates per query."""
        return torch.bincount(self.query, minlength=self.num_queries)


@dataclass
class QueryMetrics:
    """Per-query metric values, each (Q,) float64; ``mean()`` gives the dataset scores."""

    values: dict[str, np.ndarray]

    def mean(self) -> dict[str, float]:
        return {k: float(v.mean()) for k, v in self.values.items()}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]


def relevant_ranks(scores: torch.Tensor, relevance: Relevance, chunk: int = 1024) -> torch.Tensor:
    """1-based rank of every relevant (query, candidate) pair.

    scores: (Q, D) float, higher is better (row q: query q against all candidates).
    Returns (R,) long aligned with ``relevance.query`` / ``relevance.candidate``:
    ``1 + #{d: s[q,d] > s[q,c]} + #{d < c: s[q,d] == s[q,c]}``.
    """
    if scores.ndim != 2 or scores.shape[0] != relevance.num_queries:
        raise ValueError(
            f"scores must be (num_queries={relevance.num_queries}, D), got {tuple(scores.shape)}"
        )
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN")
    ranks = torch.empty(len(relevance.query), dtype=torch.long)
    idx = torch.arange(scores.shape[1])
    for start in range(0, len(relevance.query), chunk):
        q = relevance.query[start : start + chunk]
        c = relevance.candidate[start : start + chunk]
        rows = scores[q]  # (r, D)
        gold = rows.gather(1, c[:, None])  # (r, 1)
        above = (rows > gold).sum(1)
        tied_before = ((rows == gold) & (idx[None, :] < c[:, None])).sum(1)
        ranks[start : start + chunk] = 1 + above + tied_before
    return ranks


def query_metrics(
    scores: torch.Tensor,
    relevance: Relevance,
    ks: tuple[int, ...] = RECALL_KS,
    mrr_cutoff: int = MRR_CUTOFF,
    with_map: bool = True,
) -> QueryMetrics:
    """Per-query recall@k, mrr@{cutoff} and (optionally) average precision.

    scores: (Q, D) float; relevance: the relevant candidates of each of the Q queries.
    """
    return metrics_from_ranks(relevant_ranks(scores, relevance), relevance, ks, mrr_cutoff, with_map)


def metrics_from_ranks(
    ranks: torch.Tensor,
    relevance: Relevance,
    ks: tuple[int, ...] = RECALL_KS,
    mrr_cutoff: int = MRR_CUTOFF,
    with_map: bool = True,
) -> QueryMetrics:
    """:func:`query_metrics` from the (R,) long 1-based ranks of the relevant pairs (aligned
    with ``relevance.query``), e.g. from :func:`optical_viz.retrieval.dense_search`, which
    streams over the candidates instead of holding a (Q, D) score matrix."""
    if ranks.shape != relevance.query.shape:
        raise ValueError(f"ranks must be ({len(relevance.query)},) like relevance.query, got {tuple(ranks.shape)}")
    nq = relevance.num_queries
    n_rel = relevance.counts().double()  # (Q,)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hits = torch.zeros(nq, dtype=torch.float64).index_add_(
            0, relevance.query, (ranks <= k).double()
        )
        out[f"recall@{k}"] = (hits / n_rel).numpy()
    first = torch.full((nq,), torch.iinfo(torch.long).max, dtype=torch.long)
    first = first.scatter_reduce(0, relevance.query, ranks, reduce="amin")
    rr = torch.where(first <= mrr_cutoff, 1.0 / first.double(), torch.zeros((), dtype=torch.float64))
    out[f"mrr@{mrr_cutoff}"] = rr.numpy()
    if with_map:
        out["map"] = _average_precision(relevance.query, ranks, nq, n_rel).numpy()
    return QueryMetrics(out)


def _average_precision(query: torch.Tensor, ranks: torch.Tensor, nq: int, n_rel: torch.Tensor) -> torch.Tensor:
    """AP per query: mean over relevant r of (#relevant ranked <= rank_r) / rank_r."""
    # sort pairs by (query, rank): the position within a query's run is #relevant above + 1
    order = torch.argsort(query * (ranks.max() + 1) + ranks)
    q, r = query[order], ranks[order]
    starts = torch.cumsum(n_rel.long(), 0) - n_rel.long()  # (Q,) first pair of each query
    position = torch.arange(len(q)) - starts[q] + 1  # (R,) 1-based among the query's relevant
    prec = position.double() / r.double()
    return torch.zeros(nq, dtype=torch.float64).index_add_(0, q, prec) / n_rel


@dataclass
class Interval:
    """A point estimate with a percentile bootstrap interval."""

    estimate: float
    low: float
    high: float


def bootstrap_ci(
    values: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of the mean of per-query ``values`` (Q,), resampling queries."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {values.shape}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an integer >= 1, got {n_resamples!r}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    step = max(1, 2_000_000 // len(values))  # bound memory: step x Q indices at a time
    for start in range(0, n_resamples, step):
        m = min(step, n_resamples - start)
        idx = rng.integers(0, len(values), size=(m, len(values)))
        means[start : start + m] = values[idx].mean(1)
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return Interval(float(values.mean()), float(lo), float(hi))


@dataclass
class PairedTest:
    """Comparison of two systems on the same queries (``delta = mean_b - mean_a``)."""

    mean_a: float
    mean_b: float
    delta: float
    p_value: float
    delta_ci: tuple[float, float]
    method: str
    n: int


def paired_test(
    a: np.ndarray,
    b: np.ndarray,
    method: str = "permutation",
    n_resamples: int = 10_000,
    seed: int = 0,
) -> PairedTest:
    """Two-sided paired test of ``mean(b) - mean(a)`` on per-query values of two systems.

    a, b: (Q,) per-query metric values of systems A and B on the same queries, in the same order.
    method: ``"permutation"`` (random sign flips of the per-query differences, the
    randomisation test) or ``"bootstrap"`` (resample queries, p from the shifted null).
    The p-value includes the observed statistic, ``(1 + #extreme) / (1 + n_resamples)``,
    so identical systems give exactly 1.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"a and b must be non-empty 1-D arrays of equal length, got {a.shape} and {b.shape}")
    if method not in ("permutation", "bootstrap"):
        raise ValueError(f"method must be 'permutation' or 'bootstrap', got {method!r}")
    d = b - a
    observed = d.mean()
    rng = np.random.default_rng(seed)
    n = len(d)
    step = max(1, 2_000_000 // n)
    stats = np.empty(n_resamples)
    boot = np.empty(n_resamples)
    for start in range(0, n_resamples, step):
        m = min(step, n_resamples - start)
        idx = rng.integers(0, n, size=(m, n))
        boot[start : start + m] = d[idx].mean(1)
        if method == "permutation":
            signs = rng.choice(np.array([-1.0, 1.0]), size=(m, n))
            stats[start : start + m] = (signs * d).mean(1)
        else:
            stats[start : start + m] = boot[start : start + m] - observed  # null-centred
    tol = 1e-12 * max(1.0, abs(observed))
    extreme = int((np.abs(stats) >= abs(observed) - tol).sum())
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return PairedTest(
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        delta=float(observed),
        p_value=(1 + extreme) / (1 + n_resamples),
        delta_ci=(float(lo), float(hi)),
        method=method,
        n=n,
    )
