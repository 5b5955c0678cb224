"""optical_viz.experiments.optical_report on synthetic result files (no model): the RQ3 summary,
the Holm family of contrasts and the scaling table against numbers computed here by hand from
the per-query outcomes written."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from optical_viz.experiments.optical_report import (
    P1,
    P2,
    contrast_table,
    load_arms,
    scaling_table,
    summary_table,
    write_optical_reports,
)

Q = 40  # queries per language
SEEDS = (0, 1)
XQUAD_R = ["deu_Latn", "spa_Latn"]  # P1's languages; the files also hold ell_Grek, left out
LOW = ["yor_Latn", "hau_Latn"]  # P2's languages
SHARED = ["yor_Latn", "hau_Latn"]  # the first 2 of configs/rq2-5.yaml (scaling_languages 2)
SCALE_LANGS = {5: ["yor_Latn", "hau_Latn", "zul_Latn"], 50: ["yor_Latn", "hau_Latn", "zul_Latn", "swh_Latn"]}
HIT_RATE = {"mse": 0.3, "contrastive_best": 0.6, "ot_best": 0.8}  # P(query found at rank 1)
FAMILY = [("ot_best", "mse"), ("ot_best", "contrastive_best"), ("contrastive_best", "mse")]
ATOL = 1e-9


def _plan(n_bootstrap: int = 300) -> SimpleNamespace:
    """The attributes of an optical_stages plan that the report reads."""
    statistics = SimpleNamespace(bootstrap_seed=0, interval=0.95, equivalence_margin=1.0, alpha=0.05, family=FAMILY)
    return SimpleNamespace(
        options=lambda: SimpleNamespace(n_bootstrap=n_bootstrap),
        p=SimpleNamespace(statistics=statistics,
                          scaling=SimpleNamespace(sizes={5: "configs/rq2-5.yaml", 50: "configs/rq2-50.yaml"})),
        s=SimpleNamespace(scaling_languages=2, scale="full"),
        xquad_r_languages=XQUAD_R, low_resource=LOW, checkpoints=[100, 200])


def _write(results, question, evaluation, method, seed, hits: dict, variant=None, langset=None):
    """One evaluation's result file (a trained arm's ``method`` is the arm's name, a zero-shot
    one's ``variant``) and per-query NPZ (recall@1 0/1 and mrr@10 per query, xx->en;
    an en->xx row the report must not read)."""
    folder = results / question
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"evaluation": {"name": evaluation}, "method": method, "variant": variant or method, "seed": seed}
    if langset:
        doc["langset"] = langset
    path = folder / f"{variant or method}-{langset or 'n'}-s{seed}.{evaluation}.json"
    path.write_text(json.dumps(doc))
    arrays = {}
    for lang, h in hits.items():
        arrays[f"{lang}|xx->en|recall@1"] = h.astype(np.float32)  # 0 / 1: exact
        arrays[f"{lang}|xx->en|mrr@10"] = np.where(h == 1, 1.0, 0.25)
        arrays[f"{lang}|en->xx|recall@1"] = 1.0 - h
    np.savez(path.with_suffix(".npz"), **arrays)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Synthetic RQ3 results: per (arm, seed, language) Q outcomes 0/1, returned as hits[question,
    evaluation, arm, seed, lang] -> (Q,) array."""
    root = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(7)
    hits = {}

    def draw(question, evaluation, arm, seed, langs, langset=None, method=None, variant=None):
        per = {lang: (rng.random(Q) < HIT_RATE.get(arm, 0.5)).astype(np.float64) for lang in langs}
        hits.update({(question, evaluation, arm + (f"@{langset[1:]}" if langset else ""), seed, lang): v
                     for lang, v in per.items()})
        _write(root, question, evaluation, method or arm, seed, per, variant=variant, langset=langset)

    for arm in HIT_RATE:
        for seed in SEEDS:
            draw("rq3", P1, arm, seed, [*XQUAD_R, "ell_Grek"], variant=arm)
            draw("rq3", P2, arm, seed, LOW, variant=arm)
            aer = [{"aer": 0.2 + 0.1 * seed}, {"aer": 0.4 + 0.1 * seed}]  # seed 0: 30 %, seed 1: 40 %
            (root / "rq3" / f"{arm}-s{seed}.aer.roen.json").write_text(
                json.dumps({"method": arm, "variant": arm, "results": aer}))
        for size, langs in SCALE_LANGS.items():
            for seed in SEEDS:
                draw("rq3-scale", "flores.test", arm, seed, langs, langset=f"n{size}", variant=arm)
    draw("rq3", P1, "e5_untrained", 0, XQUAD_R, method="zero-shot", variant="e5_untrained")  # one seed
    return root, hits


