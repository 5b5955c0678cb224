"""The grid file and its runs (optical_viz.experiments.grid): GridSpec, build_grid, RunOptions."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from optical_viz import experiments as ex

REPO = Path(__file__).resolve().parent.parent
GRID_QUICK = REPO / "configs" / "grid-quick.yaml"
GRID_FULL = REPO / "configs" / "grid-full.yaml"


def test_full_grid_same_schedule_and_data_per_method(tmp_path):
    spec = ex.GridSpec.from_yaml(GRID_FULL)
    runs = ex.build_grid(spec, runs_dir=tmp_path)
    rq1 = [r for r in runs if r.question == "rq1"]
    trained = [r for r in rq1 if r.trained]
    # 4 trained methods x 3 seeds + one zero-shot
    assert len(trained) == 12 and len(rq1) == 13
    assert {r.method for r in trained} == {"mse", "contrastive", "ot", "ot+contrastive"}
    assert {r.seed for r in trained} == {0, 1, 2}

    def schedule(r):
        d = r.config.to_dict()
        d["loss"] = {k: v for k, v in d["loss"].items() if k != "name"}
        for k in ("seed", "output_dir"):
            d.pop(k)
        return json.dumps(d, sort_keys=True)

    assert len({schedule(r) for r in trained}) == 1  # only loss.name, seed, output_dir differ
    assert all(r.config.loss.name == r.method for r in trained)
    assert all(Path(r.config.output_dir) == tmp_path / r.run_id for r in trained)
    # RQ2: nested language sets, unseen languages disjoint from every trained set
    rq2 = [r for r in runs if r.question == "rq2"]
    sets = {r.langset: r.languages for r in rq2}
    assert [len(sets[k]) for k in ("n5", "n10", "n20", "n50")] == [5, 10, 20, 50]
    assert sets["n5"] == sets["n10"][:5] and sets["n20"] == sets["n50"][:20]
    assert len(rq2[0].unseen) == 20 and not set(rq2[0].unseen) & set(sets["n50"])
    assert {r.method for r in rq2} == {"zero-shot", "contrastive", "ot"}
    # seed-major order: every seed-0 run precedes every seed-1 run
    seeds = [r.seed for r in runs if r.trained]
    assert seeds == sorted(seeds)
    # MaxSim only for seed 0
    assert all(any(e.scoring == "maxsim" for e in r.evaluations) == (r.seed == 0) for r in trained)


def test_grid_errors_name_the_problem(tmp_path):
    doc = {"scale": "x", "questions": {"rq1": {"configs": {"a": "rq1.yaml"}, "methods": ["ot", "sgd"],
                                                "seeds": [0], "evaluations": []}}}
    with pytest.raises(ValueError, match="sgd"):
        ex.GridSpec.from_dict(doc, base_dir=REPO / "configs")
    doc["questions"]["rq1"]["methods"] = ["ot"]
    doc["questions"]["rq1"]["evaluations"] = [{"task": "flores", "langs": "unseen"}]
    with pytest.raises(ValueError, match="unseen"):
        ex.GridSpec.from_dict(doc, base_dir=REPO / "configs")
    doc["questions"]["rq1"]["evaluations"] = []
    doc["questions"]["rq1"]["overrides"] = {"steps": 0}
    spec = ex.GridSpec.from_dict(doc, base_dir=REPO / "configs")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        ex.build_grid(spec, runs_dir=tmp_path)
    doc["questions"]["rq1"]["configs"] = {"a": "missing.yaml"}
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        ex.GridSpec.from_dict(doc, base_dir=REPO / "configs")



def test_run_options_are_the_grids():
    spec = ex.GridSpec.from_yaml(GRID_QUICK)
    opts = spec.run_options
    assert isinstance(opts, ex.RunOptions)
    assert (opts.scale, opts.n_bootstrap, opts.prune, opts.precision, opts.estimate) == (
        spec.scale, spec.n_bootstrap, spec.prune, spec.precision, spec.estimate)
