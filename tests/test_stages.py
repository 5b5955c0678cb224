"""The protocol's stages (optical_viz.experiments.stages): settings, selection, the refusal
rule and sharding, on the committed protocols; `reproduce --scale quick` end to end (slow)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optical_viz.cli import main
from optical_viz.experiments import stages as S


@pytest.fixture(scope="module")
def full():
    return S.load_stage_protocol("full")


@pytest.fixture(scope="module")
def quick():
    return S.load_stage_protocol("quick")


def test_dev_settings_follow_the_protocol_budgets(full):
    settings = S.dev_settings(full, "rq1")
    by = {m: [s for s in settings if s.method == m] for m in ("ot", "contrastive", "mse")}
    t = full.doc["tuning"]["rq1"]
    # stage 1 of OT: its variants; the stage-2 lr makes up the budget
    assert len(by["ot"]) + len(t["ot"]["stage2_lr"]) == t["ot"]["budget"] == 8
    assert len(by["contrastive"]) == t["contrastive"]["budget"] == 8
    assert len(by["mse"]) == t["mse"]["budget"] == 2
    assert len({s.run_key for s in settings}) == len(settings)  # every configuration its own run
    pub = next(s for s in by["ot"] if s.variant == "published").p
    assert (pub["objective"], pub["eps"], pub["marginals"], pub["layer"], pub["lr"]) == ("entropic", 0.02, "uniform", -1, 1e-4)
    mid = next(s for s in by["ot"] if s.variant == "middle_layer_sentence").p
    assert (mid["loss"], mid["layer"], mid["weights"]) == ("ot+mse", 6, "scale_probe")


def _table(settings, scores, question="rq1", steps=200):
    return pd.DataFrame([{"question": question, "method": s.method, "variant": s.run_key, f"dev_r1@{steps}": v}
                         for s, v in zip(settings, scores)])


def test_selection_takes_the_best_and_breaks_ties_by_listed_order(full):
    ots = [s for s in S.dev_settings(full, "rq1") if s.method == "ot"]
    # the third is best by 0.05 point only: a tie, which goes to the one listed first (the 2nd)
    scores = [50.0, 60.0, 60.05, 40.0, 41.0, 42.0, 43.0]
    best = S.ranked(_table(ots, scores), ots, "rq1", 200)
    assert [s.variant for s, _ in best[:3]] == [ots[1].variant, ots[2].variant, ots[0].variant]
    # a clear winner wins wherever it is listed
    scores[6] = 61.0
    assert S.ranked(_table(ots, scores), ots, "rq1", 200)[0][0] == ots[6]


def test_winners_appear_only_when_their_stage_is_finished(full):
    settings = S.dev_settings(full, "rq1")
    ots = [s for s in settings if s.method == "ot"]
    table = _table(ots[:-1], range(len(ots) - 1))
    assert "ot-stage1" not in S.winners(full, table)  # one OT variant not scored yet
    table = _table(settings, [float(i) for i in range(len(settings))])
    won = S.winners(full, table)
    assert won["ot-stage1"] == ots[-1] and won["mse"].p["lr"] == 2e-4
    assert "ot" not in won  # the stage-2 run is missing
    stage2 = S.dev_settings(full, "rq1-dev2", won)
    assert [s.p["lr"] for s in stage2] == [2e-4] and stage2[0].variant == ots[-1].variant
    table = pd.concat([table, _table(stage2, [0.0])])
    won = S.winners(full, table)
    assert won["ot"] == ots[-1]  # stage 2 lost
    assert [s.run_key for s in S.rq2_candidates(full, table, "ot")] == [ots[-1].run_key, ots[-2].run_key]


def test_test_stage_is_refused_until_tuning_is_finished(quick, tmp_path, data_root):
    with pytest.raises(ValueError, match="refused: tuning of 'mse' is not finished"):
        S.stage_runs(quick, "rq1-test", tmp_path / "runs", tmp_path / "results", root=data_root)
    with pytest.raises(ValueError, match="needs the OT stage-1 winner"):
        S.stage_runs(quick, "rq1-dev2", tmp_path / "runs", tmp_path / "results", root=data_root)


def test_dev_runs_score_dev_questions_at_every_checkpoint(full, tmp_path, data_root):
    runs = S.stage_runs(full, "rq1-dev", tmp_path / "runs", tmp_path / "results", root=data_root, probe=False)
    assert len(runs) == 7 + 8 + 2
    r = runs[0]
    assert r.config.steps == 200 and r.config.snapshots == [50, 100] and r.config.seed == 0
    assert [ev.at_step for ev in r.evaluations] == [50, 100, None]
    dev_ids = set(r.evaluations[0].query_ids)
    assert len(dev_ids) == full.doc["splits"]["rq1"]["questions_per_language"]["dev"] == 441
    test_ids = set(S.rq1_question_ids(full, "test", root=data_root))
    assert len(test_ids) == 749 and not dev_ids & test_ids
    # every run of the stage trains the same data on the same schedule: only the loss and lr differ
    keys = {(tuple(x.config.languages), x.config.batch_size, x.config.max_length, x.config.warmup_steps) for x in runs}
    assert len(keys) == 1
    assert len({x.config.output_dir for x in runs}) == len(runs)


def test_shards_split_runs_and_keep_a_training_directory_together(full, tmp_path, data_root):
    runs = S.stage_runs(full, "rq1-dev", tmp_path / "runs", tmp_path / "results", root=data_root, probe=False)
    a, b = S.shard_runs(runs, (0, 2)), S.shard_runs(runs, (1, 2))
    assert sorted(r.run_id for r in a + b) == sorted(r.run_id for r in runs) and not {r.run_id for r in a} & {r.run_id for r in b}
    with pytest.raises(ValueError, match="shard must be i/n"):
        S.shard_runs(runs, (2, 2))


def test_pruning_after_a_stage_keeps_what_later_stages_read(tmp_path):
    """limits.prune: after a dev stage only finished runs' checkpoints go; after a question's test
    stage its students go too, the other question's stay, and an unfinished run keeps everything."""
    def run(name, finished=True):
        d = tmp_path / name
        (d / "checkpoints" / "step-2").mkdir(parents=True)
        if finished:
            (d / "student").mkdir()
            (d / "student" / "config.json").write_text("{}")
        return d

    rq1, rq2, unfinished = run("rq1-xquad-mse-lr0.0001-s0"), run("rq2-n2-ot-published-lr0.0001-s0"), run("rq1-xquad-ot-s1", False)
    gone = S.prune_after_stage("rq1-dev2", tmp_path)
    assert sorted(gone) == [rq1 / "checkpoints", rq2 / "checkpoints"]
    assert (rq1 / "student").is_dir() and (rq2 / "student").is_dir() and (unfinished / "checkpoints").is_dir()
    assert S.prune_after_stage("rq1-test", tmp_path) == [rq1 / "student"]
    assert (rq2 / "student").is_dir() and (unfinished / "checkpoints" / "step-2").is_dir()
    assert S.prune_after_stage("rq2-test", tmp_path) == [rq2 / "student"]


