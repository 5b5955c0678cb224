"""Selection (optical_viz.experiments.selection): tuning.csv from dev result files, the tie
rule, and winners that appear only when their stage is finished."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from optical_viz.experiments import selection as S
from optical_viz.experiments.settings import dev_settings
from optical_viz.protocol import load_stage_protocol


@pytest.fixture(scope="module")
def full():
    return load_stage_protocol("full")


def _table(settings, scores, question="rq1", steps=200):
    return pd.DataFrame([{"question": question, "method": s.method, "variant": s.run_key, f"dev_r1@{steps}": v}
                         for s, v in zip(settings, scores)])


def test_selection_takes_the_best_and_breaks_ties_by_listed_order(full):
    ots = [s for s in dev_settings(full, "rq1") if s.method == "ot"]
    # the third is best by 0.05 point only: a tie, which goes to the one listed first (the 2nd)
    scores = [50.0, 60.0, 60.05, 40.0, 41.0, 42.0, 43.0]
    best = S.ranked(_table(ots, scores), ots, "rq1", 200)
    assert [s.variant for s, _ in best[:3]] == [ots[1].variant, ots[2].variant, ots[0].variant]
    # a clear winner wins wherever it is listed
    scores[6] = 61.0
    assert S.ranked(_table(ots, scores), ots, "rq1", 200)[0][0] == ots[6]


def test_winners_appear_only_when_their_stage_is_finished(full):
    settings = dev_settings(full, "rq1")
    ots = [s for s in settings if s.method == "ot"]
    table = _table(ots[:-1], range(len(ots) - 1))
    assert "ot-stage1" not in S.winners(full, table)  # one OT variant not scored yet
    table = _table(settings, [float(i) for i in range(len(settings))])
    won = S.winners(full, table)
    assert won["ot-stage1"] == ots[-1] and won["mse"].p["lr"] == 2e-4
    assert "ot" not in won  # the stage-2 run is missing
    stage2 = dev_settings(full, "rq1-dev2", won)
    assert [s.p["lr"] for s in stage2] == [2e-4] and stage2[0].variant == ots[-1].variant
    table = pd.concat([table, _table(stage2, [0.0])])
    won = S.winners(full, table)
    assert won["ot"] == ots[-1]  # stage 2 lost
    assert [s.run_key for s in S.rq2_candidates(full, table, "ot")] == [ots[-1].run_key, ots[-2].run_key]


def test_arm_settings_follow_the_winners(full):
    settings = dev_settings(full, "rq1")
    won = {"ot-published": S.winners(full, pd.DataFrame())["ot-published"]}
    arms = full.test.rq1.arms
    assert S.arm_setting(arms["zero-shot"], won) is None
    assert S.arm_setting(arms["ot_published"], won).variant == "published"
    assert S.arm_setting(arms["ot_best"], won) is None and S.arm_setting(arms["ot_best+contrastive"], won) is None
    won |= {"ot": settings[2], "contrastive": settings[9], "rq2-ot": settings[4]}
    assert S.arm_setting(arms["ot_best"], won) == settings[2]
    assert S.arm_setting(full.test.rq2.arms["ot_best"], won, "rq2") == settings[4]
    assert S.arm_setting(arms["ot_best+contrastive"], won).variant == f"{settings[2].variant}+{settings[9].variant}"


def _dev_result(results, run_id, method, variant, step, recalls, config):
    path = results / "tuning" / "rq1" / f"{run_id}.xquad-r.dev@{step}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"lang": lang, "recall@1": r} for lang, r in recalls.items()] + [{"lang": "all", "recall@1": 0.0}]
    path.write_text(json.dumps({"run_id": run_id, "question": "rq1", "method": method, "variant": variant, "seed": 0,
                                "evaluation": {"label": f"xquad-r.dev@{step}"}, "code": {"commit": "abc"},
                                "config": config, "results": rows}))


def test_tuning_table_reads_settings_and_scores_back_from_dev_results(tmp_path, full):
    ot = next(s for s in dev_settings(full, "rq1") if s.variant == "middle_layer_sentence")  # ot+mse, scale probe
    config = {"lr": ot.p["lr"], "loss": {"name": "ot+mse", "weights": {"ot": 2.0, "mse": 1.0},
                                         "ot": {k: ot.p[k] for k in ("objective", "plan", "eps", "eps_mode",
                                                                     "eps_scaling", "marginals", "rho", "layer")}}}
    for step, (a, b) in ((100, (0.5, 0.7)), (200, (0.6, 0.9))):
        _dev_result(tmp_path, "rq1-xquad-" + ot.run_key + "-s0", "ot", ot.label, step, {"arb": a, "deu": b}, config)
    assert S.tuning_table(tmp_path / "nothing").empty
    S.write_tuning_csv(tmp_path)
    row = pd.read_csv(tmp_path / "tuning.csv").iloc[0]
    assert (row["variant"], row["steps"], row["loss"], row["layer"], row["weights"]) == (ot.run_key, 200, "ot+mse", 6, "scale_probe")
    assert (row["dev_r1@100"], row["dev_r1@200"]) == (pytest.approx(60.0), pytest.approx(75.0))  # pooled rows left out
    assert json.loads(row["term_weights"]) == {"mse": 1.0, "ot": 2.0}
    assert S.ranked(S.tuning_table(tmp_path), [ot], "rq1", 200)[0][0] == ot  # read back as the same setting
