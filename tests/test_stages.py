"""The stage driver (optical_viz.experiments.stages): the runs of each stage, the refusal rule,
sharding, and `reproduce --scale quick` end to end on the tiny model (stage order, selection,
reuse of dev students, resume, pruning, reports)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from experiments_fixtures import tiny_home, tiny_home_dir  # noqa: F401  (fixtures)
from optical_viz.cli import main
from optical_viz.experiments import stages as S
from optical_viz.experiments import protocol_evals as E
from optical_viz.experiments.protocol_evals import rq1_question_ids
from optical_viz.experiments.stage_configs import RQ1_CONFIG, base_config


@pytest.fixture(scope="module")
def full():
    return S.load_stage_protocol("full")


@pytest.fixture(scope="module")
def quick():
    return S.load_stage_protocol("quick")


def test_test_stage_is_refused_until_tuning_is_finished(quick, tmp_path, data_root):
    with pytest.raises(ValueError, match="refused: tuning of 'mse' is not finished"):
        S.stage_runs(quick, "rq1-test", tmp_path / "runs", tmp_path / "results", root=data_root)
    with pytest.raises(ValueError, match="needs the OT stage-1 winner"):
        S.stage_runs(quick, "rq1-dev2", tmp_path / "runs", tmp_path / "results", root=data_root)
    with pytest.raises(ValueError, match="needs the RQ1 tuning"):
        S.stage_runs(quick, "rq2-dev", tmp_path / "runs", tmp_path / "results", root=data_root)
    with pytest.raises(ValueError, match="unknown stage 'rq3-dev'"):
        S.stage_runs(quick, "rq3-dev", tmp_path / "runs", tmp_path / "results", root=data_root)


def test_dev_runs_score_dev_questions_at_every_checkpoint(full, tmp_path, data_root):
    runs = S.stage_runs(full, "rq1-dev", tmp_path / "runs", tmp_path / "results", root=data_root, probe=False)
    assert len(runs) == 7 + 8 + 2
    r = runs[0]
    assert r.config.steps == 200 and r.config.snapshots == [50, 100] and r.config.seed == 0
    assert [ev.at_step for ev in r.evaluations] == [50, 100, None]
    dev_ids = set(r.evaluations[0].query_ids)
    assert len(dev_ids) == full.splits.rq1.questions_per_language["dev"] == 441
    test_ids = set(rq1_question_ids(full, "test", root=data_root))
    assert len(test_ids) == 749 and not dev_ids & test_ids
    # every run of the stage trains the same data on the same schedule: only the loss and lr differ
    keys = {(tuple(x.config.languages), x.config.batch_size, x.config.max_length, x.config.warmup_steps) for x in runs}
    assert len(keys) == 1
    assert len({x.config.output_dir for x in runs}) == len(runs)
    assert S.run_options(full).estimate["seconds_per_step_heavy"] == 3.0 and S.run_options(full).precision == "bf16"


def test_shards_split_runs_and_keep_a_training_directory_together(full, tmp_path, data_root):
    runs = S.stage_runs(full, "rq1-dev", tmp_path / "runs", tmp_path / "results", root=data_root, probe=False)
    a, b = S.shard_runs(runs, (0, 2)), S.shard_runs(runs, (1, 2))
    assert sorted(r.run_id for r in a + b) == sorted(r.run_id for r in runs) and not {r.run_id for r in a} & {r.run_id for r in b}
    with pytest.raises(ValueError, match="shard must be i/n"):
        S.shard_runs(runs, (2, 2))


@pytest.mark.slow  # ~2.5 min of CPU on the tiny model (every stage twice; was ~15 min with the real model)
def test_reproduce_quick_runs_every_stage(tmp_path, capsys, data_root, tiny_home):
    args = ["reproduce", "--scale", "quick", "--out", str(tmp_path), "--quiet", "--data-root", str(data_root)]
    assert main(args) == 0
    out = capsys.readouterr().out
    stages = [line.split()[1] for line in out.splitlines() if line.startswith("stage ")]
    assert stages == list(S.STAGES)  # in order, none refused
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
    assert arms == set(S.load_stage_protocol("quick").test.rq1.arms)
    test_ids = set(rq1_question_ids(S.load_stage_protocol("quick"), "test", root=data_root))
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
    for weights in ("*/student", "*/checkpoints"):  # limits.prune: no weights kept (checkpoints were: 5.8 GB)
        assert not list((tmp_path / "runs" / "quick").glob(weights))
    # every training directory was trained once: a test arm's seed-0 run that equals a dev
    # configuration reused its student
    trained = [line for line in out.splitlines() if line.startswith("training ")]
    assert len(trained) == len([d for d in (tmp_path / "runs" / "quick").iterdir() if d.is_dir()])


def test_alignment_evaluation_of_a_grid_run_writes_aer(tmp_path, quick, data_root, tiny_home):
    """The protocol's AER metric goes through the grid's run loop like any evaluation."""
    from optical_viz.experiments import protocol_report as R
    from optical_viz.experiments.run import run_grid

    ev = next(e for e in E.test_evaluations(quick, "rq1", root=data_root) if e.task == "alignment")
    assert (ev.name, ev.pair, ev.align_methods, ev.max_queries) == ("alignment.roen", "roen", ["similarity", "sinkhorn"], 20)
    base = base_config(quick, RQ1_CONFIG, None)
    run = S.make_run(quick, "rq1", S.RQ1_LANGSET, base, None, 0, [ev], tmp_path / "runs", arm="zero-shot")
    records = run_grid(S.run_options(quick), [run], tmp_path / "results", root=data_root, progress=False,
                       log=lambda *a: None)
    assert "error" not in records[0]
    doc = json.loads((tmp_path / "results" / "rq1" / "rq1-xquad-zero-shot-s0.alignment.roen.json").read_text())
    rows = {r["method"]: r for r in doc["results"]}
    assert set(rows) == {"similarity", "sinkhorn"} and all(0 < r["aer"] < 1 and r["n"] == 20 for r in rows.values())
    summary = R.rq1_report(quick, tmp_path / "results")["rq1_summary"].set_index(["arm", "metric"])
    assert summary.loc[("zero-shot", "aer_roen_sinkhorn"), "estimate"] == pytest.approx(100 * rows["sinkhorn"]["aer"])