@pytest.mark.slow
def test_reproduce_quick_runs_every_stage(tmp_path, capsys, data_root, default_model_dir):
    args = ["reproduce", "--scale", "quick", "--out", str(tmp_path), "--quiet", "--data-root", str(data_root)]
    assert main(args) == 0
    out = capsys.readouterr().out
    results = tmp_path / "results" / "quick"
    tuning = pd.read_csv(results / "tuning.csv")
    # every dev configuration: 3 OT (2 variants + stage 2), 3 contrastive, 1 MSE on RQ1; 1 + 1 on RQ2
    assert sorted(tuning.groupby("question").size().items()) == [("rq1", 7), ("rq2", 2)]
    assert set(tuning["steps"]) == {2} and tuning[["dev_r1@1", "dev_r1@2"]].notna().all().all()
    mid = tuning[tuning["variant"].str.contains("middle_layer")].iloc[0]
    assert set(json.loads(mid["term_weights"])) == {"ot", "mse"}  # the scale probe weighed both terms
    # the test stage ran every arm on the test questions only
    docs = [json.loads(p.read_text()) for p in (results / "rq1").glob("*.json")]
    arms = {d["method"] for d in docs}
    assert arms == set(S.load_stage_protocol("quick").doc["test"]["rq1"]["arms"])
    test_ids = set(S.rq1_question_ids(S.load_stage_protocol("quick"), "test", root=data_root))
    retrieval = [d for d in docs if d["evaluation"]["task"] != "alignment"]
    assert retrieval and all(set(d["evaluation"]["query_ids"]) <= test_ids for d in retrieval)
    aer = [d for d in docs if d["evaluation"]["task"] == "alignment"]
    assert {d["method"] for d in aer} == arms and all(0 < r["aer"] < 1 for d in aer for r in d["results"])
    assert {d["precision"] for d in docs} == {"bf16"}
    rq2 = {json.loads(p.read_text())["method"] for p in (results / "rq2").glob("*.json")}
    assert rq2 == {"zero-shot", "contrastive_best", "ot_best", "ot_published"}
    assert (results / "timings.json").is_file() and (results / "rq1_summary.csv").is_file()
    assert not (results / "summary.csv").exists()  # the grid file's reports are not the protocol's
    # every trained test model's training log is kept with the results and summarised
    logs = {p.name.removesuffix(".metrics.jsonl") for p in (results / "rq1" / "training").glob("*.metrics.jsonl")}
    assert logs == {Path(d["student"]).parent.name for d in docs if d["method"] != "zero-shot"}
    training = pd.read_csv(results / "rq1_training.csv")
    assert set(training["run"]) == logs and training["translation_gap@end"].notna().all()
    # a second invocation trains and scores nothing
    assert main(args) == 0
    assert "to do: 0 trainings, 0 evaluations" in capsys.readouterr().out
    assert "stage rq2-test" in out
    for weights in ("*/student", "*/checkpoints"):  # limits.prune: no weights kept (checkpoints were: 5.8 GB)
        assert not list((tmp_path / "runs" / "quick").glob(weights))
    # every training directory was trained once: a test arm's seed-0 run that equals a dev
    # configuration reused its student
    trained = [line for line in out.splitlines() if line.startswith("training ")]
    assert len(trained) == len([d for d in (tmp_path / "runs" / "quick").iterdir() if d.is_dir()])


