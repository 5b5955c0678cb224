"""The distill config of every protocol run (optical_viz.experiments.stage_configs), on the
committed protocols and run configs."""
from __future__ import annotations

import pytest
import yaml

from optical_viz import paths
from optical_viz.experiments import stage_configs as C
from optical_viz.experiments.settings import dev_settings
from optical_viz.protocol import load_stage_protocol


def _yaml(rel):
    return yaml.safe_load((paths.REPO_ROOT / rel).read_text())


@pytest.mark.parametrize("scale", ["full", "quick", "gpu"])
def test_base_config_is_the_run_config_on_the_protocols_schedule(scale):
    p = load_stage_protocol(scale)
    base = C.base_config(p, C.RQ1_CONFIG, None)
    t = p.training
    assert (base.steps, base.warmup_steps, base.batch_size, base.max_length, base.lr) == (
        t.steps, t.warmup_steps, t.batch_size, t.max_length, t.lr)
    assert base.snapshots == p.checkpoints[:-1] and base.snapshots[-1] < t.steps
    # the monitor logs at every checkpoint, unless the protocol's own eval overrides replace that
    # section (quick, gpu: their `eval: {heldout_sentences: N}` keeps the run config's heldout_every)
    run_config = _yaml(C.RQ1_CONFIG)
    expected = (run_config.get("eval", {}).get("heldout_every", 0) if "eval" in p.distill_overrides
                else {"full": 50}[scale])
    assert base.eval.heldout_every == expected
    languages = _yaml(C.RQ1_CONFIG)["languages"]
    assert base.languages == languages[: p.limits.max_languages]
    for key, value in p.distill_overrides.items():  # the protocol's overrides win
        assert getattr(base, key) == value or key == "eval", key
    if scale == "quick":
        assert base.checkpoint_every == 1 and base.eval.heldout_sentences == 8
    n = sorted(p.splits.rq2.sizes)[0]
    assert C.rq2_base_config(p, n).languages == _yaml(p.splits.rq2.sizes[n])["languages"][:n]


def test_setting_config_swaps_only_the_loss_lr_and_seed(tmp_path):
    p = load_stage_protocol("quick")
    base = C.base_config(p, C.RQ1_CONFIG, None)
    mid = dev_settings(p, "rq1")[1]  # OT on layer 6 plus the MSE sentence term
    cfg = C.setting_config(base, mid, 3, tmp_path / "run", {"ot": 2.0, "mse": 1.0})
    assert (cfg.loss.name, cfg.loss.ot.layer, cfg.loss.weights, cfg.seed, cfg.lr) == ("ot+mse", 6, {"ot": 2.0, "mse": 1.0}, 3, 1e-4)
    assert cfg.output_dir == str(tmp_path / "run")
    con = next(s for s in dev_settings(p, "rq1") if s.method == "contrastive")
    cfg = C.setting_config(base, con, 0, tmp_path / "c", None)
    assert (cfg.loss.name, cfg.loss.contrastive.temperature, cfg.loss.weights) == ("contrastive", con.p["temperature"], {})
    same = {k: v for k, v in base.to_dict().items() if k not in ("loss", "lr", "seed", "output_dir")}
    assert {k: v for k, v in cfg.to_dict().items() if k in same} == same


def test_unseen_languages_are_cut_at_the_quick_scale():
    unseen = _yaml("configs/rq2-unseen.yaml")["unseen_languages"]
    assert C.unseen_languages(load_stage_protocol("quick")) == unseen[:2]
    assert C.unseen_languages(load_stage_protocol("full")) == unseen
