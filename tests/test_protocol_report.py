"""The protocol's test-stage report (optical_viz.experiments.protocol_report) on synthetic result
files laid out as the grid writes them: the arms' numbers, the Holm family, the figures."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from optical_viz.experiments import protocol_report as R
from optical_viz.experiments.settings import combined_setting, dev_settings
from optical_viz.protocol import load_stage_protocol
from optical_viz.experiments.figures import protocol_figures


def _write(dir_, question, run_id, method, seed, label, langset, per_lang: dict[tuple[str, str], np.ndarray]):
    dir_ = dir_ / question
    dir_.mkdir(parents=True, exist_ok=True)
    doc = {"run_id": run_id, "method": method, "seed": seed, "langset": langset, "evaluation": {"name": label}}
    (dir_ / f"{run_id}.{label}.json").write_text(json.dumps(doc))
    np.savez(dir_ / f"{run_id}.{label}.npz", **{f"{l}|{d}|recall@1": v for (l, d), v in per_lang.items()},
             **{"all|xx->en|recall@1": np.concatenate(list(per_lang.values()))})


@pytest.fixture(scope="module")
def quick():
    return load_stage_protocol("quick")


def test_rq1_arms_and_contrasts_from_result_files(tmp_path, quick):
    rng = np.random.default_rng(0)
    langs = ["arb_Arab", "deu_Latn"]
    hard = {l: rng.random(300) for l in langs}
    # OT best finds 70% of queries, contrastive 50%, every other arm 50% too; zero-shot one seed
    rate = {"ot_best": 0.7, "contrastive_best": 0.5, "ot_published": 0.5, "mse": 0.5, "ot_best+contrastive": 0.5,
            "zero-shot": 0.4}
    for arm, r in rate.items():
        for seed in ([0] if arm == "zero-shot" else [0, 1]):
            per = {(l, "xx->en"): (hard[l] < r).astype(np.float32) for l in langs}
            _write(tmp_path, "rq1", f"rq1-xquad-{arm}-s{seed}", arm, seed, "xquad-r.test", "xquad", per)
    arms = R.load_arms(tmp_path, "rq1", "xquad-r.test")
    assert set(arms) == set(rate) and set(arms["ot_best"]) == {0, 1} and set(arms["zero-shot"]) == {0}
    assert arms["ot_best"][0]["deu_Latn"].max() == 100.0  # points, not fractions

    out = R.rq1_report(quick, tmp_path)
    s = out["rq1_summary"].set_index("arm")
    assert s.loc["ot_best", "estimate"] == pytest.approx(100 * np.mean([(hard[l] < 0.7).mean() for l in langs]))
    assert s.loc["ot_best", "seeds"] == 2 and s.loc["zero-shot", "seeds"] == 1
    c = out["rq1_contrasts"].set_index(["a", "b"])
    assert len(c) == len(quick.statistics.contrasts["rq1"])
    assert c.loc[("ot_best", "contrastive_best"), "reject"] and c.loc[("ot_best", "contrastive_best"), "estimate"] > 15
    # identical arms: no difference, and equivalent within +-1 point
    same = c.loc[("ot_best+contrastive", "contrastive_best")]
    assert same["estimate"] == 0 and same["equivalent"] and not same["reject"]

    written = R.write_protocol_reports(quick, tmp_path, tmp_path / "figures")
    names = {p.name for p in written}
    assert {"rq1_summary.csv", "rq1_contrasts.csv", "rq1_contrasts.png", "rq1_contrasts.pdf", "rq1_arms.png"} <= names
    assert pd.read_csv(tmp_path / "rq1_contrasts.csv")["p_holm"].between(0, 1).all()


def test_rq2_delta_pools_directions_and_finds_the_interaction(tmp_path, quick):
    """Size 1 and 2 of the quick protocol: OT beats contrastive by 10 points at size 2 only,
    so DiD(2 - 1) on the shared language is ~10."""
    rng = np.random.default_rng(1)
    trained = {1: ["yor_Latn"], 2: ["yor_Latn", "hau_Latn"]}
    unseen = ["ewe_Latn", "fon_Latn"]
    hard = {l: rng.random(200) for l in trained[2] + unseen}
    rate = {("ot_best", 1): 0.5, ("ot_best", 2): 0.6, ("contrastive_best", 1): 0.5, ("contrastive_best", 2): 0.5,
            ("ot_published", 1): 0.5, ("ot_published", 2): 0.5}

    def per(langs, r):
        return {(l, d): (hard[l] < r).astype(np.float32) for l in langs for d in ("xx->en", "en->xx")}

    for (arm, size), r in rate.items():
        _write(tmp_path, "rq2", f"rq2-n{size}-{arm}-s0", arm, 0, "flores.test", f"n{size}", per(trained[size], r))
        _write(tmp_path, "rq2", f"rq2-n{size}-{arm}-s0", arm, 0, "flores.test.unseen", f"n{size}", per(unseen, r))
    _write(tmp_path, "rq2", "rq2-all-zero-shot-s0", "zero-shot", 0, "flores.test", "all", per(trained[2], 0.3))
    _write(tmp_path, "rq2", "rq2-all-zero-shot-s0", "zero-shot", 0, "flores.test.unseen", "all", per(unseen, 0.3))

    out = R.rq2_report(quick, tmp_path)
    s = out["rq2_summary"].set_index(["size", "group", "arm"])
    # the zero-shot model is scored on each size's own languages
    zs1 = s.loc[(1, "trained", "zero-shot"), "estimate"]
    assert zs1 == pytest.approx(100 * (hard["yor_Latn"] < 0.3).mean())
    d = s.loc[(2, "shared_5", "ot_best"), "delta_zero_shot"]
    assert d == pytest.approx(100 * ((hard["yor_Latn"] < 0.6).mean() - (hard["yor_Latn"] < 0.3).mean()))
    i = out["rq2_interaction"].set_index("group")
    assert i.loc["shared_5", "estimate"] == pytest.approx(100 * ((hard["yor_Latn"] < 0.6).mean() - (hard["yor_Latn"] < 0.5).mean()))
    fam = out["rq2_contrasts"]
    assert len(fam) == len(quick.statistics.contrasts["rq2"]) + 1  # + the DiD of the Holm family
    assert fam["a"].str.startswith("DiD").sum() == 1
    # descriptive: the pairs per size and direction (the two directions hold the same values here)
    dirs = out["rq2_directions"].set_index(["size", "direction", "a", "b"])
    gain = 100 * np.mean([(hard[l] < 0.6).mean() - (hard[l] < 0.5).mean() for l in trained[2]])
    for direction in ("xx->en", "en->xx"):
        assert dirs.loc[(2, direction, "ot_best", "contrastive_best"), "estimate"] == pytest.approx(gain)
        assert dirs.loc[(1, direction, "ot_best", "contrastive_best"), "estimate"] == pytest.approx(0.0)
    assert len(dirs) == 2 * 2 * 3  # sizes x directions x (ot - contrastive, ot - zero-shot, contrastive - zero-shot)
    written = R.write_protocol_reports(quick, tmp_path, tmp_path / "figures")
    assert {"rq2_delta.png", "rq2_summary.csv", "rq2_interaction.csv", "rq2_directions.csv"} <= {p.name for p in written}


def test_training_signal_summarises_the_kept_training_logs(tmp_path):
    logs = tmp_path / "rq1" / "training"
    logs.mkdir(parents=True)
    held = lambda cos, gap, r1: {"heldout_cosine": cos, "translation_gap": gap, "dev_recall@1": r1}
    recs = [{"step": 0, **held(0.9, 0.15, 0.8)}]
    recs += [{"step": k, "loss": 1.0 / k, "ot_converged": 1.0 if k > 2 else 0.5, "ot_plan_entropy": 0.1 * k}
             for k in range(1, 5)]
    recs += [{"step": 4, **held(0.95, 0.05, 0.6)}]
    (logs / "rq1-xquad-ot-published-s0.metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    (logs / "rq1-xquad-mse-s0.metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    t = R.training_signal(tmp_path, "rq1", window=2).set_index("run")
    ot = t.loc["rq1-xquad-ot-published-s0"]
    assert ot["steps"] == 4 and (ot["heldout_cosine@start"], ot["heldout_cosine@end"]) == (0.9, 0.95)
    assert (ot["translation_gap@start"], ot["translation_gap@end"]) == (0.15, 0.05)  # cosine up, gap down
    assert ot["loss@first"] == pytest.approx(0.75) and ot["loss@last"] == pytest.approx((1 / 3 + 1 / 4) / 2)
    assert (ot["ot_converged@first"], ot["ot_converged@last"]) == (0.5, 1.0)
    assert ot["ot_plan_entropy@last"] == pytest.approx(0.35)
    assert np.isnan(t.loc["rq1-xquad-mse-s0", "ot_converged@first"])  # not an OT run
    assert R.training_signal(tmp_path, "rq2").empty


def test_load_protocol_reports_reads_back_what_was_written(tmp_path, quick):
    """The frames read back equal the report's (to the CSV's 4 decimals) and redraw its figures;
    a report whose stage has not run is an empty frame."""
    rng = np.random.default_rng(2)
    langs = ["arb_Arab", "deu_Latn"]
    for arm, r in {"ot_best": 0.6, "contrastive_best": 0.5, "zero-shot": 0.4}.items():
        per = {(l, "xx->en"): (rng.random(100) < r).astype(np.float32) for l in langs}
        _write(tmp_path, "rq1", f"rq1-xquad-{arm}-s0", arm, 0, "xquad-r.test", "xquad", per)
    pd.DataFrame({"question": ["rq1"], "method": ["ot"], "dev_r1@2": [61.25]}).to_csv(tmp_path / "tuning.csv", index=False)
    R.write_protocol_reports(quick, tmp_path, tmp_path / "figures")

    got = R.load_protocol_reports(tmp_path)
    want = R.rq1_report(quick, tmp_path)
    pd.testing.assert_frame_equal(got.rq1_contrasts, want["rq1_contrasts"], check_exact=False, atol=1e-4)
    numbers = ["estimate", "lo", "hi", "seeds", "configs_tried"]  # (an empty "setting" reads back as NaN)
    pd.testing.assert_frame_equal(got.rq1_summary[["arm", "metric", *numbers]],
                                  want["rq1_summary"][["arm", "metric", *numbers]], check_exact=False, atol=1e-4,
                                  check_dtype=False)  # counts: Int64 in memory, int64 read back
    assert got.tuning["dev_r1@2"].tolist() == [61.25]
    assert got.rq2_summary.empty and got.rq2_contrasts.empty and got.rq2_interaction.empty and got.rq1_training.empty
    assert list(got.frames) == list(R.REPORTS) and got.frames["rq1_contrasts"] is got.rq1_contrasts
    redrawn = {p.name for p in protocol_figures(got.frames, tmp_path / "again", "quick")}
    assert redrawn == {f"{name}.{ext}" for name in ("rq1_arms", "rq1_contrasts") for ext in ("pdf", "png")}
    with pytest.raises(FileNotFoundError, match="no results directory"):
        R.load_protocol_reports(tmp_path / "missing")


def test_each_test_arm_reports_the_setting_it_ran(quick):
    settings = dev_settings(quick, "rq1")
    ot = next(s for s in settings if s.method == "ot" and s.variant != "published")
    con = next(s for s in settings if s.method == "contrastive")
    won = {"ot-published": next(s for s in settings if s.variant == "published"), "ot": ot, "contrastive": con}
    arms = quick.test.rq1.arms
    got = {arm: R._arm_setting(spec, won) for arm, spec in arms.items()}
    assert got["zero-shot"] is None and got["ot_best"] == ot and got["contrastive_best"] == con
    assert got["ot_published"].variant == "published"
    assert got["ot_best+contrastive"] == combined_setting(ot, con)  # the two winners combined (was empty)
    assert got["mse"] is None  # its tuning is not finished: no setting yet


def test_a_report_while_seeds_are_missing_leaves_those_arms_out_of_the_contrasts(tmp_path, full):
    """A shard that ends first writes the reports while the other still trains: an arm with
    seeds [0, 2] of [0, 1, 2] is summarised but in no contrast (it used to stop reproduce with
    'a and b must have the same seeds')."""
    rng = np.random.default_rng(2)
    hard = {"deu_Latn": rng.random(100)}
    seeds = {"ot_best": [0, 1, 2], "contrastive_best": [0, 1, 2], "mse": [0, 2], "zero-shot": [0]}
    for arm, ss in seeds.items():
        for s in ss:
            per = {("deu_Latn", "xx->en"): (hard["deu_Latn"] < 0.5 + 0.05 * s).astype(np.float32)}
            _write(tmp_path, "rq1", f"rq1-xquad-{arm}-s{s}", arm, s, "xquad-r.test", "xquad", per)
    out = R.rq1_report(full, tmp_path)
    assert out["rq1_summary"].set_index("arm").loc["mse", "seeds"] == 2
    pairs = set(zip(out["rq1_contrasts"]["a"], out["rq1_contrasts"]["b"]))
    assert pairs == {("ot_best", "contrastive_best"), ("ot_best", "zero-shot"), ("contrastive_best", "zero-shot")}


@pytest.fixture(scope="module")
def full():
    return load_stage_protocol("full")
