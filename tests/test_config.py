"""Tests of the configuration layer (optical_viz.config) and of the grid specs built on it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from optical_viz import experiments as ex
from optical_viz.config import DistillConfig, check_bitext_sources, deep_merge, load_yaml
from optical_viz.losses import LOSS_GRAD_MODES, LOSSES
from optical_viz.retrieval import TASKS
from optical_viz.transport import METRICS

REPO = Path(__file__).resolve().parent.parent
BASE = yaml.safe_load((REPO / "configs" / "quick.yaml").read_text())


@pytest.mark.parametrize("field,value", [
    ("train_layers", "oops"), ("num_threads", 2.5), ("dropout", "high"), ("grad_clip", True),
    ("gradient_checkpointing", "yes"), ("teacher", 3),
])
def test_optional_fields_are_strict(field, value):
    """``X | None`` fields accept None and X only (the old parser let ``int | None`` take "oops")."""
    with pytest.raises(ValueError, match=rf"^{field}: expected .*, got {value!r}$"):
        DistillConfig.from_dict({**BASE, field: value})
    assert getattr(DistillConfig.from_dict({**BASE, field: None}), field) is None


@pytest.mark.parametrize("given,nearest", [
    ({"warmup_step": 3}, "warmup_steps"),
    ({"loss": {"ot": {"epsilon": 0.1}}}, "eps"),
    ({"eval": {"heldout_sentence": 8}}, "heldout_sentences"),
    ({"bitext_source": ["flores"]}, "bitext_sources"),
])
def test_unknown_keys_name_the_closest_valid_key(given, nearest):
    with pytest.raises(ValueError, match=rf"unknown key; did you mean '{nearest}'\?"):
        DistillConfig.from_dict(deep_merge(BASE, given))


def test_choices_come_from_their_owners():
    """Every value the owning module lists is accepted; anything else is named with the choices."""
    for metric in METRICS:
        assert DistillConfig.from_dict(deep_merge(BASE, {"loss": {"ot": {"metric": metric}}})).loss.ot.metric == metric
    for grad in LOSS_GRAD_MODES:
        assert DistillConfig.from_dict(deep_merge(BASE, {"loss": {"ot": {"grad": grad}}})).loss.ot.grad == grad
    for task in TASKS:
        assert DistillConfig.from_dict(deep_merge(BASE, {"eval": {"task": task, "split": None}})).eval.task == task
    with pytest.raises(ValueError, match=r"loss\.ot\.metric: 'l1' is not one of 'cosine'"):
        DistillConfig.from_dict(deep_merge(BASE, {"loss": {"ot": {"metric": "l1"}}}))
    with pytest.raises(ValueError, match=r"eval\.task: 'xquad_r' is not one of"):
        DistillConfig.from_dict(deep_merge(BASE, {"eval": {"task": "xquad_r"}}))
    assert set(DistillConfig.from_dict(BASE).loss.terms) <= set(LOSSES)


def test_cross_field_checks_run_when_the_config_is_built():
    with pytest.raises(ValueError, match="languages: unknown language 'qqq_Zzzz'"):
        DistillConfig.from_dict({**BASE, "languages": ["yor_Latn", "qqq_Zzzz"]})
    with pytest.raises(ValueError, match=r"eval\.langs: unknown language 'klingon'"):
        DistillConfig.from_dict(deep_merge(BASE, {"eval": {"langs": ["klingon"]}}))
    # a periodic xquad-r evaluation with a FLORES split would fail at its first evaluation
    with pytest.raises(ValueError, match=r"eval\.split: 'dev' only applies to task flores"):
        DistillConfig.from_dict(deep_merge(BASE, {"eval": {"every": 5, "task": "xquad-r"}}))
    with pytest.raises(ValueError, match=r"loss\.weights: \['mse'\] are not terms"):
        DistillConfig.from_dict(deep_merge(BASE, {"loss": {"weights": {"mse": 2.0}}}))
    with pytest.raises(ValueError, match=r"eval\.heldout_sentences must be in \[2, 99\], got 1"):
        DistillConfig.from_dict(deep_merge(BASE, {"eval": {"heldout_sentences": 1}}))  # no non-matching pair
    with pytest.raises(ValueError, match=r"teacher_cache_mb must be >= 0 \(0: no cache\), got -1"):
        DistillConfig.from_dict({**BASE, "teacher_cache_mb": -1})
    cfg = DistillConfig.from_dict(BASE)
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        dataclasses.replace(cfg, steps=0)  # copies are validated too


@pytest.mark.parametrize("snapshots,match", [
    ([0], r"snapshots: steps \[0\] are not in \[1, steps=10\)"),
    ([5, 10], r"snapshots: steps \[10\] are not in \[1, steps=10\)"),
    ([3, 3], r"snapshots: duplicates in \[3, 3\]"),
    (["5"], r"snapshots\.0: expected an integer, got '5'"),
])
def test_snapshot_steps_are_inside_the_run(snapshots, match):
    with pytest.raises(ValueError, match=match) as info:
        DistillConfig.from_dict({**BASE, "steps": 10, "snapshots": snapshots})
    assert "\n" not in str(info.value)
    assert DistillConfig.from_dict({**BASE, "steps": 10, "snapshots": [1, 9]}).snapshots == [1, 9]
    assert DistillConfig.from_dict(BASE).snapshots == []


def test_bitext_sources_names_paths_and_file_pairs(tmp_path):
    tsv, yo, en = tmp_path / "my.tsv", tmp_path / "a.yo", tmp_path / "a.en"
    for f in (tsv, yo, en):
        f.write_text("x\ty\n" if f == tsv else "x\n")
    assert check_bitext_sources(["flores", "nllb_seed"]) == []
    assert check_bitext_sources([str(tsv), {"src": str(yo), "tgt": str(en)}]) == []
    assert check_bitext_sources(["flores", "wikipedia"]) == [
        "bitext_sources[1]: bitext source 'wikipedia' is not a file nor one of the named sources "
        "['flores', 'mafand', 'nllb_seed', 'tatoeba']; give a TSV (src<TAB>tgt) or {src: FILE, tgt: FILE}"]
    # a user's files must exist when the config is loaded, not at the first batch
    assert check_bitext_sources([str(tmp_path / "missing.tsv")])[0].startswith("bitext_sources[0]: bitext source")
    assert check_bitext_sources([]) == ["bitext_sources: at least one source is required"]
    cfg = DistillConfig.from_dict({**BASE, "bitext_sources": ["flores", {"src": str(yo), "tgt": str(en)}]})
    assert cfg.bitext_sources[1] == {"src": str(yo), "tgt": str(en)}
    with pytest.raises(ValueError, match=r"bitext_sources\.0: expected a source name, a file path or a mapping"):
        DistillConfig.from_dict({**BASE, "bitext_sources": [3]})


def test_deep_merge_keeps_the_keys_not_mentioned():
    cfg = DistillConfig.from_dict(BASE)
    merged = cfg.merge({"steps": 8, "eval": {"heldout_sentences": 24}})
    assert merged.eval.heldout_sentences == 24 and merged.steps == 8
    assert merged.eval.heldout_every == cfg.eval.heldout_every == BASE["eval"]["heldout_every"] != 0
    shallow = DistillConfig.from_dict(cfg.to_dict() | {"eval": {"heldout_sentences": 24}})
    assert shallow.eval.heldout_every == 0  # what `| QUICK` used to do silently
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"c": 5}}) == {"a": {"b": 1, "c": 5}, "d": 3}


def test_yaml_round_trip_and_load_errors(tmp_path):
    cfg = DistillConfig.from_yaml(REPO / "configs" / "rq1.yaml")
    cfg.to_yaml(tmp_path / "c.yaml")
    assert DistillConfig.from_yaml(tmp_path / "c.yaml") == cfg
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 3\n  batch_size: [\n")
    with pytest.raises(ValueError, match=rf"^{bad}: not valid YAML at line \d+, column \d+: "):
        load_yaml(bad)
    with pytest.raises(FileNotFoundError, match="grid file"):
        load_yaml(tmp_path / "none.yaml", what="grid")


# ----------------------------------------------------------------------------- grid specs


def _grid(**question):
    q = {"configs": {"a": "rq1.yaml"}, "methods": ["ot"], "seeds": [0], "evaluations": []} | question
    return {"scale": "x", "questions": {"rq1": q}}


@pytest.mark.parametrize("question,match", [
    ({"evaluations": [{"task": "xquad-r", "scoring": "colbert"}]}, r"scoring: 'colbert' is not one of 'dense' or 'maxsim'"),
    ({"evaluations": [{"task": "mlqa"}]}, r"task: 'mlqa' is not one of"),
    ({"evaluations": [{"task": "flores", "max_querys": 5}]}, r"max_querys: unknown key; did you mean 'max_queries'\?"),
    ({"evaluations": [{"task": "flores", "max_queries": "many"}]}, r"max_queries: expected an integer, got 'many'"),
    ({"evaluations": [{"task": "xquad", "split": "dev"}]}, r"split 'dev' only applies to task flores"),
    ({"seed": [0]}, r"seed: unknown key; did you mean 'seeds'\?"),
    ({"methods": ["ot", "sgd"]}, r"methods\.1: 'sgd' is not one of"),
])
def test_grid_specs_are_strict(question, match):
    with pytest.raises(ValueError, match=match):
        ex.GridSpec.from_dict(_grid(**question), base_dir=REPO / "configs")


def test_training_methods_are_losses_of_the_trainer():
    assert ex.TRAINING_METHODS[0] == ex.ZERO_SHOT
    assert all(t in LOSSES for m in ex.TRAINING_METHODS[1:] for t in m.split("+"))


def test_grid_file_errors_name_the_file(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(_grid(evaluations=[{"task": "flores", "scoring": "sparse"}]) | {"sclae": "x"}))
    with pytest.raises(ValueError, match=rf"^{path}: .*sclae: unknown key; did you mean 'scale'\?"):
        ex.GridSpec.from_yaml(path)


def test_question_titles_come_from_the_grid_file():
    spec = ex.GridSpec.from_yaml(REPO / "configs" / "grid-quick.yaml")
    assert spec.titles == {"rq1": "OPTICAL-style distillation vs. baselines"}
    assert spec.only(["rq2"]).titles == {}