def _mean(hits, question, evaluation, arm, langs, seeds=SEEDS) -> float:
    """Recall@1 in percent: mean over queries, then languages, then seeds."""
    return 100.0 * np.mean([np.mean([hits[question, evaluation, arm, s, lang].mean() for lang in langs]) for s in seeds])


def test_load_arms_reads_the_xx_en_rows_of_the_kept_languages_in_percent(results):
    root, hits = results
    arms = load_arms(root, "rq3", P1, XQUAD_R)
    assert set(arms) == {"mse", "contrastive_best", "ot_best", "e5_untrained"}  # zero-shot: named by its variant
    assert set(arms["ot_best"]) == set(SEEDS) and set(arms["e5_untrained"]) == {0}
    assert set(arms["ot_best"][1]) == set(XQUAD_R)
    np.testing.assert_array_equal(arms["mse"][1]["spa_Latn"], 100.0 * hits["rq3", P1, "mse", 1, "spa_Latn"])
    scale = load_arms(root, "rq3-scale", "flores.test")
    assert set(scale) == {f"{a}@{z}" for a in HIT_RATE for z in SCALE_LANGS}
    assert set(scale["mse@50"][0]) == set(SCALE_LANGS[50])


def test_summary_is_the_hierarchical_mean_of_each_arm_and_the_aer_over_seeds(results):
    root, hits = results
    table = summary_table(_plan(), root).set_index(["set", "arm"])
    for arm in HIT_RATE:
        row = table.loc[(P1, arm)]
        assert row["estimate"] == pytest.approx(_mean(hits, "rq3", P1, arm, XQUAD_R), abs=ATOL)
        assert row["lo"] <= row["estimate"] <= row["hi"]
        assert (row["seeds"], row["languages"]) == (2, 2)  # ell_Grek is not an XQuAD-R language here
        assert table.loc[(P2, arm), "estimate"] == pytest.approx(_mean(hits, "rq3", P2, arm, LOW), abs=ATOL)
        # mrr@10 per query: 1 at a hit, 0.25 otherwise
        assert row["mrr@10"] == pytest.approx(25.0 + 0.75 * row["estimate"], abs=1e-6)
        aer = table.loc[("aer.roen", arm)]
        assert (aer["estimate"], aer["lo"], aer["hi"], aer["seeds"]) == pytest.approx((35.0, 30.0, 40.0, 2))
    zero_shot = table.loc[(P1, "e5_untrained")]
    assert zero_shot["seeds"] == 1
    assert zero_shot["estimate"] == pytest.approx(_mean(hits, "rq3", P1, "e5_untrained", XQUAD_R, seeds=(0,)), abs=ATOL)


def test_contrasts_are_mean_paired_differences_in_one_holm_family(results):
    root, hits = results
    table = contrast_table(_plan(), root)
    did_label = ("ot_best - mse @50 shared_5", "ot_best - mse @5 shared_5")
    expected_pairs = [(f"{a} {p}", f"{b} {p}") for p in (P1, P2) for a, b in FAMILY] + [did_label]
    assert list(zip(table["a"], table["b"])) == expected_pairs
    rows = table.set_index(["a", "b"])
    for primary, langs in ((P1, XQUAD_R), (P2, LOW)):
        for a, b in FAMILY:
            # the mean over seeds, languages and queries of the per-query paired differences
            diff = np.stack([hits["rq3", primary, a, s, lang] - hits["rq3", primary, b, s, lang]
                             for s in SEEDS for lang in langs])  # (S * L, Q)
            assert rows.loc[(f"{a} {primary}", f"{b} {primary}"), "estimate"] == pytest.approx(100.0 * diff.mean(), abs=1e-6)
    did = (_mean(hits, "rq3-scale", "flores.test", "ot_best@50", SHARED) - _mean(hits, "rq3-scale", "flores.test", "mse@50", SHARED)
           - _mean(hits, "rq3-scale", "flores.test", "ot_best@5", SHARED) + _mean(hits, "rq3-scale", "flores.test", "mse@5", SHARED))
    assert rows.loc[did_label, "estimate"] == pytest.approx(did, abs=1e-6)
    # Holm over the 7: adjusted >= raw, monotone in the raw p-values, the step-down formula
    p, adj = table["p_value"].to_numpy(), table["p_holm"].to_numpy()
    assert (adj >= p).all() and (adj <= 1.0).all()
    order = np.argsort(p, kind="stable")
    assert (np.diff(adj[order]) >= 0).all()
    m = len(p)
    np.testing.assert_allclose(adj[order], np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order])))
    assert (table["reject"] == (table["p_holm"] <= 0.05)).all()
    # 80 % against 30 % hits over 160 queries: no bootstrap replicate reaches 0
    assert rows.loc[(f"ot_best {P1}", f"mse {P1}"), "reject"]


