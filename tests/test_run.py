"""The run loop and `optical-viz reproduce --grid` (optical_viz.experiments.run): the plan and
its estimate, the quick grid end to end on the tiny model (result files with provenance,
summaries, figures, pruning, a second invocation that does nothing), training logs."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from experiments_fixtures import tiny_home, tiny_home_dir  # noqa: F401  (fixtures)
from optical_viz import experiments as ex
from optical_viz.cli import main

REPO = Path(__file__).resolve().parent.parent
GRID_QUICK = REPO / "configs" / "grid-quick.yaml"
GRID_FULL = REPO / "configs" / "grid-full.yaml"


def test_dry_run_lists_runs_and_writes_nothing(tmp_path, capsys, data_root):
    grid = ["reproduce", "--grid", str(GRID_FULL), "--out", str(tmp_path), "--dry-run", "--data-root", str(data_root)]
    assert main(grid) == 0
    out = capsys.readouterr().out
    assert "rq1-xquad11-ot-s2" in out and "rq2-n50-contrastive-s0" in out and "estimated" in out
    assert "25 runs (20 trained, 5 zero-shot)" in out and not any(tmp_path.iterdir())
    # one question only
    assert main([*grid, "--question", "rq2"]) == 0
    out = capsys.readouterr().out
    assert "rq2-n50-contrastive-s0" in out and "rq1-" not in out and "13 runs (8 trained, 5 zero-shot)" not in out
    assert "12 runs (8 trained, 4 zero-shot)" in out
    assert main([*grid, "--question", "rq3"]) != 0
    assert "unknown question(s) ['rq3']; this grid has ['rq1', 'rq2']" in capsys.readouterr().err
    # the protocol (--scale full): the first stage's runs, and the stage after it cannot start yet
    assert main(["reproduce", "--scale", "full", "--out", str(tmp_path), "--dry-run", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "stage rq1-dev (shard 0/1)" in out and "17 runs (17 trained, 0 zero-shot)" in out
    assert "rq1-xquad-ot-published-lr0.0001-s0" in out and "rq1-xquad-contrastive-t0.2-lr0.0002-s0" in out
    assert "stage rq1-dev2 cannot start yet" in out and not any(tmp_path.iterdir())
    assert main(["reproduce", "--scale", "full", "--dry-run", "--stage", "rq1-dev", "--shard", "1/2", "--out",
                 str(tmp_path)]) == 0
    assert "stage rq1-dev (shard 1/2)" in capsys.readouterr().out
    assert main(["reproduce", "--scale", "full", "--dry-run", "--shard", "2", "--out", str(tmp_path)]) != 0
    assert "--shard must look like 0/2, got '2'" in capsys.readouterr().err


@pytest.mark.slow  # ~1 min of CPU on the tiny model: 8 trainings of 10 steps, every task, 4 figures
def test_reproduce_quick_end_to_end(tmp_path, capsys, data_root, tiny_home):
    args = ["reproduce", "--grid", str(GRID_QUICK), "--out", str(tmp_path), "--quiet", "--data-root", str(data_root)]
    assert main(args) == 0
    first = capsys.readouterr().out
    results, figures = tmp_path / "results" / "quick", tmp_path / "figures" / "quick"
    spec = ex.GridSpec.from_yaml(GRID_QUICK)
    runs = ex.build_grid(spec, runs_dir=tmp_path / "runs" / "quick")
    expected = [r.result_path(results, ev) for r in runs for ev in r.evaluations]
    assert all(p.is_file() and p.with_suffix(".npz").is_file() for p in expected)

    # each result file records the resolved config, the code version, scale, seed and timings
    for path in expected:
        doc = json.loads(path.read_text())
        assert doc["scale"] == "quick" and doc["code"]["commit"] and isinstance(doc["code"]["dirty"], bool)
        assert doc["timings"]["eval_s"] > 0
        if doc["method"] == "zero-shot":
            assert doc["config"] is None
        else:
            assert doc["config"]["loss"]["name"] == doc["method"] and doc["config"]["seed"] == doc["seed"]
            assert doc["timings"]["train_s"] > 0 and doc["config"]["steps"] == 10
        for row in doc["results"]:
            for m in ("recall@1", "recall@10", "mrr@10"):
                lo, hi = row[f"{m}_ci"]
                assert 0 <= lo <= row[m] <= hi <= 1
            assert row["recall@1"] <= row["recall@5"] <= row["recall@10"]

    summary = pd.read_csv(results / "summary.csv")
    assert set(summary["method"]) == {"zero-shot", "mse", "contrastive", "ot", "ot+contrastive"}
    assert set(summary["task"]) == {"xquad-r", "xquad", "flores"}
    assert set(summary["scoring"]) == {"dense", "maxsim"}
    assert set(summary["eval_langs"]) == {"trained", "unseen"}
    assert (summary["scale"] == "quick").all()
    n_rows = sum(len(json.loads(p.read_text())["results"]) for p in expected)
    assert len(summary) == summary.groupby(["run_id", "task", "scoring", "eval_langs", "lang", "direction",
                                            "metric"]).ngroups
    assert summary.groupby(["run_id", "task", "scoring", "eval_langs", "lang", "direction"]).ngroups == n_rows
    # the summary agrees with the JSON files
    doc = json.loads(expected[0].read_text())
    r0 = doc["results"][0]
    hit = summary[(summary.run_id == doc["run_id"]) & (summary.task == doc["task"]) & (summary.lang == r0["lang"])
                  & (summary.direction == r0["direction"]) & (summary.metric == "recall@1")
                  & (summary.scoring == doc["scoring"])]
    assert hit["value"].iloc[0] == pytest.approx(r0["recall@1"], abs=1e-6)

    tests = pd.read_csv(results / "rq1_paired_tests.csv")
    assert {"delta", "p_value"} <= set(tests.columns) and (tests["p_value"].between(0, 1)).all()
    assert "quick" in (results / "rq1_table.md").read_text()
    for stem in ("rq1_by_language", "rq1_average", "rq2_scaling_seen", "rq2_scaling_unseen"):
        for ext in ("pdf", "png"):
            f = figures / f"{stem}.{ext}"
            assert f.is_file() and f.stat().st_size > 5000, f
    # pruned: the quick grid keeps no student weights
    assert not list((tmp_path / "runs" / "quick").glob("*/student"))

    # a second invocation trains and evaluates nothing and leaves the result files alone
    mtimes = {p: p.stat().st_mtime_ns for p in expected}
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "to do: 0 trainings, 0 evaluations" in second and "to do: 8 trainings" in first
    assert {p: p.stat().st_mtime_ns for p in expected} == mtimes


def test_estimate_counts_the_queries_an_evaluation_encodes_and_heavy_steps(tmp_path):
    """The printed plan's estimate: a question subset, a FLORES split and an mse term change
    it (it used to charge every run light steps and every evaluation the whole task)."""
    import dataclasses

    from conftest import tiny_distill_config

    costs = {"seconds_per_step": 1.0, "seconds_per_step_heavy": 3.0, "seconds_per_model": 0.0,
             "sentences_per_second": 1.0}
    spec = ex.RunOptions(scale="t", estimate=costs)

    def seconds(loss="ot", **ev):
        config = tiny_distill_config(tmp_path, steps=10, loss={"name": loss})
        spec_ev = ex.EvalSpec(**ev)
        run = ex.Run("q", "l", "ot", 0, ["yor_Latn", "hau_Latn"], config, [spec_ev])
        train = ex.estimate_seconds(spec, ex.GridStatus([run], [], []))
        evaluate = ex.estimate_seconds(spec, ex.GridStatus([], [(run, spec_ev)], []))
        return train, evaluate

    assert seconds("ot", task="xquad-r")[0] == 10.0 and seconds("ot+mse", task="xquad-r")[0] == 30.0
    assert seconds(task="xquad-r")[1] == 2 * 1190
    assert seconds(task="xquad-r", query_ids=[f"q{i}" for i in range(441)])[1] == 2 * 441
    assert seconds(task="xquad-r", query_ids=["a", "b", "c"], max_queries=2, include_english=True)[1] == 3 * 2
    assert seconds(task="flores", split="dev")[1] == 2 * 99 and seconds(task="flores")[1] == 2 * 1004
    spec = dataclasses.replace(spec, estimate={**costs, "sentences_per_second_flores": 2.0})
    assert seconds(task="flores", split="test")[1] == 204 and seconds(task="xquad-r")[1] == 2 * 1190


def test_a_finished_runs_training_log_is_kept_with_its_results(tmp_path):
    from conftest import tiny_distill_config

    run_dir = tmp_path / "runs" / "rq1-xquad-ot-s0"
    run = ex.Run("rq1", "xquad", "ot", 0, ["yor_Latn"], tiny_distill_config(run_dir), [])
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    assert ex.keep_training_log(run, tmp_path / "results") is None  # not finished: no student yet
    (run_dir / "student").mkdir()
    (run_dir / "student" / "config.json").write_text("{}")
    kept = ex.keep_training_log(run, tmp_path / "results")
    assert kept == tmp_path / "results" / "rq1" / "training" / "rq1-xquad-ot-s0.metrics.jsonl"
    import shutil

    shutil.rmtree(run_dir)  # the run directory goes (pruned, or another machine): the log stays
    assert kept.read_text() == '{"step": 1, "loss": 0.5}\n'
