"""The configurations a protocol tries (optical_viz.experiments.settings), on the committed protocols."""
from __future__ import annotations

import pytest

from optical_viz.experiments import settings as T
from optical_viz.protocol import load_stage_protocol


@pytest.fixture(scope="module")
def full():
    return load_stage_protocol("full")


def test_dev_settings_follow_the_protocol_budgets(full):
    settings = T.dev_settings(full, "rq1")
    by = {m: [s for s in settings if s.method == m] for m in ("ot", "contrastive", "mse")}
    t = full.tuning.rq1
    # stage 1 of OT: its variants; the stage-2 lr makes up the budget
    assert len(by["ot"]) + len(t.ot.stage2_lr) == t.ot.budget == 8
    assert len(by["contrastive"]) == t.contrastive.budget == 8
    assert len(by["mse"]) == t.mse.budget == 2
    assert len({s.run_key for s in settings}) == len(settings)  # every configuration its own run
    pub = next(s for s in by["ot"] if s.variant == "published").p
    assert (pub["objective"], pub["eps"], pub["marginals"], pub["layer"], pub["lr"]) == ("entropic", 0.02, "uniform", -1, 1e-4)
    assert T.published_setting(full).p == pub
    mid = next(s for s in by["ot"] if s.variant == "middle_layer_sentence").p
    assert (mid["loss"], mid["layer"], mid["weights"]) == ("ot+mse", 6, "scale_probe")
    with pytest.raises(ValueError, match="no dev settings for 'rq3'"):
        T.dev_settings(full, "rq3")


def test_stage_two_is_the_stage_one_winner_at_the_stage_two_lrs(full):
    winner = T.dev_settings(full, "rq1")[3]
    stage2 = T.dev_settings(full, "rq1-dev2", {"ot-stage1": winner})
    assert [s.p["lr"] for s in stage2] == [2e-4] and stage2[0].variant == winner.variant
    assert {k: v for k, v in stage2[0].p.items() if k != "lr"} == {k: v for k, v in winner.p.items() if k != "lr"}
    assert stage2[0].run_key == f"ot-{winner.variant}-lr0.0002"


def test_combined_setting_takes_ots_fields_and_contrastives_temperature(full):
    settings = T.dev_settings(full, "rq1")
    ot, con = settings[1], next(s for s in settings if s.method == "contrastive" and s.p["temperature"] == 0.1)
    both = T.combined_setting(ot, con)
    assert both.method == "ot+contrastive" and both.variant == f"{ot.variant}+{con.variant}"
    assert both.p == {**ot.p, "loss": "ot+contrastive", "temperature": 0.1, "weights": "scale_probe"}


def test_gpu_protocol_is_the_full_one_at_gpu_scale(full):
    gpu = load_stage_protocol("gpu")
    t = gpu.training
    assert (t.steps, t.batch_size, t.max_length) == (3000, 128, 128) and 3000 <= t.steps <= 5000
    assert gpu.test.rq1.seeds == gpu.test.rq2.seeds == [0, 1, 2, 3, 4]
    for key in ("splits", "methods", "statistics"):
        assert getattr(gpu, key) == getattr(full, key), key
    assert gpu.tuning.rq1 == full.tuning.rq1  # the same configurations are tried
    assert [s.run_key for s in T.dev_settings(gpu, "rq1")] == [s.run_key for s in T.dev_settings(full, "rq1")]
