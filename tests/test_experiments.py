"""Tests of the experiment grid (optical_viz.experiments) and `optical-viz reproduce`.

The end-to-end test runs the real quick grid (real model, real data) into a temporary
folder and checks the JSON / CSV / figures, then that a second invocation skips
everything. The pieces (subsetting, evaluation, aggregation, paired tests, grid
construction) are checked against independent references on small inputs.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optical_viz import experiments as ex
from optical_viz.cli import main
from optical_viz.retrieval import RetrievalProblem, subset_problem

REPO = Path(__file__).resolve().parent.parent
GRID_QUICK = REPO / "configs" / "grid-quick.yaml"
GRID_FULL = REPO / "configs" / "grid-full.yaml"
TOL = 1e-6


# ----------------------------------------------------------------------------- grid construction


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


# ----------------------------------------------------------------------------- subsetting


def _toy_problem(nq=30, nc=50, lang="xx", direction="xx->en", multi=False):
    rng = np.random.default_rng(1)
    relevant = [sorted(rng.choice(nc, size=3 if multi else 1, replace=False).tolist()) for _ in range(nq)]
    return RetrievalProblem(lang, direction, [f"q{i}" for i in range(nq)], [f"c{j}" for j in range(nc)],
                            relevant, kind="qa", with_map=multi)


@pytest.mark.parametrize("multi", [False, True])
def test_subset_keeps_gold_and_remaps(multi):
    p = _toy_problem(multi=multi)
    s = subset_problem(p, max_queries=10, max_candidates=20)
    assert len(s.queries) == 10
    assert len(s.candidates) == max(20, len({c for i in range(10) for c in s.relevant[i]}))
    original = {q: [p.candidates[c] for c in rel] for q, rel in zip(p.queries, p.relevant)}
    for q, rel in zip(s.queries, s.relevant):
        assert [s.candidates[c] for c in rel] == original[q]  # the same gold texts after remapping
    # deterministic, and the same sentences for both directions of a language
    again = subset_problem(_toy_problem(multi=multi, direction="en->xx"), 10, 20)
    assert again.queries == s.queries and again.candidates == s.candidates
    assert subset_problem(p, None, None).candidates == p.candidates


# ----------------------------------------------------------------------------- evaluation


def _brute_force(encoder, problem, scoring):
    """Per-query metrics of ``problem`` without cache or evaluation code: the encoder's own
    embeddings (token embeddings rounded to float16, as the cache stores them), e5 prefixes
    ("passage: " for QA candidates, "query: " elsewhere), scores and metrics."""
    from optical_viz.retrieval import Relevance, TokenEmbeddings, dense_scores, maxsim_scores, query_metrics

    q_pre, c_pre = "query: ", "passage: " if problem.kind == "qa" else "query: "
    if scoring == "dense":
        scores = dense_scores(encoder.embed_sentences(problem.queries, prefix=q_pre),
                              encoder.embed_sentences(problem.candidates, prefix=c_pre))
    else:
        def tokens(texts, prefix):
            b = encoder.embed_tokens(texts, prefix=prefix)
            return TokenEmbeddings(b.embeddings.half().float(), b.mask)

        scores = maxsim_scores(tokens(problem.queries, q_pre), tokens(problem.candidates, c_pre))
    rel = Relevance.from_lists(problem.relevant, len(problem.candidates))
    return query_metrics(scores, rel, with_map=problem.with_map)


@pytest.mark.parametrize("scoring", ["dense", "maxsim"])
@pytest.mark.parametrize("task,lang", [pytest.param("xquad-r", "deu_Latn", marks=pytest.mark.slow),  # 30-60 s
                                       pytest.param("xquad", "deu_Latn", marks=pytest.mark.slow),  # (paragraphs)
                                       ("flores", "yor_Latn")])
def test_grid_evaluation_is_retrieval_evaluate_on_the_same_subset(encoder, data_root, task, lang, scoring):
    """The grid's numbers equal retrieval.evaluate's with the same subset, and both equal a
    brute-force computation on that subset (every task, both scorings)."""
    from optical_viz.retrieval import build_problems, evaluate

    ev = ex.EvalSpec(task=task, scoring=scoring, max_queries=6, max_candidates=15)
    mine = ex.evaluate_model(ev, encoder, encoder, [lang], root=data_root, n_bootstrap=50)
    ref = evaluate(task, encoder=encoder, langs=[lang], split="all" if task == "flores" else None, scoring=scoring,
                   root=data_root, cache=False, n_bootstrap=50, progress=False, max_queries=6, max_candidates=15)
    a = mine.report.frame.set_index(["lang", "direction"]).sort_index()
    b = ref.frame.set_index(["lang", "direction"]).sort_index()
    assert list(a.index) == list(b.index) and len(a) == len(build_problems(task, [lang], root=data_root))
    for m in ("recall@1", "recall@5", "recall@10", "mrr@10"):
        np.testing.assert_allclose(a[m].to_numpy(float), b[m].to_numpy(float), atol=TOL)
        np.testing.assert_allclose(np.stack(a[f"{m}_ci"]), np.stack(b[f"{m}_ci"]), atol=TOL)
    for p in build_problems(task, [lang], root=data_root):
        sub = subset_problem(p, 6, 15)
        assert mine.subsets[(lang, p.direction)] == (6, len(sub.candidates)) and len(sub.candidates) >= 6
        expected = _brute_force(encoder, sub, scoring)
        for m, values in mine.report.per_query[(lang, p.direction)].values.items():
            np.testing.assert_allclose(values, expected[m], atol=1e-5, err_msg=f"{p.direction} {m}")


# ----------------------------------------------------------------------------- aggregation


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


# ----------------------------------------------------------------------------- end to end


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


@pytest.mark.slow
def test_reproduce_quick_end_to_end(tmp_path, capsys, data_root, default_model_dir):
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


@pytest.mark.slow  # ~40 s: one 2-step training and seven figures
def test_a_third_question_reaches_tables_and_figures(tmp_path, data_root, default_model_dir):
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


def test_estimate_counts_the_queries_an_evaluation_encodes_and_heavy_steps(tmp_path):
    """The printed plan's estimate: a question subset, a FLORES split and an mse term change
    it (it used to charge every run light steps and every evaluation the whole task)."""
    from types import SimpleNamespace

    from conftest import tiny_distill_config

    costs = {"seconds_per_step": 1.0, "seconds_per_step_heavy": 3.0, "seconds_per_model": 0.0,
             "sentences_per_second": 1.0}
    spec = SimpleNamespace(estimate=costs)

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
    spec.estimate = {**costs, "sentences_per_second_flores": 2.0}
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
