"""The pre-registered RQ3 protocol (results/optical/protocol.yaml, issue 26) and its typed loader."""
from __future__ import annotations

import copy

import pytest
import yaml

from optical_viz import optical_protocol as OP


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(OP.OPTICAL_PROTOCOL_PATH.read_text(encoding="utf-8"))


def test_committed_protocol_validates():
    p = OP.load_optical_protocol()
    assert p.models.teacher.name == "all-MiniLM-L6-v2" and not p.models.teacher.trained
    assert p.models.student.name == "multilingual-e5-small"
    assert p.training.steps >= OP.MIN_STEPS and p.training.checkpoints[-1] == p.training.steps
    assert p.tuning.methods["ot"].budget >= 6 and p.tuning.methods["contrastive"].budget >= 6
    assert len(p.test.seeds) >= 3 and p.statistics.pooled_over_sizes == "language_clusters"
    assert p.start.same_for_every_arm and p.start.method == "linear_map"
    assert p.start.config() == {"method": "linear_map", "pairs": p.start.pairs, "ridge": p.start.ridge}
    assert not OP.placeholders(yaml.safe_load(OP.OPTICAL_PROTOCOL_PATH.read_text(encoding="utf-8")))
    assert abs(OP.estimate(p) - p.budget.estimate_wall_s) < 1.0


def _mutated(raw, edit):
    p = copy.deepcopy(raw)
    edit(p)
    return p


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["training"].update(steps=200, checkpoints=[50, 100, 200]), r"training: steps: at least 1000"),
        (lambda p: p["training"].update(checkpoints=[250, 1000]), r"training: checkpoints: a learning curve"),
        (lambda p: p["training"].update(precision="bf16"), r"training\.precision: 'bf16' is not one of"),
        (lambda p: p["tuning"]["methods"]["ot"].update(budget=7), r"methods\.ot\.budget: 7 but 6"),
        (lambda p: p["tuning"]["methods"]["contrastive"]["grid"].update(temperature=[0.05]),
         r"methods\.contrastive\.budget: 6 but 2"),
        (lambda p: p["tuning"]["methods"]["ot"]["configs"]["published"].update(eps_mode="absolut"),
         r"methods\.ot\.configs\.published\..*eps_mode"),
        (lambda p: p["test"].update(seeds=[0, 1]), r"test: seeds: at least 3"),
        (lambda p: p["statistics"].update(pooled_over_sizes="independent"), r"statistics: pooled_over_sizes"),
        (lambda p: p["statistics"]["family"].append(["ot_best", "nope"]), r"\[ot_best, nope\] names an arm"),
        (lambda p: p["start"].update(same_for_every_arm=False), r"start: same_for_every_arm"),
        (lambda p: p["start"].update(method="none"), r"start: method: a cross-model run needs a start"),
        (lambda p: p["start"].update(method="warmup"), r"start\.method: 'warmup' is not one of"),
        (lambda p: p["start"]["evidence"].append("results/pilots/rq3/nope.json"), r"start: evidence: \['results/pilots/rq3/nope.json'\]"),
        (lambda p: p["start"].pop("ridge"), r"start\.ridge: expected a value"),
        (lambda p: p["budget"].pop("seconds_per_step"), r"budget\.seconds_per_step: expected a value"),
        (lambda p: p["start"].update(pairs="__START_PAIRS__"), r"^protocol\.yaml: start\.pairs: still the placeholder __START_PAIRS__"),
        (lambda p: p["budget"]["seconds_per_step"].update(light="__LIGHT__"),
         r"budget\.seconds_per_step\.light: still the placeholder __LIGHT__"),
        (lambda p: p["data"]["dev"].append("__DEV__"), r"data\.dev\[2\]: still the placeholder __DEV__"),
        (lambda p: p["models"]["teacher"].update(trained=True), r"models: teacher\.trained"),
        (lambda p: p["budget"]["runs"]["dev"].update(light=40), r"budget\.estimate_wall_s"),
        (lambda p: p["training"].update(step=1000), r"training\.step: unknown key; did you mean 'steps'"),
        (lambda p: p.pop("statistics"), r"statistics: expected a value"),
        (lambda p: p["tuning"]["methods"]["ot"]["configs"]["published"].update(weight="scale_probe"),
         r"methods\.ot\.configs\.published\.weight: unknown key"),
        (lambda p: p["tuning"]["methods"]["ot"]["configs"]["published"].update(loss="ot+contrastive"),
         r"methods\.ot\.configs\.published\.loss"),
    ],
)
def test_a_broken_copy_is_an_error_naming_the_key(raw, edit, message):
    OP.validate_optical_protocol(raw)  # the committed file passes
    with pytest.raises(ValueError, match=message):
        OP.validate_optical_protocol(_mutated(raw, edit))


def test_protocol_yaml_error_names_the_file(tmp_path, raw):
    bad = tmp_path / "protocol.yaml"
    bad.write_text(yaml.safe_dump(_mutated(raw, lambda p: p["test"].update(seeds=[0]))))
    with pytest.raises(ValueError, match=r"^protocol\.yaml: test: seeds"):
        OP.load_optical_protocol(bad)


def test_ot_configurations_are_typed():
    """tuning.methods.ot.configs as typed configurations: the OT fields, the loss and weights
    of the one with the sentence term, the protocol's OT learning rate."""
    p = OP.load_optical_protocol()
    configs = p.tuning.methods["ot"].ot_configs()
    assert list(configs)[0] == "divergence_content" and len(configs) == 6
    both = configs["divergence_content+mse"]
    assert (both.loss, both.weights, both.lr) == ("ot+mse", "scale_probe", OP.OT_LR)
    assert configs["published"].ot() == {"objective": "entropic", "plan": "sinkhorn", "eps": 0.02, "eps_mode": "absolute",
                                         "eps_scaling": None, "marginals": "uniform", "rho": None, "layer": -1}
    assert p.tuning.methods["contrastive"].axis("temperature") == [0.02, 0.05, 0.1]
    with pytest.raises(ValueError, match=r"grid\.temperature: not an axis"):
        p.tuning.methods["mse"].axis("temperature")
