"""The protocol's statistics (optical_viz.experiments.statistics): the hierarchical bootstrap
against a naive loop and against known truth, paired contrasts, TOST, Holm, difference in
differences and input validation."""
from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest

from optical_viz import protocol as P
from optical_viz.experiments import statistics as S

EXACT = 1e-9  # float summation error of a statistic that is constant over replicates
SD_RTOL = 0.10  # two bootstrap SDs from 3000 replicates each agree to ~2%: 10% is a safe bound


def make_arm(rng, seeds=(0, 1, 2), lengths=(40, 25, 60), mu=50.0, sd_seed=2.0, sd_lang=5.0,
             sd_query=10.0, sd_noise=3.0) -> dict:
    """An arm from a crossed model: value = mu + seed + language + query (shared by seeds) + noise."""
    seed_eff = rng.normal(0, sd_seed, len(seeds))
    arm = {s: {} for s in seeds}
    for i, q in enumerate(lengths):
        lang_eff = rng.normal(0, sd_lang)
        query_eff = rng.normal(0, sd_query, q)
        for j, s in enumerate(seeds):
            arm[s][f"l{i}"] = mu + seed_eff[j] + lang_eff + query_eff + rng.normal(0, sd_noise, q)
    return arm


def naive_bootstrap(arm: dict, n: int, seed: int) -> np.ndarray:
    """One replicate at a time, by the definition: seeds, then languages, then one query draw
    per language shared by every seed."""
    rng = np.random.default_rng(seed)
    seeds = sorted(arm)
    langs = sorted(arm[seeds[0]])
    out = np.empty(n)
    for b in range(n):
        ss = rng.choice(seeds, size=len(seeds))
        ll = rng.choice(len(langs), size=len(langs))
        qs = {k: rng.integers(0, len(arm[seeds[0]][langs[k]]), len(arm[seeds[0]][langs[k]])) for k in set(ll)}
        out[b] = np.mean([np.mean([arm[s][langs[k]][qs[k]].mean() for k in ll]) for s in ss])
    return out


def diff_arm(a: dict, b: dict) -> dict:
    """a - b per seed (b's single seed broadcast)."""
    return {s: {lang: a[s][lang] - b[s if len(b) > 1 else next(iter(b))][lang] for lang in a[s]} for s in a}


# ----------------------------------------------------------------------------- defaults, doctest
def test_defaults_are_the_protocols():
    st = P.load_protocol().statistics
    assert S.N_BOOTSTRAP == st.bootstrap.n
    assert S.BOOTSTRAP_SEED == st.bootstrap.seed
    assert S.INTERVAL == st.interval
    assert S.ALPHA == st.alpha
    assert S.MARGIN == st.equivalence.margin


