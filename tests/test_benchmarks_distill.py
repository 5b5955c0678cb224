"""optical_viz.benchmarks.distill: its A/B comparisons are configurations the trainer takes, and
``step_in_turn`` trains each configuration on the same batches and dropout masks (what the
comparisons' step-time ratios and tests/test_distill.py's trajectory tests rely on)."""
from __future__ import annotations

import math

import pytest

from conftest import tiny_e5_config
from optical_viz.benchmarks.distill import COMPARISONS, PHASES, step_in_turn


@pytest.fixture
def base(tmp_path, tiny_e5_dir):
    return tiny_e5_config(tmp_path / "run", tiny_e5_dir, steps=4)


@pytest.mark.parametrize("name", sorted(COMPARISONS))
def test_every_comparison_is_a_valid_pair_of_configurations(name, base):
    loss, old, new, what = COMPARISONS[name]
    a, b = base.replace(loss=loss, **old), base.replace(loss=loss, **new)
    assert a != b and what
    for key in {*old, *new}:  # the change reached the config (a None asks for the default)
        assert getattr(a, key) == old[key] and getattr(b, key) == new[key]


@pytest.mark.slow  # ~15 s on a loaded 2-core CPU: four tiny trainers of 4 MSE steps
def test_step_in_turn_gives_twins_the_same_training(base, data_root):
    from optical_viz.distill import load_training_data

    base = base.replace(loss="mse")  # the quickest step; dropout on, as in every loss
    corpora = load_training_data(base, root=data_root)
    runs = step_in_turn({"a": base, "b": base}, 4, corpora=corpora)
    assert set(runs) == {"a", "b"}
    # who steps first rotates; each trainer has its own RNG state: the same batches and masks
    assert runs["a"]["loss"] == runs["b"]["loss"] and len(runs["a"]["loss"]) == 4
    assert all(math.isfinite(x) for x in runs["a"]["loss"]) and runs["a"]["loss"][0] != runs["a"]["loss"][-1]
    assert set(runs["a"]["phases_s"]) == set(PHASES) and runs["a"]["step_s"] > 0
    assert len(runs["a"]["records"]) == 4
    # a larger learning rate: the same first batch (equal loss before any update), then apart
    runs = step_in_turn({"a": base, "fast": base.replace(lr=1e-2)}, 4, corpora=corpora)
    assert runs["a"]["loss"][0] == runs["fast"]["loss"][0]
    assert runs["a"]["loss"][-1] != runs["fast"]["loss"][-1]