def test_gpu_protocol_is_the_full_one_at_gpu_scale(full):
    gpu = S.load_stage_protocol("gpu")
    t = gpu.doc["training"]
    assert (t["steps"], t["batch_size"], t["max_length"]) == (3000, 128, 128) and 3000 <= t["steps"] <= 5000
    assert gpu.doc["test"]["rq1"]["seeds"] == gpu.doc["test"]["rq2"]["seeds"] == [0, 1, 2, 3, 4]
    for key in ("splits", "methods", "statistics"):
        assert gpu.doc[key] == full.doc[key], key
    assert gpu.doc["tuning"]["rq1"] == full.doc["tuning"]["rq1"]  # the same configurations are tried
    assert [s.run_key for s in S.dev_settings(gpu, "rq1")] == [s.run_key for s in S.dev_settings(full, "rq1")]


@pytest.mark.slow  # ~1-2 min on one CPU thread: two steps of batch 128 x 128
def test_gpu_protocol_bench_trains_two_steps_on_cpu(data_root, default_model_dir):
    """The GPU check (`optical-viz bench gpu_protocol`), here on the CPU: the first dev configuration
    of configs/gpu/protocol.yaml, its batch, length and precision as they are, for 2 steps of 3000."""
    from optical_viz.benchmarks.gpu_protocol import time_configs

    out = time_configs(["ot-published-lr0.0001"], steps=2, device="cpu", root=data_root, progress=False)
    row = out["configs"]["ot-published-lr0.0001"]
    assert (row["loss"], row["batch_size"], row["max_length"], row["precision"]) == ("ot", 128, 128, "bf16")
    assert out["protocol_steps"] == 3000 and out["timed_steps"] == 2
    assert len(row["step_times_s"]) == 2 and all(np.isfinite(row["losses"])) and row["median_step_s"] > 0
    assert row["protocol_run_h"] == pytest.approx(row["median_step_s"] * 3000 / 3600, abs=1e-3)
    assert row["peak_gpu_memory_gb"] is None  # on the CPU
    with pytest.raises(ValueError, match="not a dev configuration"):
        time_configs(["ot-nope"], steps=2, device="cpu", root=data_root)
    print(f"gpu-scale step on CPU: {row['step_times_s']} s")


def test_alignment_evaluation_of_a_grid_run_writes_aer(tmp_path, quick, data_root, default_model_dir):
    """The protocol's AER metric goes through the grid's run loop like any evaluation."""
    from optical_viz.experiments import protocol_report as R
    from optical_viz.experiments.run import run_grid

    ev = next(e for e in S.test_evaluations(quick, "rq1", root=data_root) if e.task == "alignment")
    assert (ev.name, ev.pair, ev.align_methods, ev.max_queries) == ("alignment.roen", "roen", ["similarity", "sinkhorn"], 20)
    base = S._base_config(quick, "configs/rq1.yaml", None)
    run = S.make_run(quick, "rq1", S.RQ1_LANGSET, base, None, 0, [ev], tmp_path / "runs", arm="zero-shot")
    records = run_grid(S.grid_options(quick), [run], tmp_path / "results", root=data_root, progress=False,
                       log=lambda *a: None)
    assert "error" not in records[0]
    doc = json.loads((tmp_path / "results" / "rq1" / "rq1-xquad-zero-shot-s0.alignment.roen.json").read_text())
    rows = {r["method"]: r for r in doc["results"]}
    assert set(rows) == {"similarity", "sinkhorn"} and all(0 < r["aer"] < 1 and r["n"] == 20 for r in rows.values())
    summary = R.rq1_report(quick, tmp_path / "results")["rq1_summary"].set_index(["arm", "metric"])
    assert summary.loc[("zero-shot", "aer_roen_sinkhorn"), "estimate"] == pytest.approx(100 * rows["sinkhorn"]["aer"])
