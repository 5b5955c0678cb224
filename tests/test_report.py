"""Summaries, seed aggregation, paired tests, tables and findings (optical_viz.experiments.report),
against numpy on synthetic result files, and a question no code names reaching them (tiny model)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments_fixtures import tiny_home, tiny_home_dir  # noqa: F401  (fixtures)
from optical_viz import experiments as ex

REPO = Path(__file__).resolve().parent.parent
TOL = 1e-6


def _fake_result(results, question, method, seed, langset, values: dict, ev="xquad-r.dense"):
    """A result file pair (JSON + per-query npz) as run_grid writes it."""
    rows = [{"lang": l, "direction": d, "n": len(v), m: float(np.mean(v)), f"{m}_ci": [0.0, 1.0]}
            for (l, d, m), v in values.items()]
    doc = {"scale": "t", "question": question, "run_id": f"{question}-{langset}-{method}-s{seed}", "method": method,
           "langset": langset, "n_languages": 2, "seed": seed, "task": ev.split(".")[0], "scoring": "dense",
           "evaluation": {"name": ev, "langs": "trained"}, "code": {"commit": "abc", "dirty": False},
           "timings": {"train_s": 1.0, "eval_s": 2.0}, "results": rows}
    path = results / question / f"{doc['run_id']}.{ev}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    np.savez(path.with_suffix(".npz"), **{"|".join(k): np.asarray(v, np.float32) for k, v in values.items()})


def test_aggregate_and_paired_test_against_numpy(tmp_path):
    rng = np.random.default_rng(0)
    per = {}
    for method in ("contrastive", "ot"):
        for seed in (0, 1, 2):
            vals = {(l, "xx->en", "recall@1"): (rng.random(40) < (0.5 if method == "ot" else 0.3)).astype(float)
                    for l in ("deu_Latn", "hin_Deva")}
            per[(method, seed)] = vals
            _fake_result(tmp_path, "rq1", method, seed, "xq", vals)
    agg = ex.aggregate(tmp_path, n_bootstrap=200)
    row = agg[(agg.method == "ot") & (agg.lang == "all")].iloc[0]
    seed_avg = np.concatenate([np.mean([per[("ot", s)][(l, "xx->en", "recall@1")] for s in range(3)], 0)
                               for l in ("deu_Latn", "hin_Deva")])
    assert row["value"] == pytest.approx(seed_avg.mean(), abs=TOL)
    assert row["ci_lo"] <= row["value"] <= row["ci_hi"] and row["seeds"] == 3 and row["n"] == 80
    seed_means = [np.concatenate([per[("ot", s)][(l, "xx->en", "recall@1")] for l in ("deu_Latn", "hin_Deva")]).mean()
                  for s in range(3)]
    assert row["seed_sd"] == pytest.approx(np.std(seed_means, ddof=1), abs=TOL)

    tests = ex.paired_tests(tmp_path, metrics=("recall@1",))
    t = tests[tests.lang == "all"].iloc[0]
    contrastive = np.concatenate([np.mean([per[("contrastive", s)][(l, "xx->en", "recall@1")] for s in range(3)], 0)
                                  for l in ("deu_Latn", "hin_Deva")])
    assert t["delta"] == pytest.approx(seed_avg.mean() - contrastive.mean(), abs=TOL)
    assert t["delta_lo"] <= t["delta"] <= t["delta_hi"] and 0 < t["p_value"] <= 1
    # identical systems: no difference, p = 1
    _fake_result(tmp_path, "rq1", "ot", 0, "same", per[("ot", 0)])
    _fake_result(tmp_path, "rq1", "contrastive", 0, "same", per[("ot", 0)])
    same = ex.paired_tests(tmp_path, metrics=("recall@1",))
    assert (same[same.langset == "same"]["p_value"] == 1.0).all()

    summary = ex.collect(tmp_path)
    assert len(summary) == 2 * 3 * 2 + 2 * 2  # runs x languages (one metric each)
    assert set(summary.columns) >= {"run_id", "method", "seed", "task", "lang", "direction", "metric", "value",
                                    "ci_lo", "ci_hi", "commit", "dirty"}



@pytest.mark.slow  # ~11 s: a grid of three questions trained and reported end to end (tiny model)
def test_a_third_question_reaches_tables_and_figures(tmp_path, data_root, tiny_home):
    """A question that no code names (rq3 of tests/grids/grid-three.yaml) gets its summary rows,
    paired tests input, table, findings and figures, next to RQ1 and RQ2."""
    spec = ex.GridSpec.from_yaml(REPO / "tests" / "grids" / "grid-three.yaml")
    assert [q.name for q in spec.questions] == ["rq1", "rq2", "rq3"]
    result = ex.reproduce(spec, runs_dir=tmp_path / "runs", results_dir=tmp_path / "results",
                          figures_dir=tmp_path / "figures", root=data_root, progress=False, log=lambda *a: None)
    assert not result.failed and result.trained == 1
    summary = pd.read_csv(tmp_path / "results" / "summary.csv")
    assert set(summary["question"]) == {"rq1", "rq2", "rq3"}
    rq3 = summary[summary["question"] == "rq3"]
    assert set(rq3["method"]) == {"zero-shot", "contrastive"} and set(rq3["direction"]) == {"xx->en", "en->xx"}
    methods = pd.read_csv(tmp_path / "results" / "summary_methods.csv")
    assert (methods["question"] == "rq3").any()
    table = (tmp_path / "results" / "rq3_table.md").read_text()
    assert "**RQ3, headline**" in table and "| contrastive (1 seed) |" in table and "FLORES eng\u2192L" in table
    assert "### RQ3" in (tmp_path / "results" / "findings.md").read_text()
    # one language set: per-language and average bars; two language sets (rq2): scaling curves
    names = {p.name for p in result.figures}
    for stem in ("rq3_by_language", "rq3_average", "rq1_by_language", "rq1_average", "rq2_scaling_seen"):
        assert {f"{stem}.pdf", f"{stem}.png"} <= names, stem
        assert (tmp_path / "figures" / f"{stem}.png").stat().st_size > 5000