def test_module_docstring_example():
    result = doctest.testmod(S, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------- one arm
def test_point_estimate_weighs_languages_then_seeds_equally():
    rng = np.random.default_rng(1)
    arm = make_arm(rng, lengths=(5, 50, 500))
    by_hand = np.mean([np.mean([arm[s][lang].mean() for lang in arm[s]]) for s in arm])
    pooled = np.mean([np.concatenate(list(arm[s].values())).mean() for s in arm])
    est = S.hierarchical_bootstrap(arm, n=50)
    assert est.estimate == pytest.approx(by_hand, abs=EXACT)
    assert abs(by_hand - pooled) > 0.1  # the test data tells equal-language from pooled weighting


def test_bootstrap_distribution_matches_naive_loop():
    """Each level carries enough variance that skipping its resampling shrinks the SD by > 15%."""
    rng = np.random.default_rng(2)
    arm = make_arm(rng, lengths=(10, 15, 20, 8), sd_seed=12.0, sd_lang=3.0, sd_query=15.0)
    fast = S.hierarchical_bootstrap(arm, n=3000, seed=0).samples
    slow = naive_bootstrap(arm, n=3000, seed=1)
    assert fast.shape == (3000,)
    assert fast.std() == pytest.approx(slow.std(), rel=SD_RTOL)
    assert fast.mean() == pytest.approx(slow.mean(), abs=0.1 * slow.std())


def test_every_level_is_resampled():
    """Variance put at one level only (seed, language or query) reaches the interval."""
    rng = np.random.default_rng(3)
    for level in ("seed", "lang", "query"):
        sds = {"sd_seed": 0.0, "sd_lang": 0.0, "sd_query": 0.0, "sd_noise": 0.0}
        sds[f"sd_{level}"] = 5.0
        est = S.hierarchical_bootstrap(make_arm(rng, **sds), n=500)
        assert est.hi - est.lo > 1.0, level


def test_query_draws_are_shared_by_seeds():
    """Query effects only, identical across seeds: one query draw for all seeds keeps their full
    variance (independent draws per seed would average it down by sqrt(3))."""
    rng = np.random.default_rng(21)
    arm = make_arm(rng, sd_seed=0.0, sd_lang=0.0, sd_query=10.0, sd_noise=0.0)
    fast = S.hierarchical_bootstrap(arm, n=2000, seed=0).samples
    slow = naive_bootstrap(arm, n=2000, seed=1)
    assert fast.std() == pytest.approx(slow.std(), rel=SD_RTOL)


def test_interval_covers_truth_on_known_hierarchical_model():
    rng = np.random.default_rng(4)
    mu, hits, n_datasets = 50.0, 0, 200
    for _ in range(n_datasets):
        arm = make_arm(rng, lengths=(40,) * 10, mu=mu, sd_seed=1.0, sd_lang=5.0, sd_query=10.0, sd_noise=5.0)
        est = S.hierarchical_bootstrap(arm, n=300, seed=int(rng.integers(1 << 31)))
        hits += est.lo <= mu <= est.hi
    assert 0.85 <= hits / n_datasets <= 1.0


def test_constant_arm_has_zero_width_interval():
    arm = {s: {"a": np.full(30, 42.0), "b": np.full(7, 42.0)} for s in (0, 1, 2)}
    est = S.hierarchical_bootstrap(arm, n=200)
    assert est.estimate == 42.0
    assert est.lo == pytest.approx(42.0, abs=EXACT) and est.hi == pytest.approx(42.0, abs=EXACT)


def test_single_seed_arm():
    rng = np.random.default_rng(5)
    arm = make_arm(rng, seeds=(0,))
    est = S.hierarchical_bootstrap(arm, n=300)
    assert est.lo < est.estimate < est.hi


# ----------------------------------------------------------------------------- paired contrasts
def test_identical_arms():
    arm = make_arm(np.random.default_rng(6))
    c = S.paired_difference(arm, arm, n=300)
    assert c.estimate == 0.0 and c.lo == 0.0 and c.hi == 0.0
    assert c.p_value == 1.0
    assert c.equivalent and c.tost_lo == 0.0 and c.tost_hi == 0.0


def test_paired_samples_are_differences_of_arm_samples():
    rng = np.random.default_rng(7)
    a, b = make_arm(rng), make_arm(rng)
    c = S.paired_difference(a, b, n=400, seed=11)
    ea, eb = S.hierarchical_bootstrap(a, n=400, seed=11), S.hierarchical_bootstrap(b, n=400, seed=11)
    np.testing.assert_allclose(c.samples, ea.samples - eb.samples, atol=EXACT)
    assert c.estimate == pytest.approx(ea.estimate - eb.estimate, abs=EXACT)


def test_single_seed_arm_is_used_against_every_seed():
    rng = np.random.default_rng(8)
    a, zero_shot = make_arm(rng, seeds=(0, 1, 2)), make_arm(rng, seeds=(7,))
    c = S.paired_difference(a, zero_shot, n=300, seed=3)
    ref = S.hierarchical_bootstrap(diff_arm(a, zero_shot), n=300, seed=3)
    np.testing.assert_allclose(c.samples, ref.samples, atol=EXACT)
    assert c.estimate == pytest.approx(S.hierarchical_bootstrap(a, n=1).estimate
                                       - S.hierarchical_bootstrap(zero_shot, n=1).estimate, abs=EXACT)
    reverse = S.paired_difference(zero_shot, a, n=300, seed=3)
    np.testing.assert_allclose(reverse.samples, -c.samples, atol=EXACT)


def test_paired_interval_is_narrower_than_unpaired():
    rng = np.random.default_rng(9)
    a = make_arm(rng, sd_seed=0.5, sd_lang=8.0, sd_query=15.0, sd_noise=1.0)
    b = {s: {lang: v + 0.5 + rng.normal(0, 1.0, len(v)) for lang, v in per.items()} for s, per in a.items()}
    paired = S.paired_difference(a, b, n=1000)
    unpaired = (S.hierarchical_bootstrap(a, n=1000, seed=1).samples
                - S.hierarchical_bootstrap(b, n=1000, seed=2).samples)
    lo, hi = np.quantile(unpaired, [0.025, 0.975])
    assert paired.hi - paired.lo < 0.25 * (hi - lo)
    assert paired.estimate == pytest.approx(-0.5, abs=0.2)  # the noise averages out over 1 125 values


def test_clear_difference_is_significant_and_not_equivalent():
    rng = np.random.default_rng(10)
    a = {s: {f"l{i}": 100.0 * (rng.random(300) < 0.7) for i in range(5)} for s in (0, 1, 2)}
    b = {s: {f"l{i}": 100.0 * (rng.random(300) < 0.5) for i in range(5)} for s in (0, 1, 2)}
    c = S.paired_difference(a, b, n=1000)
    assert c.p_value < 0.01
    assert 10.0 < c.lo < c.estimate < c.hi < 30.0  # truth 20 points
    assert not c.equivalent and c.tost_lo > 1.0


def test_tiny_noise_is_equivalent_at_one_point():
    rng = np.random.default_rng(11)
    a = S.percent({s: {f"l{i}": (rng.random(300) < 0.6).astype(float) for i in range(5)} for s in (0, 1, 2)})
    b = {s: {lang: v + rng.normal(0, 0.05, len(v)) for lang, v in per.items()} for s, per in a.items()}
    c = S.paired_difference(a, b, n=1000)
    assert c.equivalent
    assert -1.0 <= c.tost_lo <= c.tost_hi <= 1.0
    assert c.lo <= c.tost_lo and c.tost_hi <= c.hi  # the 90% interval inside the 95% one
    assert not S.tost(c, margin=0.001).equivalent


def test_tost_on_known_samples():
    samples = np.linspace(-0.5, 0.5, 1001)  # the 90% percentile interval is [-0.45, 0.45]
    eq = S.tost(samples, margin=1.0)
    assert eq.lo == pytest.approx(-0.45) and eq.hi == pytest.approx(0.45)
    assert eq.equivalent
    assert not S.tost(samples, margin=0.4).equivalent
    assert not S.tost(samples + 0.6, margin=1.0).equivalent  # interval [0.15, 1.05]
    assert S.tost(samples, margin=1.0, alpha=0.25).hi == pytest.approx(0.25)


def test_p_value_counts_both_tails():
    rng = np.random.default_rng(12)
    a = make_arm(rng, sd_noise=20.0)
    b = {s: {lang: v - 1.0 for lang, v in per.items()} for s, per in a.items()}
    b = {s: {lang: v + rng.normal(0, 20.0, len(v)) for lang, v in per.items()} for s, per in b.items()}
    c = S.paired_difference(a, b, n=2000)
    expected = min(1.0, 2 * min(np.mean(c.samples <= 0), np.mean(c.samples >= 0)))
    assert c.p_value == expected
    assert 0.0 < c.p_value < 1.0


# ----------------------------------------------------------------------------- difference in differences
def test_did_on_shared_languages_cancels_what_the_sizes_share():
    """diff(big) = diff(ref) + 3 for every seed, language and query: the shared draws give 3 exactly."""
    rng = np.random.default_rng(13)
    b_ref, b_big = make_arm(rng, seeds=(0, 1)), make_arm(rng, seeds=(0, 1))
    d = make_arm(rng, seeds=(0, 1))  # heterogeneous across seeds, languages and queries
    a_ref = {s: {lang: b_ref[s][lang] + d[s][lang] for lang in d[s]} for s in d}
    a_big = {s: {lang: b_big[s][lang] + d[s][lang] + 3.0 for lang in d[s]} for s in d}
    c = S.difference_in_differences(a_big, b_big, a_ref, b_ref, n=300)
    assert c.estimate == pytest.approx(3.0, abs=EXACT)
    assert c.lo == pytest.approx(3.0, abs=EXACT) and c.hi == pytest.approx(3.0, abs=EXACT)
    assert c.p_value == 0.0
    # the same arms at the other size on fresh languages: nothing cancels any more
    def rename(arm):
        return {s: {"x" + lang: v for lang, v in per.items()} for s, per in arm.items()}
    c2 = S.difference_in_differences(a_big, b_big, rename(a_ref), rename(b_ref), n=300)
    assert c2.estimate == pytest.approx(3.0, abs=EXACT)
    assert c2.hi - c2.lo > 1.0


def test_did_on_different_languages_shares_the_seed_draws():
    """diff = seed effect (+3 at the big size), constant over languages and queries: the one
    seed draw makes the DiD exactly 3 although the language sets differ."""
    rng = np.random.default_rng(14)
    seed_eff = {0: 4.0, 1: -6.0}
    def arms(langs, shift):
        b = {s: {lang: rng.normal(50, 10, 30) for lang in langs} for s in seed_eff}
        a = {s: {lang: b[s][lang] + seed_eff[s] + shift for lang in langs} for s in seed_eff}
        return a, b
    a_big, b_big = arms([f"l{i}" for i in range(8)], 3.0)
    a_ref, b_ref = arms(["l0", "l1", "l2"], 0.0)
    c = S.difference_in_differences(a_big, b_big, a_ref, b_ref, n=300)
    assert c.lo == pytest.approx(3.0, abs=EXACT) and c.hi == pytest.approx(3.0, abs=EXACT)


def test_did_equals_paired_difference_of_differences():
    rng = np.random.default_rng(15)
    a_big, b_big, a_ref, b_ref = (make_arm(rng, seeds=(0, 1)) for _ in range(4))
    c = S.difference_in_differences(a_big, b_big, a_ref, b_ref, n=300, seed=5)
    ref = S.paired_difference(diff_arm(a_big, b_big), diff_arm(a_ref, b_ref), n=300, seed=5)
    np.testing.assert_allclose(c.samples, ref.samples, atol=EXACT)
    by_hand = np.mean([np.mean([(a_big[s][g] - b_big[s][g] - a_ref[s][g] + b_ref[s][g]).mean()
                                for g in a_big[s]]) for s in a_big])
    assert c.estimate == pytest.approx(by_hand, abs=EXACT)


def test_did_different_languages_estimate_and_width():
    rng = np.random.default_rng(16)
    a_big, b_big = (make_arm(rng, seeds=(0, 1), lengths=(30,) * 6) for _ in range(2))
    a_ref, b_ref = (make_arm(rng, seeds=(0, 1), lengths=(30,) * 2) for _ in range(2))
    c = S.difference_in_differences(a_big, b_big, a_ref, b_ref, n=500)
    by_hand = (S.paired_difference(a_big, b_big, n=1).estimate - S.paired_difference(a_ref, b_ref, n=1).estimate)
    assert c.estimate == pytest.approx(by_hand, abs=EXACT)
    assert c.lo < c.estimate < c.hi


# ----------------------------------------------------------------------------- Holm
def holm_step_down(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm (1979) by its definition: reject p_(i) while p_(i) <= alpha / (m - i + 1)."""
    reject = np.zeros(len(p), dtype=bool)
    for i, k in enumerate(np.argsort(p)):
        if p[k] > alpha / (len(p) - i):
            break
        reject[k] = True
    return reject


def test_holm_hand_computed():
    h = S.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    # sorted 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 -> max(0.04, 0.06)
    np.testing.assert_allclose(h.p_adjusted, [0.03, 0.06, 0.06, 0.02])
    assert h.names == ("a", "b", "c", "d")
    assert h.reject.tolist() == [True, False, False, True]
    assert S.holm([0.6, 0.9]).p_adjusted.tolist() == [1.0, 1.0]  # capped


def test_holm_matches_step_down_definition():
    rng = np.random.default_rng(17)
    for m, alpha in itertools.product((1, 2, 5, 11), (0.01, 0.05, 0.2)):
        for _ in range(50):
            p = np.where(rng.random(m) < 0.5, rng.random(m) * 0.05, rng.random(m))
            h = S.holm(p, alpha=alpha)
            assert (h.reject == holm_step_down(p, alpha)).all()
            assert (h.p_adjusted >= p).all() and (h.p_adjusted <= 1).all()
            order = np.argsort(p)
            assert (np.diff(h.p_adjusted[order]) >= 0).all()  # monotone in the raw p-values


def test_holm_matches_statsmodels():
    from statsmodels.stats import multitest  # a dev dependency: the reference implementation
    rng = np.random.default_rng(18)
    p = rng.random(9) * 0.1
    reject, p_adj, _, _ = multitest.multipletests(p, alpha=0.05, method="holm")
    h = S.holm(p)
    np.testing.assert_allclose(h.p_adjusted, p_adj)
    assert (h.reject == reject).all()


# ----------------------------------------------------------------------------- family tables
def test_contrast_table_is_one_holm_family():
    rng = np.random.default_rng(19)
    base = make_arm(rng)
    arms = {
        "ot": {s: {lang: v + 4.0 for lang, v in per.items()} for s, per in base.items()},
        "contrastive": base,
        "zero-shot": make_arm(rng, seeds=(0,)),
    }
    pairs = [("ot", "contrastive"), ("ot", "zero-shot"), ("contrastive", "zero-shot")]
    df = S.contrast_table(arms, pairs, n=300)
    assert list(df.columns) == ["a", "b", "estimate", "lo", "hi", "p_value", "p_holm", "reject",
                                "tost_lo", "tost_hi", "equivalent"]
    assert list(zip(df.a, df.b)) == pairs
    np.testing.assert_allclose(df.p_holm, S.holm(df.p_value.to_numpy()).p_adjusted)
    assert (df.reject == (df.p_holm <= 0.05)).all()
    first = S.paired_difference(arms["ot"], arms["contrastive"], n=300)
    assert df.estimate[0] == pytest.approx(4.0) and df.lo[0] == pytest.approx(4.0, abs=EXACT)
    assert (df.lo[0], df.hi[0], df.p_value[0]) == (first.lo, first.hi, first.p_value)


def test_family_table_accepts_a_did():
    rng = np.random.default_rng(20)
    a, b = make_arm(rng), make_arm(rng)
    fam = {("a", "b"): S.paired_difference(a, b, n=200),
           ("a - b @big", "@ref"): S.difference_in_differences(a, b, b, a, n=200)}
    df = S.family_table(fam)
    assert len(df) == 2 and df.a[1] == "a - b @big"
    assert df.estimate[1] == pytest.approx(2 * df.estimate[0], abs=EXACT)


# ----------------------------------------------------------------------------- validation
def arm_ok():
    return {0: {"x": np.ones(3), "y": np.zeros(4)}, 1: {"x": np.ones(3), "y": np.zeros(4)}}


@pytest.mark.parametrize(
    "arm, match",
    [
        ({}, "non-empty dict"),
        ({0: {}}, r"arm\[0\] must be a non-empty dict"),
        ({0: {"x": np.ones(3)}, 1: {"y": np.ones(3)}}, r"seed 1 has languages \['y'\]"),
        ({0: {"x": np.ones(3)}, 1: {"x": np.ones(4)}}, r"'x' has different numbers of queries across seeds: \{0: 3, 1: 4\}"),
        ({0: {"x": np.ones((2, 3))}}, r"arm\[0\]\['x'\] must be a non-empty 1-D array, got shape \(2, 3\)"),
        ({0: {"x": np.array([])}}, r"got shape \(0,\)"),
        ({0: {"x": np.array([1.0, np.nan])}}, "1 non-finite"),
    ],
)
def test_bad_arms_are_rejected(arm, match):
    with pytest.raises(ValueError, match=match):
        S.hierarchical_bootstrap(arm, n=10)


def test_bad_pairs_are_rejected():
    a = arm_ok()
    with pytest.raises(ValueError, match=r"same languages, got \['x', 'y'\] and \['x'\]"):
        S.paired_difference(a, {0: {"x": np.ones(3)}}, n=10)
    with pytest.raises(ValueError, match=r"language 'y' has 4 queries in a and 5 in b"):
        S.paired_difference(a, {0: {"x": np.ones(3), "y": np.ones(5)}}, n=10)
    with pytest.raises(ValueError, match=r"same seeds .* got \[0, 1\] and \[1, 2\]"):
        S.paired_difference(a, {s: a[0] for s in (1, 2)}, n=10)
    with pytest.raises(ValueError, match=r"two sizes must have the same seeds"):
        S.difference_in_differences(a, a, {s: a[0] for s in (1, 2)}, {s: a[0] for s in (1, 2)}, n=10)
    with pytest.raises(ValueError, match=r"language 'x' has 3 and 5 queries"):
        other = {0: {"x": np.ones(5), "z": np.ones(2)}}
        S.difference_in_differences(a, a, other, other, n=10)


def test_bad_arguments_are_rejected():
    a = arm_ok()
    with pytest.raises(ValueError, match="n .* positive integer, got 0"):
        S.hierarchical_bootstrap(a, n=0)
    with pytest.raises(ValueError, match="interval must be in"):
        S.hierarchical_bootstrap(a, n=10, interval=95)
    with pytest.raises(ValueError, match="margin must be positive, got -1"):
        S.paired_difference(a, a, n=10, margin=-1)
    with pytest.raises(ValueError, match="alpha must be in"):
        S.tost(np.zeros(5), alpha=0.5)
    with pytest.raises(ValueError, match=r"p-values must lie in \[0, 1\], got \[1.5\]"):
        S.holm([0.1, 1.5])
    with pytest.raises(ValueError, match="non-empty finite 1-D"):
        S.tost(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match=r"names arms \['mse'\] not in \['ot'\]"):
        S.contrast_table({"ot": a}, [("ot", "mse")], n=10)
    with pytest.raises(ValueError, match="repeat a pair"):
        S.contrast_table({"ot": a, "mse": a}, [("ot", "mse"), ("ot", "mse")], n=10)


# ----------------------------------------------------------------------------- language clusters
def _pooled_over_sizes(rng, n_langs=6, repeats=(1, 2, 2, 2, 3, 3), q=30) -> tuple[dict, dict]:
    """A single-seed difference arm pooled over sizes: language l recurs as units
    "n<k>:l<i>" with one language effect (large) and query-level noise (small)."""
    arm, clusters = {0: {}}, {}
    for i in range(n_langs):
        effect = rng.normal(0, 5.0)
        for k in range(repeats[i]):
            arm[0][f"n{k}:l{i}"] = effect + rng.normal(0, 0.5, q)
            clusters[f"n{k}:l{i}"] = f"l{i}"
    return arm, clusters


def test_clusters_none_and_identity_give_the_old_draws():
    rng = np.random.default_rng(11)
    a, b = make_arm(rng), make_arm(rng)
    old = S.paired_difference(a, b, n=500, seed=3)
    same = S.paired_difference(a, b, n=500, seed=3, clusters={lang: lang for lang in a[0]})
    np.testing.assert_array_equal(old.samples, same.samples)
    assert old.estimate == same.estimate


def test_recurring_languages_are_resampled_as_one_cluster():
    """Issue 26: pooled over sizes, a language present at several sizes is one unit. The
    clustered replicates match a naive cluster bootstrap; treating the units as independent
    gives a narrower (anti-conservative) interval."""
    rng = np.random.default_rng(12)
    arm, clusters = _pooled_over_sizes(rng)
    zero = {0: {u: np.zeros_like(v) for u, v in arm[0].items()}}
    clustered = S.paired_difference(arm, zero, n=4000, seed=0, clusters=clusters)
    independent = S.paired_difference(arm, zero, n=4000, seed=0)
    assert clustered.estimate == pytest.approx(independent.estimate, abs=EXACT)

    units = sorted(arm[0])
    names = sorted(set(clusters.values()))
    sums = {c: sum(arm[0][u].mean() for u in units if clusters[u] == c) for c in names}
    naive_rng = np.random.default_rng(1)
    naive = np.array([sum(sums[names[k]] for k in naive_rng.integers(0, len(names), len(names))) / len(units)
                      for _ in range(4000)])  # queries carry little variance here: cluster draw only
    assert clustered.samples.std() == pytest.approx(naive.std(), rel=SD_RTOL)
    assert clustered.samples.std() > 1.2 * independent.samples.std()


def test_units_of_a_cluster_need_the_same_queries():
    arm = {0: {"n5:l0": np.ones(10), "n50:l0": np.ones(12), "n5:l1": np.ones(10)}}
    zero = {0: {u: np.zeros_like(v) for u, v in arm[0].items()}}
    with pytest.raises(ValueError, match="units of its cluster 'l0'"):
        S.paired_difference(arm, zero, n=10, clusters={"n5:l0": "l0", "n50:l0": "l0", "n5:l1": "l1"})
