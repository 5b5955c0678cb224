"""The statistics of the pre-registered protocol (``results/full/protocol.yaml``, ``statistics``).

Pure numpy (pandas only for :func:`family_table`), no I/O, no plotting.

Data model
----------
An **arm** is the per-query metric values of one method, for every seed and language::

    Arm = dict[int, dict[str, np.ndarray]]     # arm[seed][lang]: shape (n_queries_lang,), float

``arm[seed][lang][q]`` is the metric of query ``q`` of language ``lang`` for the model trained
with ``seed`` (e.g. recall@1 of that query). Within a language the query order is the same for
every seed and every arm (every model scores the same queries), so ``arm[s][lang]`` has the
same length for every seed ``s`` and in every arm it is compared with. A deterministic arm
(zero-shot) has a single seed. A "language" is any string label: a caller that scores two
directions per language can use ``"yor_Latn:xx->en"`` and ``"yor_Latn:en->xx"`` as two units.

The point estimate of an arm is the mean over seeds of the mean over languages of the mean over
queries: every language weighs the same, whatever its number of queries.

Units: every function is linear in the values, so intervals come out in the unit of the input.
The equivalence margin is in that unit too, and its default (1.0) is the protocol's
**1 R@1 point**: pass values in percent (``percent(arm)`` multiplies an arm of 0/1 values by 100).

The bootstrap
-------------
One replicate (``n`` of them, ``numpy.random.default_rng(seed)``) resamples, with replacement,

1. the seeds (an ``(n, S)`` draw; skipped when every arm has a single seed),
2. the languages (an ``(n, L)`` draw per distinct language set),
3. the queries of each language (an ``(n, Q_lang)`` draw per language name).

The levels are crossed, not nested: the query draw of a language is shared by every seed (the
queries are the same items for every model) and by every arm of a contrast; a language drawn
twice in a replicate uses its one query draw twice. Contrasts are paired: both arms see the same
seed, language and query draws, so the replicate of ``a - b`` is the replicate of ``a`` minus
that of ``b``. Intervals are percentile intervals of the replicates around the observed point
estimate.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> langs = ["deu", "hin", "tha"]
>>> base = {lang: rng.random(200) for lang in langs}              # per-query difficulty
>>> ot = {s: {l: 100.0 * (base[l] < 0.7) for l in langs} for s in (0, 1, 2)}
>>> zero_shot = {0: {l: 100.0 * (base[l] < 0.5) for l in langs}}
>>> est = hierarchical_bootstrap(ot, n=500)
>>> print(f"{est.estimate:.1f}", est.lo <= est.estimate <= est.hi)
67.0 True
>>> c = paired_difference(ot, zero_shot, n=500)
>>> print(f"{c.estimate:.1f}", c.p_value < 0.01, c.equivalent)
21.3 True False
>>> holm({"ot-zs": 0.01, "ot-mse": 0.04, "mse-zs": 0.03}).p_adjusted.round(3).tolist()
[0.03, 0.06, 0.06]
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "N_BOOTSTRAP", "BOOTSTRAP_SEED", "INTERVAL", "ALPHA", "MARGIN",
    "Estimate", "Contrast", "Equivalence", "Holm",
    "percent", "hierarchical_bootstrap", "paired_difference", "difference_in_differences",
    "tost", "holm", "family_table", "contrast_table",
]

Arm = Mapping[int, Mapping[str, np.ndarray]]

# The protocol's values (statistics: bootstrap.n, bootstrap.seed, interval, alpha, equivalence.margin)
N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 2026
INTERVAL = 0.95
ALPHA = 0.05
MARGIN = 1.0


# ----------------------------------------------------------------------------- results
@dataclass
class Estimate:
    """The point estimate of one arm and its percentile bootstrap interval.

    samples: (n,) float64, the bootstrap replicates of the estimate.
    """

    estimate: float
    lo: float
    hi: float
    samples: np.ndarray = field(repr=False)


@dataclass
class Equivalence:
    """TOST at ``margin``: the ``1 - 2 alpha`` percentile interval ``[lo, hi]`` of a difference,
    ``equivalent`` when it lies within ``[-margin, +margin]`` (both one-sided tests reject at alpha)."""

    lo: float
    hi: float
    margin: float
    alpha: float
    equivalent: bool


@dataclass
class Contrast:
    """A paired difference (or difference in differences) with its interval and tests.

    estimate, lo, hi: the observed difference and its ``interval`` percentile bootstrap interval.
    p_value: two-sided bootstrap p, ``min(1, 2 min(P(d <= 0), P(d >= 0)))`` over the replicates.
    tost_lo, tost_hi, equivalent: the TOST of :func:`tost` at ``margin`` (the 90% interval
    for alpha 0.05).
    samples: (n,) float64, the bootstrap replicates of the difference.
    """

    estimate: float
    lo: float
    hi: float
    p_value: float
    tost_lo: float
    tost_hi: float
    equivalent: bool
    margin: float
    samples: np.ndarray = field(repr=False)


@dataclass
class Holm:
    """Holm-Bonferroni step-down adjustment of one family of ``m`` p-values, in input order.

    names: the keys when the p-values came as a mapping, else None.
    p_adjusted: (m,) float64, monotone in the raw p-values, capped at 1.
    reject: (m,) bool, ``p_adjusted <= alpha``.
    """

    names: tuple[str, ...] | None
    p_adjusted: np.ndarray
    reject: np.ndarray
    alpha: float


# ----------------------------------------------------------------------------- arms
@dataclass(frozen=True)
class _Table:
    """A validated arm: ``values[lang]`` is (S, Q_lang) float64, rows in ``seeds`` order."""

    seeds: tuple[int, ...]
    langs: tuple[str, ...]
    values: dict[str, np.ndarray]

    def point(self) -> float:
        # mean over queries -> (S,) per language; mean over languages, then over seeds
        per_lang = np.stack([self.values[lang].mean(axis=1) for lang in self.langs], axis=1)  # (S, L)
        return float(per_lang.mean(axis=1).mean())


def _table(arm: Arm, name: str = "arm") -> _Table:
    if not isinstance(arm, Mapping) or len(arm) == 0:
        raise ValueError(f"{name} must be a non-empty dict seed -> {{lang: values}}, got {arm!r:.80}")
    seeds = tuple(sorted(arm))
    langs: tuple[str, ...] | None = None
    for s in seeds:
        if not isinstance(arm[s], Mapping) or len(arm[s]) == 0:
            raise ValueError(f"{name}[{s!r}] must be a non-empty dict lang -> values")
        these = tuple(sorted(arm[s]))
        if langs is None:
            langs = these
        elif these != langs:
            raise ValueError(f"{name}: seed {s!r} has languages {list(these)}, seed {seeds[0]!r} has {list(langs)}")
    values = {}
    for lang in langs:
        rows = [np.asarray(arm[s][lang], dtype=np.float64) for s in seeds]
        for s, row in zip(seeds, rows):
            if row.ndim != 1 or row.size == 0:
                raise ValueError(f"{name}[{s!r}][{lang!r}] must be a non-empty 1-D array, got shape {row.shape}")
            if not np.isfinite(row).all():
                raise ValueError(f"{name}[{s!r}][{lang!r}] has {int((~np.isfinite(row)).sum())} non-finite values")
        lengths = {s: len(row) for s, row in zip(seeds, rows)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{name}: language {lang!r} has different numbers of queries across seeds: {lengths}")
        values[lang] = np.stack(rows)  # (S, Q)
    return _Table(seeds, langs, values)


def _paired(a: _Table, b: _Table, sign: float, names: tuple[str, str]) -> _Table:
    """``a + sign * b`` per seed, language and query: seeds pair by value, a single-seed table
    is broadcast against every seed of the other."""
    if a.langs != b.langs:
        raise ValueError(f"{names[0]} and {names[1]} must have the same languages, got "
                         f"{list(a.langs)} and {list(b.langs)}")
    if len(a.seeds) > 1 and len(b.seeds) > 1 and a.seeds != b.seeds:
        raise ValueError(f"{names[0]} and {names[1]} must have the same seeds (or one a single seed), got "
                         f"{list(a.seeds)} and {list(b.seeds)}")
    seeds = a.seeds if len(a.seeds) >= len(b.seeds) else b.seeds
    values = {}
    for lang in a.langs:
        va, vb = a.values[lang], b.values[lang]  # (S_a, Q), (S_b, Q); S = 1 broadcasts
        if va.shape[1] != vb.shape[1]:
            raise ValueError(f"language {lang!r} has {va.shape[1]} queries in {names[0]} and "
                             f"{vb.shape[1]} in {names[1]}: the same queries must be scored by every arm")
        values[lang] = va + sign * vb  # (S, Q)
    return _Table(seeds, a.langs, values)


def percent(arm: Arm) -> dict[int, dict[str, np.ndarray]]:
    """The arm with every value multiplied by 100 (0/1 recall -> R@1 points, the margin's unit)."""
    return {s: {lang: 100.0 * np.asarray(v, dtype=np.float64) for lang, v in per.items()} for s, per in arm.items()}


# ----------------------------------------------------------------------------- bootstrap core
def _check_args(n: int, interval: float) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (bootstrap replicates) must be a positive integer, got {n!r}")
    if not 0.0 < interval < 1.0:
        raise ValueError(f"interval must be in (0, 1), got {interval!r}")


def _check_test_args(margin: float, alpha: float) -> None:
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin!r}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")


