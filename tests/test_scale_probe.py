"""The scale probe of a combined loss (optical_viz.experiments.scale_probe), on the tiny model."""
from __future__ import annotations

import json

import pytest

from experiments_fixtures import tiny_home, tiny_home_dir  # noqa: F401  (fixtures)
from optical_viz.experiments import scale_probe as P
from optical_viz.experiments.settings import dev_settings
from optical_viz.experiments.stage_configs import RQ1_CONFIG, base_config, setting_config
from optical_viz.protocol import load_stage_protocol


def test_weights_give_every_term_the_reference_magnitude_and_are_cached(tiny_home, tmp_path, data_root, monkeypatch):
    p = load_stage_protocol("quick")
    mid = dev_settings(p, "rq1")[1]  # ot+mse: OT on layer 6 plus the MSE sentence term
    assert P.probe_reference(p, mid.p["loss"]) == "mse"
    config = setting_config(base_config(p, RQ1_CONFIG, None), mid, 0, tmp_path / "run", None)
    cache = tmp_path / "scale_probe.json"
    weights = P.scale_probe_weights(config, "mse", batches=2, root=data_root, cache=cache)
    means = next(iter(json.loads(cache.read_text()).values()))["term_means"]
    assert set(weights) == set(means) == {"ot", "mse"} and weights["mse"] == 1.0
    assert weights["ot"] == pytest.approx(means["mse"] / means["ot"]) and weights["ot"] > 0
    assert not (tmp_path / "run").exists()  # a probe trains nothing and writes no run

    import optical_viz.distill

    monkeypatch.setattr(optical_viz.distill, "build_trainer", lambda *a, **k: pytest.fail("the cache was not used"))
    assert P.scale_probe_weights(config, "mse", batches=2, root=data_root, cache=cache) == weights
    with pytest.raises(ValueError, match="names no reference term for loss 'mse'"):
        P.probe_reference(p, "mse")