def test_scaling_table_per_size_and_pooled_over_sizes(results):
    root, hits = results
    table = scaling_table(_plan(), root)
    sized = table[table["size"].notna()].set_index(["group", "arm", "size"])
    for size, langs in SCALE_LANGS.items():
        for arm in HIT_RATE:
            key = f"{arm}@{size}"
            assert sized.loc[("trained", arm, size), "estimate"] == pytest.approx(
                _mean(hits, "rq3-scale", "flores.test", key, langs), abs=ATOL)
            assert sized.loc[("shared_5", arm, size), "estimate"] == pytest.approx(
                _mean(hits, "rq3-scale", "flores.test", key, SHARED), abs=ATOL)
    pooled = table[table["size"].isna()].set_index(["group", "arm"])
    assert set(pooled.index) == {(g, f"{a} - mse (pooled, language clusters)")
                                 for g in ("trained", "shared_5") for a in ("ot_best", "contrastive_best")}
    # every (size, language) unit counts once: 7 trained units, 4 shared ones
    for group, units in (("trained", [(z, lang) for z, langs in SCALE_LANGS.items() for lang in langs]),
                         ("shared_5", [(z, lang) for z in SCALE_LANGS for lang in SHARED])):
        diff = np.stack([hits["rq3-scale", "flores.test", f"ot_best@{z}", s, lang]
                         - hits["rq3-scale", "flores.test", f"mse@{z}", s, lang] for s in SEEDS for z, lang in units])
        row = pooled.loc[(group, "ot_best - mse (pooled, language clusters)")]
        assert row["estimate"] == pytest.approx(100.0 * diff.mean(), abs=1e-6)
        assert row["lo"] <= row["estimate"] <= row["hi"]


def test_write_optical_reports_writes_the_three_tables_and_the_figures(results, tmp_path):
    import shutil

    root = tmp_path / "results"
    shutil.copytree(results[0], root)
    pd.DataFrame([{"method": "ot", "variant": "ot-a", "dev@100": 10.0, "dev@200": 20.0},
                  {"method": "mse", "variant": "mse-lr1", "dev@100": 12.0, "dev@200": 15.0}]).to_csv(
        root / "tuning.csv", index=False)
    plan = _plan(n_bootstrap=100)
    written = write_optical_reports(plan, root, tmp_path / "figures")
    names = [p.name for p in written]
    assert names[:3] == ["rq3_summary.csv", "rq3_contrasts.csv", "rq3_scaling.csv"]
    assert set(names[3:]) == {f"rq3_{f}.{ext}" for f in ("dev_curves", "arms", "contrasts", "scaling")
                              for ext in ("pdf", "png")}
    summary = pd.read_csv(root / "rq3_summary.csv")
    expected = summary_table(plan, root)
    assert list(summary["arm"]) == list(expected["arm"])
    np.testing.assert_allclose(summary["estimate"], expected["estimate"], atol=1e-4)  # written with 4 decimals
    assert len(pd.read_csv(root / "rq3_contrasts.csv")) == 7
    for png in [p for p in written if p.suffix == ".png"]:
        with Image.open(png) as image:
            assert image.format == "PNG" and min(image.size) > 100


def test_dev_curves_bold_a_methods_selection_only_once_its_tuning_is_complete():
    """A leader of an unfinished tuning is not drawn as selected; a finished one is, by the
    stage's rule (highest final score, ties within optical_protocol.TIE to the first listed)."""
    import matplotlib.pyplot as plt

    from optical_viz.experiments.figures import _dev_curves

    tuning = pd.DataFrame([
        {"method": "ot", "variant": "ot-a", "dev@100": 10.0, "dev@200": 20.0},
        {"method": "ot", "variant": "ot-b", "dev@100": 11.0, "dev@200": 20.05},  # within the tie: a wins
        {"method": "mse", "variant": "mse-a", "dev@100": 12.0, "dev@200": 30.0},
        {"method": "mse", "variant": "mse-b", "dev@100": None, "dev@200": None},  # not scored yet
        {"method": "contrastive", "variant": "contrastive-a", "dev@100": None, "dev@200": None},  # no panel yet
    ])
    fig = _dev_curves(tuning, [100, 200], "")
    try:
        ot_ax, mse_ax = fig.axes  # no contrastive panel: none of its configurations is scored
        widths = {line.get_label(): line.get_linewidth() for line in ot_ax.get_lines()}
        assert widths["a"] > widths["b"]
        assert [line.get_linewidth() for line in mse_ax.get_lines()] == [0.8]  # mse-a leads, unselected
    finally:
        plt.close(fig)