def _resample_weights(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """(n, k) weights: row b counts how often each of k items is drawn in k draws with
    replacement, divided by k (rows sum to 1)."""
    w = np.empty((n, k))
    block = max(1, 50_000 // k)  # block x k counts at a time: bincount stays in cache (2x faster)
    for start in range(0, n, block):
        m = min(block, n - start)
        idx = rng.integers(0, k, size=(m, k))  # (m, k) draws
        idx += k * np.arange(m)[:, None]  # row r counts into bins [r k, (r + 1) k)
        w[start:start + m] = np.bincount(idx.ravel(), minlength=m * k).reshape(m, k)
    return w / k


def _replicates(terms: Sequence[tuple[float, _Table]], n: int, seed: int,
                clusters: Mapping[str, str] | None = None) -> np.ndarray:
    """(n,) bootstrap replicates of ``sum(sign * point(table))`` over ``terms``.

    Tables with several seeds must share them (one seed draw for all); a single-seed table
    needs none. Tables with the same language set share one language draw; different sets are
    drawn independently. Every language name has one query draw, shared by all tables.

    clusters: language unit -> cluster (e.g. ``"n5:yor_Latn" -> "yor_Latn"``); None: every unit
    is its own cluster. The language draw then resamples clusters: the units of a drawn cluster
    come in together, each weighing ``w_cluster * C / L`` (C clusters, L units; the observed
    draw gives every unit 1 / L), and the units of one cluster share one query draw (they must
    have the same queries). With None the draws are exactly those of the unclustered bootstrap.
    """
    clusters = dict(clusters or {})
    multi = {t.seeds for _, t in terms if len(t.seeds) > 1}
    if len(multi) > 1:
        raise ValueError(f"the terms must have the same seeds (or a single seed), got {sorted(multi)}")
    rng = np.random.default_rng(seed)
    seed_w = _resample_weights(rng, n, len(multi.pop())) if multi else None  # (n, S)
    unit = {lang: clusters.get(lang, lang) for _, t in terms for lang in t.langs}  # language -> its cluster
    lang_w: dict[tuple[str, ...], np.ndarray] = {}
    for _, t in terms:
        if t.langs not in lang_w:
            names = sorted({unit[lang] for lang in t.langs})
            w = _resample_weights(rng, n, len(names))  # (n, C): a draw of clusters
            col = [names.index(unit[lang]) for lang in t.langs]
            lang_w[t.langs] = w[:, col] * (len(names) / len(t.langs))  # (n, L): each unit its cluster's weight
    n_queries: dict[str, int] = {}
    for _, t in terms:
        for lang in t.langs:
            q = t.values[lang].shape[1]
            if n_queries.setdefault(unit[lang], q) != q:
                raise ValueError(f"language {lang!r} has {n_queries[unit[lang]]} and {q} queries in different terms "
                                 f"or units of its cluster {unit[lang]!r}: the same queries must be scored in every term")
    query_w = {c: _resample_weights(rng, n, n_queries[c]) for c in sorted(n_queries)}  # (n, Q) per cluster
    out = np.zeros(n)
    for sign, t in terms:
        # M[b, s, l]: mean of seed s on language l under query draw b
        M = np.stack([query_w[unit[lang]] @ t.values[lang].T for lang in t.langs], axis=2)  # (n, S_t, L)
        if len(t.seeds) > 1:
            out += sign * np.einsum("bs,bsl,bl->b", seed_w, M, lang_w[t.langs])
        else:
            out += sign * np.einsum("bl,bl->b", M[:, 0, :], lang_w[t.langs])
    return out


def _interval(samples: np.ndarray, interval: float) -> tuple[float, float]:
    tail = (1.0 - interval) / 2
    lo, hi = np.quantile(samples, [tail, 1.0 - tail])
    return float(lo), float(hi)


def _contrast(estimate: float, samples: np.ndarray, interval: float, margin: float, alpha: float) -> Contrast:
    lo, hi = _interval(samples, interval)
    p = min(1.0, 2.0 * min(float(np.mean(samples <= 0)), float(np.mean(samples >= 0))))
    eq = tost(samples, margin=margin, alpha=alpha)
    return Contrast(estimate, lo, hi, p, eq.lo, eq.hi, eq.equivalent, margin, samples)


# ----------------------------------------------------------------------------- public API
def hierarchical_bootstrap(
    arm: Arm, n: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED, interval: float = INTERVAL
) -> Estimate:
    """Point estimate of one arm and its hierarchical percentile bootstrap interval.

    arm: ``arm[seed][lang]`` is (Q_lang,) per-query values, the same length for every seed.
    n: replicates; seed: of ``numpy.random.default_rng``; interval: coverage of ``[lo, hi]``.
    Each replicate resamples seeds, then languages, then queries (see the module docstring).
    Raises ValueError for an empty arm, languages differing across seeds, a non-1-D or
    non-finite array, or a language whose length differs across seeds.
    """
    _check_args(n, interval)
    t = _table(arm)
    samples = _replicates([(1.0, t)], n, seed)
    lo, hi = _interval(samples, interval)
    return Estimate(t.point(), lo, hi, samples)


def paired_difference(
    a: Arm,
    b: Arm,
    n: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    interval: float = INTERVAL,
    margin: float = MARGIN,
    alpha: float = ALPHA,
    clusters: Mapping[str, str] | None = None,
) -> Contrast:
    """The paired difference ``estimate(a) - estimate(b)`` with interval, p-value and TOST.

    a, b: arms on the same languages, ``a[s][lang]`` and ``b[s][lang]`` of the same length
    (the same queries in the same order). Seeds pair by value: both arms have the same seeds,
    or one has a single seed (zero-shot), whose values are used against every seed of the other.
    Both arms see the same seed, language and query draws. ``margin`` is in the values' unit
    (percent points for the protocol's 1.0). With the same seeds in both arms,
    ``samples == hierarchical_bootstrap(a).samples - hierarchical_bootstrap(b).samples``.
    clusters: language unit -> cluster, for units that are not independent: pooled over
    sizes, ``"n5:yor_Latn"`` and ``"n50:yor_Latn"`` are one language and are resampled together
    (``{"n5:yor_Latn": "yor_Latn", ...}``); None: every unit is drawn on its own.
    """
    _check_args(n, interval)
    _check_test_args(margin, alpha)
    d = _paired(_table(a, "a"), _table(b, "b"), -1.0, ("a", "b"))
    return _contrast(d.point(), _replicates([(1.0, d)], n, seed, clusters), interval, margin, alpha)


def difference_in_differences(
    a_big: Arm,
    b_big: Arm,
    a_ref: Arm,
    b_ref: Arm,
    n: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    interval: float = INTERVAL,
    margin: float = MARGIN,
    alpha: float = ALPHA,
) -> Contrast:
    """``(a_big - b_big) - (a_ref - b_ref)``, e.g. (OT - contrastive at size 50) - (the same at size 5).

    Each difference is paired as in :func:`paired_difference` (a_big and b_big on the same
    languages and queries; a_ref and b_ref likewise). Across the two sizes:

    - seeds pair by value: one seed draw for both sizes (both differences have the same seeds,
      or one of them a single seed);
    - same language set (the shared_5 and unseen groups): one language draw and one query draw
      per language for both sizes, so what the sizes have in common cancels;
    - different language sets (the trained group: 50 vs 5 languages): each size's languages are
      drawn independently; a language present at both sizes still has one query draw (it must
      then have the same queries at both sizes).
    """
    _check_args(n, interval)
    _check_test_args(margin, alpha)
    big = _paired(_table(a_big, "a_big"), _table(b_big, "b_big"), -1.0, ("a_big", "b_big"))
    ref = _paired(_table(a_ref, "a_ref"), _table(b_ref, "b_ref"), -1.0, ("a_ref", "b_ref"))
    if len(big.seeds) > 1 and len(ref.seeds) > 1 and big.seeds != ref.seeds:
        raise ValueError(f"the two sizes must have the same seeds (or one a single seed), got "
                         f"{list(big.seeds)} and {list(ref.seeds)}")
    samples = _replicates([(1.0, big), (-1.0, ref)], n, seed)
    return _contrast(big.point() - ref.point(), samples, interval, margin, alpha)


def tost(samples: np.ndarray | Contrast, margin: float = MARGIN, alpha: float = ALPHA) -> Equivalence:
    """Two one-sided tests of equivalence at ``margin`` on bootstrap replicates of a difference.

    samples: (n,) replicates (or a :class:`Contrast`, whose ``samples`` are used), in the
    margin's unit. Equivalent when the ``1 - 2 alpha`` percentile interval (90% at alpha 0.05)
    lies within ``[-margin, +margin]``.
    """
    if isinstance(samples, Contrast):
        samples = samples.samples
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 1 or samples.size == 0 or not np.isfinite(samples).all():
        raise ValueError(f"samples must be a non-empty finite 1-D array, got shape {samples.shape}")
    _check_test_args(margin, alpha)
    lo, hi = _interval(samples, 1.0 - 2.0 * alpha)
    return Equivalence(lo, hi, float(margin), float(alpha), bool(-margin <= lo and hi <= margin))


def holm(p_values: Mapping[str, float] | Sequence[float], alpha: float = ALPHA) -> Holm:
    """Holm-Bonferroni adjusted p-values of one family, in input order.

    With the m p-values sorted ascending, ``p_adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``;
    ``reject = p_adj <= alpha`` is Holm's step-down procedure at level alpha.
    Raises ValueError for a p-value outside [0, 1] or NaN.
    """
    names = tuple(p_values) if isinstance(p_values, Mapping) else None
    p = np.asarray(list(p_values.values()) if names is not None else list(p_values), dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be one family (1-D), got shape {p.shape}")
    bad = ~((p >= 0) & (p <= 1))
    if bad.any():
        raise ValueError(f"p-values must lie in [0, 1], got {p[bad].tolist()}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))  # (m,) sorted order
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return Holm(names, adjusted, adjusted <= alpha, float(alpha))


def family_table(contrasts: Mapping[tuple[str, str], Contrast], alpha: float = ALPHA):
    """One Holm family as a DataFrame, a row per contrast in input order.

    contrasts: ``(a, b) -> Contrast`` (any two labels: a difference in differences joins a
    family as e.g. ``("ot_best - contrastive_best @50", "@5")``). Columns: a, b, estimate, lo,
    hi, p_value, p_holm, reject, tost_lo, tost_hi, equivalent.
    """
    import pandas as pd

    adj = holm([c.p_value for c in contrasts.values()], alpha=alpha)
    rows = [
        {"a": a, "b": b, "estimate": c.estimate, "lo": c.lo, "hi": c.hi, "p_value": c.p_value,
         "p_holm": float(adj.p_adjusted[i]), "reject": bool(adj.reject[i]),
         "tost_lo": c.tost_lo, "tost_hi": c.tost_hi, "equivalent": c.equivalent}
        for i, ((a, b), c) in enumerate(contrasts.items())
    ]
    columns = ["a", "b", "estimate", "lo", "hi", "p_value", "p_holm", "reject", "tost_lo", "tost_hi", "equivalent"]
    return pd.DataFrame(rows, columns=columns)


def contrast_table(
    arms: Mapping[str, Arm],
    contrasts: Sequence[tuple[str, str]],
    n: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    interval: float = INTERVAL,
    margin: float = MARGIN,
    alpha: float = ALPHA,
):
    """:func:`paired_difference` of every ``(a, b)`` in ``contrasts`` (arm names), Holm-adjusted
    as one family: the DataFrame of :func:`family_table`. Every contrast uses the same ``seed``.
    Raises ValueError naming an arm that is not in ``arms`` or a repeated contrast.
    """
    pairs = [tuple(pair) for pair in contrasts]
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"a contrast is a pair (a, b) of arm names, got {pair!r}")
        missing = [x for x in pair if x not in arms]
        if missing:
            raise ValueError(f"contrast {pair!r} names arms {missing} not in {sorted(arms)}")
    if len(set(pairs)) != len(pairs):
        raise ValueError(f"contrasts repeat a pair: {pairs}")
    results = {
        (a, b): paired_difference(arms[a], arms[b], n=n, seed=seed, interval=interval, margin=margin, alpha=alpha)
        for a, b in pairs
    }
    return family_table(results, alpha=alpha)
