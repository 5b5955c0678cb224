"""The distillation engine: config, bad input, a short real run, resume, 2 processes (the
sampler, the held-out signal and the teacher cache: test_data_training, test_monitor, test_models).

CPU time is scarce: every run here freezes the embedding table, uses batches of 4-8,
short max lengths and a handful of steps.
"""
from __future__ import annotations

import json
import warnings
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from optical_viz.distill import DistillConfig, distill, latest_checkpoint, list_checkpoints, read_metrics
from conftest import tiny_distill_config

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
RQ2 = ["rq2-5", "rq2-10", "rq2-20", "rq2-50"]
LOSS_KEYS = ("loss", "loss_ot", "loss_contrastive", "loss_mse", "heldout_cosine", "translation_gap", "dev_recall@1")


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("name", ["quick", "rq1", *RQ2])
def test_ready_configs_load_and_round_trip(name, tmp_path):
    cfg = DistillConfig.from_yaml(CONFIGS / f"{name}.yaml")
    for loss in ("ot", "contrastive", "mse"):
        assert cfg.replace(loss=loss).loss.terms == [loss]
    cfg.to_yaml(tmp_path / "c.yaml")
    assert DistillConfig.from_yaml(tmp_path / "c.yaml") == cfg


def test_rq_language_sets(data_root):
    from optical_viz import data

    rq1 = DistillConfig.from_yaml(CONFIGS / "rq1.yaml")
    xquad = "arb_Arab deu_Latn ell_Grek spa_Latn hin_Deva ron_Latn rus_Cyrl tha_Thai tur_Latn vie_Latn zho_Hans"
    assert rq1.languages == xquad.split()  # ar de el es hi ro ru th tr vi zh
    assert set(rq1.languages) <= set(data.languages("flores", root=data_root))
    sets = [DistillConfig.from_yaml(CONFIGS / f"{n}.yaml").languages for n in RQ2]
    assert [len(s) for s in sets] == [5, 10, 20, 50]
    for small, big in zip(sets, sets[1:]):
        assert big[: len(small)] == small  # nested, in order
    with_bitext = set(data.languages("nllb_seed", root=data_root)) | set(data.languages("mafand", root=data_root))
    flores = set(data.languages("flores", root=data_root))
    assert set(sets[-1]) <= with_bitext & flores
    # every language of the largest set has bitext in the configured split
    from optical_viz.distill import load_training_data

    corpora = load_training_data(DistillConfig.from_yaml(CONFIGS / "rq2-50.yaml"), root=data_root)
    assert [c.lang for c in corpora] == sets[-1] and all(len(c.src) >= 800 for c in corpora)
    unseen = yaml.safe_load((CONFIGS / "rq2-unseen.yaml").read_text())["unseen_languages"]
    assert len(unseen) == len(set(unseen)) == 20
    assert set(unseen) <= flores and not set(unseen) & set(sets[-1])


def test_unknown_keys_and_bad_values_are_named():
    base = yaml.safe_load((CONFIGS / "quick.yaml").read_text())
    with pytest.raises(ValueError, match="learning_rate"):
        DistillConfig.from_dict({**base, "learning_rate": 1e-4})
    with pytest.raises(ValueError, match=r"loss\.ot\.epsilon"):
        DistillConfig.from_dict({**base, "loss": {"name": "ot", "ot": {"epsilon": 0.1}}})
    with pytest.raises(ValueError, match=r"loss\.ot: eps must be positive, got -1"):
        DistillConfig.from_dict({**base, "loss": {"ot": {"eps": -1}}})
    with pytest.raises(ValueError, match=r"loss\.ot: objective='plan_cost' with grad='envelope'"):
        DistillConfig.from_dict({**base, "loss": {"ot": {"objective": "plan_cost"}}})
    with pytest.raises(ValueError, match=r"loss\.ot\.marginals: 'special'"):
        DistillConfig.from_dict({**base, "loss": {"ot": {"marginals": "special"}}})
    with pytest.raises(ValueError, match="'ot2'"):
        DistillConfig.from_dict({**base, "loss": {"name": "ot2"}})
    with pytest.raises(ValueError, match="batch_size: expected an integer, got 'eight'"):
        DistillConfig.from_dict({**base, "batch_size": "eight"})
    with pytest.raises(ValueError, match="sampling: 'random'"):
        DistillConfig.from_dict({**base, "sampling": "random"})
    cfg = DistillConfig.from_dict({**base, "lr": "1e-4"})  # YAML 1.1 reads 1e-4 as a string
    assert cfg.lr == 1e-4


# ----------------------------------------------------------------------------- bad input


_tiny = tiny_distill_config  # tests/conftest.py: a few CPU steps on Yoruba FLORES bitext


@pytest.mark.parametrize(
    "change,error,match",
    [
        ({"languages": ["xx_Fake"]}, ValueError, "unknown language 'xx_Fake'"),
        ({"languages": ["yor_Latn"], "bitext_sources": ["nllb_seed"]}, ValueError, r"'yor_Latn'.*no bitext in \['nllb_seed'\]"),
        ({"teacher": "/nonexistent/teacher-model"}, FileNotFoundError, "teacher model directory /nonexistent/teacher-model"),
        ({"teacher": "no-such-model-anywhere"}, FileNotFoundError, "teacher model 'no-such-model-anywhere'"),
    ],
)
def test_bad_input_fails_before_training(tmp_path, data_root, change, error, match):
    out = tmp_path / "run"
    with pytest.raises(error, match=match):
        distill(_tiny(out, **change), root=data_root, progress=False)
    assert not out.exists()  # nothing was started


def test_empty_or_mismatched_bitext_is_rejected(tmp_path, data_root, monkeypatch):
    from optical_viz import data

    real = data.load_bitext

    def fake(kind):
        def load(lang, source="flores", split="train", root=None):
            bt = real(lang, source=source, split=split, root=root)
            if kind == "mismatch":
                bt.tgt = bt.tgt[:-3]
            else:
                bt.src, bt.tgt = [], []
            return bt

        return load

    monkeypatch.setattr(data, "load_bitext", fake("mismatch"))
    with pytest.raises(ValueError, match="701 source lines but 698 English lines"):
        distill(_tiny(tmp_path / "a"), root=data_root, progress=False)
    monkeypatch.setattr(data, "load_bitext", fake("empty"))
    with pytest.raises(ValueError, match="bitext of yor_Latn .* is empty"):
        distill(_tiny(tmp_path / "b"), root=data_root, progress=False)


@pytest.mark.slow  # ~25 s (make test-fast leaves it out)
def test_near_uniform_plans_are_reported(tmp_path, data_root):
    # eps far above the spread of the costs: the plan is nearly uniform, which makes the OT
    # loss pull every token to the mean; the trainer says so at the first step
    with pytest.warns(RuntimeWarning, match=r"nearly uniform .*loss.ot.eps=0.5"):
        wide = distill(_tiny(tmp_path / "wide", steps=1, loss={"ot": {"eps": 0.5}}), root=data_root, progress=False)
    assert wide.metrics[1]["ot_plan_entropy"] > 0.95
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        # Yoruba content tokens of 20-token sentences: eps 0.02 is already blurry (0.97), 0.005 is not
        sharp = distill(_tiny(tmp_path / "sharp", steps=1, loss={"ot": {"eps": 0.005, "eps_scaling": 0.5, "max_iter": 1000}}),
                        root=data_root, progress=False)
    assert sharp.metrics[1]["ot_plan_entropy"] < wide.metrics[1]["ot_plan_entropy"] - 0.05


@pytest.mark.slow  # 5 short trainings, ~30 s
@pytest.mark.parametrize(
    "ot",
    [
        {"objective": "entropic", "marginals": "uniform"},  # OPTICAL as run for results/full
        {"objective": "plan_cost", "grad": "unroll"},
        {"objective": "divergence", "eps": 0.01, "eps_scaling": 0.5},
        {"objective": "plan_cost", "plan": "emd"},
        {"objective": "divergence", "eps": 0.25, "eps_mode": "relative", "eps_scaling": 0.5},
    ],
    ids=["entropic", "plan_cost", "divergence", "emd", "relative"],
)
def test_every_ot_objective_trains_and_logs_its_convergence(tmp_path, data_root, ot):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no near-uniform plans, no unconverged problems
        # German, which e5 reads well: plans are sharp at these eps (Yoruba's are blurry at 0.02)
        cfg = _tiny(tmp_path / "run", steps=2, languages=["deu_Latn"], loss={"ot": {"max_iter": 1000, **ot}})
        run = distill(cfg, root=data_root, progress=False)
    for rec in run.metrics[1:]:
        assert np.isfinite(rec["loss_ot"]) and rec["ot_converged"] == 1.0
        assert 0 < rec["ot_plan_entropy"] < 0.95 and rec["ot_plan_cost"] > 0
        if ot.get("eps_mode") == "relative":  # 0.25 x the spread of e5's costs (~0.06)
            assert 0.005 < rec["ot_eps"] < 0.03
        else:
            assert rec["ot_eps"] == pytest.approx(0.0 if ot.get("plan") == "emd" else ot.get("eps", 0.02))
    if ot["objective"] == "plan_cost":  # the loss reported is <P, C> of the plan
        assert run.metrics[1]["loss_ot"] == pytest.approx(run.metrics[1]["ot_plan_cost"], rel=1e-5)
    assert DistillConfig.from_yaml(tmp_path / "run" / "config.yaml").loss.ot.objective == ot["objective"]


@pytest.mark.slow  # a short training, ~7 s
def test_unconverged_ot_problems_are_reported_once(tmp_path, data_root):
    with pytest.warns(RuntimeWarning, match=r"only \d+% of the OT problems converged .*max_iter=3") as record:
        run = distill(_tiny(tmp_path / "run", steps=2, loss={"ot": {"max_iter": 3, "eps": 0.005}}), root=data_root, progress=False)
    assert sum("OT problems converged" in str(w.message) for w in record) == 1
    assert all(r["ot_converged"] < 0.95 for r in run.metrics[1:])


# a speed-up that keeps the data order must keep the loss trajectory (issue 22)
TRAJECTORY_STEPS = 20
TRAJECTORY_ATOL = 1e-5


def _trajectories(tmp_path, data_root, old: dict, new: dict, **changes) -> tuple[list, list]:
    """The losses of TRAJECTORY_STEPS steps of the tiny config with ``old`` and with ``new``
    changes, the two trainers stepping in turn from the same model, batches and dropout masks."""
    from optical_viz.benchmarks.distill import step_in_turn
    from optical_viz.distill import load_training_data

    base = _tiny(tmp_path / "run", steps=TRAJECTORY_STEPS).replace(**changes)
    runs = step_in_turn({"old": base.replace(**old), "new": base.replace(**new)}, TRAJECTORY_STEPS,
                        corpora=load_training_data(base, root=data_root))
    return runs["old"]["loss"], runs["new"]["loss"]


@pytest.mark.slow  # 2 x 20 MSE steps, the top two layers trained (130 s on the loaded 2-core machine)
def test_skipping_activation_checkpointing_keeps_the_mse_trajectory(tmp_path, data_root):
    cfg = _tiny(tmp_path / "x").replace(loss="mse")
    assert not cfg.checkpointing()  # the default at this size: off
    old, new = _trajectories(tmp_path, data_root, {"gradient_checkpointing": True}, {"gradient_checkpointing": None},
                             loss="mse", train_layers=2)
    assert len(old) == TRAJECTORY_STEPS and old[0] != old[-1]  # it trained
    np.testing.assert_allclose(new, old, rtol=0, atol=TRAJECTORY_ATOL)


@pytest.mark.slow  # ~8 s: two models, MSE steps with and without checkpointing
def test_mse_recomputes_activations_only_where_memory_needs_it(tmp_path, data_root):
    from accelerate import Accelerator

    from optical_viz.distill import load_models, Trainer, load_training_data

    cfg = _tiny(tmp_path / "run")
    big = cfg.replace(batch_size=32, max_length=64)  # 4.8 GB peak for MSE without checkpointing
    assert [big.replace(loss=n).checkpointing() for n in ("ot", "contrastive", "mse", "ot+mse")] == [
        False, False, True, True]
    # the protocol's 16 x 48 (and this 4 x 20) fit without: checkpointing would only cost time
    assert [c.replace(loss=n).checkpointing() for c in (cfg, cfg.replace(batch_size=16, max_length=48))
            for n in ("mse", "ot+mse")] == [False] * 4
    assert not big.replace(loss="mse", gradient_checkpointing=False).checkpointing()
    assert cfg.replace(gradient_checkpointing=True).checkpointing()
    acc = Accelerator(cpu=True)
    models = load_models(cfg, acc.device)
    corpora = load_training_data(cfg, root=data_root)
    flags = []
    for name in ("mse", "ot", "mse"):  # one model, trainers of several losses (as the benchmark does)
        trainer = Trainer(cfg.replace(loss=name, gradient_checkpointing=None if name == "ot" else True), tmp_path,
                          corpora, models, acc)
        model = models.student.model
        new = hasattr(type(model), "is_activation_checkpointing")  # transformers >= 5
        flags.append(model.is_activation_checkpointing if new else model.is_gradient_checkpointing)
        trainer.train_step()  # trains with the layers wrapped (non-reentrant, frozen embeddings)
    assert flags == [True, False, True]


@pytest.mark.slow  # ~30 s (make test-fast leaves it out)
def test_bf16_after_fp32_in_one_process(tmp_path, data_root):
    # CPU autocast in bf16 (CUDA's usual precision); a second run in the same process may
    # change precision (accelerate keeps a process-wide state)
    fp32 = distill(_tiny(tmp_path / "fp32", steps=2), root=data_root, progress=False)
    bf16 = distill(_tiny(tmp_path / "bf16", steps=2, precision="bf16"), root=data_root, progress=False)
    a, b = [r["loss"] for r in fp32.metrics[1:]], [r["loss"] for r in bf16.metrics[1:]]
    assert a != b and np.allclose(a, b, rtol=0.02), (a, b)  # same batches, bf16 rounding


def test_existing_run_directory_is_never_overwritten(tmp_path, data_root):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--resume"):
        distill(_tiny(out), root=data_root, progress=False)
    assert (out / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- real runs


def _losses(records: list[dict]) -> list[dict]:
    """The deterministic part of the metrics (no timings)."""
    keep = lambda k: k in ("step", "eval") or k.startswith(LOSS_KEYS)
    out = [{k: v for k, v in r.items() if keep(k)} for r in records]
    for r in out:
        if "eval" in r:
            r["eval"] = [{k: v for k, v in row.items() if "time" not in k and "second" not in k} for row in r["eval"]]
    return out


@pytest.mark.slow  # ~25 s (make test-fast leaves it out)
def test_short_real_run_lowers_loss_and_raises_heldout_cosine(tmp_path, data_root, encoder, monkeypatch):
    import pandas as pd

    from optical_viz import data, retrieval
    from optical_viz.encoder import load_encoder

    # periodic evaluation is wired to retrieval.evaluate (tested by its own module; too slow
    # here): record the calls and check they are given the live student, uncached
    calls = []

    class Report:
        def __init__(self, frame):
            self.frame = frame

    def fake_evaluate(task, *, student, teacher, langs, split, root, cache, progress):
        calls.append((task, langs, split, cache, student.model.training))
        return Report(pd.DataFrame({"lang": langs, "direction": ["xx->en"], "n": [99], "recall@1": [0.5]}))

    monkeypatch.setattr(retrieval, "evaluate", fake_evaluate)
    out = tmp_path / "run"
    cfg = _tiny(out, steps=12, batch_size=8, max_length=32, lr=3e-4, train_layers=2, warmup_steps=2,
                checkpoint_every=100, eval={"heldout_sentences": 24, "every": 8, "split": "dev"})
    result = distill(cfg, root=data_root, progress=False)
    m = read_metrics(out)
    assert [r["step"] for r in m] == list(range(13)) and m == result.metrics
    assert calls == [("flores", ["yor_Latn"], "dev", False, False)] * 2  # steps 8 and 12 (the end)
    assert [r["step"] for r in m if "eval" in r] == [8, 12]
    assert m[8]["eval"] == [{"lang": "yor_Latn", "direction": "xx->en", "n": 99, "recall@1": 0.5}]
    before, after = m[0]["heldout_cosine"], m[-1]["heldout_cosine"]
    assert after > before + 0.01, (before, after)
    for r in (m[0], m[-1]):  # one language: the means are its values
        assert r["translation_gap"] == r["translation_gap_by_lang"]["yor_Latn"] > 0
        assert 0 < r["dev_recall@1"] == r["dev_recall@1_by_lang"]["yor_Latn"] <= 1
    losses = [r["loss_ot"] for r in m[1:]]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.01, losses
    assert m[1]["lr"] == pytest.approx(3e-4 / 3) and m[3]["lr"] == pytest.approx(3e-4)  # warm-up
    assert all(r["examples_per_s"] > 0 and r["ot_converged"] >= 0 for r in m[1:])
    assert m[1]["teacher_cache_hit"] == 0 and all(0 <= r["teacher_cache_hit"] <= 1 for r in m[1:])
    assert 0 < m[1]["ot_plan_entropy"] < 0.95  # default eps, untrained student: plans not near-uniform
    saved = DistillConfig.from_yaml(out / "config.yaml")
    assert saved == cfg.replace(output_dir=str(out))
    # the final student is a model directory that load_encoder opens, with what it was trained on
    info = json.loads((result.student_dir / "optical_viz_training.json").read_text())
    assert info["languages"] == ["yor_Latn"] and info["bitext_sources"] == ["flores"]
    assert info["loss"] == "ot" and info["steps"] == 12 and info["prefix"] == "query: "
    student = load_encoder(result.student_dir)
    teacher = encoder  # the default model, as the run's teacher
    yo = data.load_flores("yor_Latn", split="dev", root=data_root).texts[:24]
    en = data.load_flores("eng_Latn", split="dev", root=data_root).texts[:24]
    cos = (student.embed_sentences(yo, prefix="query: ") * teacher.embed_sentences(en)).sum(-1).mean()
    assert float(cos) == pytest.approx(after, abs=1e-5)
    from optical_viz.distill import heldout_scores

    final = heldout_scores(student.embed_sentences(yo, prefix="query: "), teacher.embed_sentences(en))
    assert final.translation_gap == pytest.approx(m[-1]["translation_gap"], abs=1e-5)
    assert final.recall_at_1 == m[-1]["dev_recall@1"]
    assert not latest_checkpoint(out) is None


@pytest.mark.slow  # ~30 s: a run, its snapshot, an interruption and a resume
def test_snapshots_are_model_directories_written_once(tmp_path, data_root, encoder):
    """snapshots [2]: RUN/student-step-2/ loads with load_encoder and embeds as the step-2
    checkpoint's weights do; a run resumed past step 2 leaves it alone."""
    import torch
    from safetensors.torch import load_file

    from optical_viz import data
    from optical_viz.encoder import load_encoder

    out = tmp_path / "run"
    cfg = _tiny(out, steps=4, snapshots=[2], dropout=0.0)
    first = distill(cfg, root=data_root, progress=False, max_steps=3)
    snap = out / "student-step-2"
    assert first.student_dir is None and (snap / "model.safetensors").is_file() and (snap / "modules.json").is_file()
    assert json.loads((snap / "optical_viz_training.json").read_text())["steps"] == 2
    texts = data.load_flores("yor_Latn", split="dev", root=data_root).texts[:4]
    got = load_encoder(snap).embed_sentences(texts)  # (4, H)
    initial = encoder.embed_sentences(texts)  # the default model, the run's starting point
    # the initial model with the step-2 checkpoint's trained tensors (restored afterwards:
    # the encoder fixture is shared)
    params = dict(encoder.model.named_parameters())
    trained = load_file(str(out / "checkpoints" / "step-2" / "student.safetensors"))
    saved = {name: params[name].detach().clone() for name in trained}
    try:
        with torch.no_grad():
            for name, t in trained.items():
                params[name].copy_(t)
        expected = encoder.embed_sentences(texts)
    finally:
        with torch.no_grad():
            for name, t in saved.items():
                params[name].copy_(t)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert not np.allclose(got, initial, atol=1e-4)  # it trained
    written = (snap / "model.safetensors").stat().st_mtime_ns
    done = distill(cfg, resume=True, root=data_root, progress=False)  # from checkpoint step-3
    assert done.steps == 4 and (snap / "model.safetensors").stat().st_mtime_ns == written
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("student")) == ["student", "student-step-2"]
    # finished: only the last checkpoint stays (to extend the run); step-3 was ~0.25 GB of disk
    assert [p.name for p in list_checkpoints(out)] == ["step-4"]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data_root, default_model_dir):
    """An uninterrupted tiny run (dropout on, so that the RNG state matters)."""
    out = tmp_path_factory.mktemp("distill") / "reference"
    cfg = _tiny(out, steps=6, loss={"name": "ot+contrastive"})
    distill(cfg, root=data_root, progress=False)
    return cfg, read_metrics(out)


@pytest.mark.slow  # ~20 s with its reference run (make test-fast leaves it out)
def test_resume_gives_the_metrics_of_an_uninterrupted_run(tmp_path, data_root, reference_run):
    cfg, expected = reference_run
    out = tmp_path / "run"
    cfg = cfg.replace(output_dir=str(out))
    first = distill(cfg, root=data_root, progress=False, max_steps=3)
    assert first.student_dir is None and first.steps == 3
    # simulate a kill after step 3 was logged but before its checkpoint was complete
    import shutil

    shutil.rmtree(out / "checkpoints" / "step-3")
    assert read_metrics(out)[-1]["step"] == 3
    with pytest.raises(ValueError, match="batch_size"):  # the config must be the same
        distill(cfg.replace(batch_size=6), resume=True, root=data_root, progress=False)
    result = distill(cfg, resume=True, root=data_root, progress=False)
    assert result.steps == 6 and result.student_dir.is_dir()
    assert _losses(read_metrics(out)) == _losses(expected)


def _cli(*args, env_extra=None, data_root=None):
    env = {**os.environ, "OPTICAL_VIZ_DATA": str(data_root), "PYTHONPATH": str(REPO), **(env_extra or {})}
    return [sys.executable, "-m", "optical_viz.cli", "distill", *map(str, args)], env


@pytest.mark.slow
def test_kill_then_resume_from_the_command_line(tmp_path, data_root, reference_run):
    cfg, expected = reference_run
    out = tmp_path / "run"
    cfg_path = tmp_path / "cfg.yaml"
    cfg.replace(checkpoint_every=1).to_yaml(cfg_path)
    cmd, env = _cli(cfg_path, "--out", out, "--quiet", data_root=data_root)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while not (out / "checkpoints" / "step-2").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:]
    assert not (out / "student").exists()
    # a fresh start in the same directory is refused, --resume continues
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "already exists" in res.stderr
    res = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    # a fresh interpreter may pick other CPU kernels than the long-lived test process
    # (float32 rounding, ~1e-7 relative); within one process the match is exact (test above)
    resumed, reference = _losses(read_metrics(out)), _losses(expected)
    assert [r["step"] for r in resumed] == [r["step"] for r in reference]
    flat = lambda r: {f"{k}/{kk}": vv for k, v in r.items() for kk, vv in (v.items() if isinstance(v, dict) else [("", v)])}
    for got, want in zip(resumed, reference):
        assert flat(got) == pytest.approx(flat(want), rel=1e-5, abs=1e-7), (got, want)
    assert (out / "student" / "optical_viz_training.json").is_file()


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, data_root, default_model_dir):
    """`accelerate launch --num_processes 2 --cpu`: each process takes half of every batch;
    without dropout the averaged gradients equal the single-process ones."""
    cfg = _tiny(tmp_path / "one", steps=3, dropout=0.0, batch_size=4)
    one = distill(cfg, root=data_root, progress=False)
    cfg_path = tmp_path / "cfg.yaml"
    cfg.to_yaml(cfg_path)
    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [str(accelerate), "launch", "--num_processes", "2", "--cpu", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "optical_viz.cli", "distill", str(cfg_path), "--out", str(tmp_path / "two"), "--quiet"]
    env = {**os.environ, "OPTICAL_VIZ_DATA": str(data_root), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    two = read_metrics(tmp_path / "two")
    assert [r["step"] for r in two] == [0, 1, 2, 3]  # written once, by the main process
    for a, b in zip(_losses(one.metrics), _losses(two)):
        for k in a:
            if k != "step" and not isinstance(a[k], dict):
                assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), (k, a, b)
    assert (tmp_path / "two" / "student" / "model.safetensors").is_file()


def test_loss_override_keeps_only_matching_weights():
    base = yaml.safe_load((CONFIGS / "quick.yaml").read_text())
    cfg = DistillConfig.from_dict({**base, "loss": {"name": "ot+contrastive", "weights": {"contrastive": 0.5}}})
    assert cfg.loss.term_weights() == {"ot": 1.0, "contrastive": 0.5}
    assert cfg.replace(loss="mse").loss.term_weights() == {"mse": 1.0}
    assert cfg.replace(loss="contrastive").loss.term_weights() == {"contrastive": 0.5}


def test_read_metrics_tolerates_a_line_cut_by_a_kill(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n{"step": 1, "loss": 0.5}\n{"step": 2, "lo')
    assert read_metrics(tmp_path) == [{"step": 0}, {"step": 1, "loss": 0.5}]
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n{"ste\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2: expected one JSON object per line"):
        read_metrics(tmp_path)


# ----------------------------------------------------------------------------- careless hands (issue 14)


def test_a_run_directory_in_use_is_refused(tmp_path, data_root):
    """Bug 1: a second run on a directory that a live process holds is refused, naming its pid."""
    from optical_viz.rundir import RunLock, RunLockedError

    out = tmp_path / "run"
    with RunLock(out):  # this test process is the holder (flock: another open of the file is refused)
        for resume in (False, True):
            with pytest.raises(RunLockedError, match=rf"{out} is in use .*pid {os.getpid()}\b.*--out"):
                distill(_tiny(out, steps=1), resume=resume, root=data_root, progress=False)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing was written
    assert not out.exists()  # the lock created the directory and removed it, still empty


@pytest.mark.slow
def test_concurrent_and_killed_runs_from_the_command_line(tmp_path, data_root, default_model_dir):
    """Bug 1 end to end: `distill --out SAME` twice at once: the second exits 2 naming the first's
    pid; once the first is killed, its stale lock is taken over by --resume, and the metrics hold
    every step once."""
    out = tmp_path / "run"
    cfg_path = tmp_path / "cfg.yaml"
    _tiny(out, steps=3, checkpoint_every=1).to_yaml(cfg_path)
    cmd, env = _cli(cfg_path, "--out", out, "--quiet", data_root=data_root, env_extra={"OMP_NUM_THREADS": "1"})
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while first.poll() is None and time.time() < deadline and str(first.pid) not in _text(out / ".lock"):
        time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)  # paused while it holds the directory
    try:
        assert first.poll() is None, first.stdout.read().decode()[-2000:]
        for extra in ([], ["--resume"]):
            second = subprocess.run([*cmd, *extra], env=env, capture_output=True, text=True, timeout=300)
            assert second.returncode == 2, second.stderr[-2000:]
            assert f"is in use by another process (optical-viz distill, pid {first.pid}" in second.stderr
            assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the killed run's lock is taken over; Ctrl-C then stops the resumed run with the way on
    third = subprocess.Popen([*cmd, "--resume"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    deadline = time.time() + 240
    while third.poll() is None and time.time() < deadline and not (out / "checkpoints" / "step-1").is_dir():
        time.sleep(0.05)
    third.send_signal(signal.SIGINT)
    _, err = third.communicate(timeout=120)
    assert f"took over the lock of a run that is no longer running (pid {first.pid}" in err
    assert third.returncode == 130, err[-3000:]
    assert f"interrupted; continue with: optical-viz distill {cfg_path} --out {out} --resume" in err
    assert "Traceback" not in err
    res = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "took over" not in res.stderr  # the interrupted run released its lock
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2, 3]
    assert not (out / ".lock").exists()


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory, data_root, reference_run):
    """The reference run stopped at step 4: checkpoints step-2 and step-4."""
    cfg, expected = reference_run
    out = tmp_path_factory.mktemp("interrupted") / "run"
    cfg = cfg.replace(output_dir=str(out))
    distill(cfg, root=data_root, progress=False, max_steps=4)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2", "step-4"]
    return cfg, out, expected


def _damage(path: Path, how: str) -> None:
    if how == "truncate":
        with path.open("r+b") as f:
            f.truncate(path.stat().st_size // 2)
    else:  # a corrupt JSON file (a stray editor save)
        path.write_text(path.read_text() + "\n}\n")


@pytest.mark.parametrize(
    "name,how",
    [("student.safetensors", "truncate"), ("optimizer.pt", "truncate"), ("trainer_state.json", "corrupt")],
)
@pytest.mark.slow  # ~30 s with the interrupted run it copies (make test-fast stays under 3 min)
def test_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path, data_root, interrupted_run, name, how):
    """Bug 2 (and bug 4's trainer_state.json): a damaged step-4 is reported by file and step-2 used."""
    import shutil

    cfg, src, expected = interrupted_run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    cfg = cfg.replace(output_dir=str(out))
    _damage(out / "checkpoints" / "step-4" / name, how)
    with pytest.warns(RuntimeWarning, match=rf"step-4 is damaged: {name} is damaged.*\n.*previous intact checkpoint .*step-2"):
        result = distill(cfg, resume=True, root=data_root, progress=False, max_steps=3)
    assert result.steps == 3
    assert _losses(read_metrics(out)) == _losses(expected)[:4]  # steps 0-3, as uninterrupted


@pytest.mark.slow  # shares the interrupted run (~20 s) of the test above
def test_no_intact_checkpoint_is_a_clear_error(tmp_path, data_root, interrupted_run):
    import shutil

    cfg, src, _ = interrupted_run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    _damage(out / "checkpoints" / "step-4" / "optimizer.pt", "truncate")
    _damage(out / "checkpoints" / "step-2" / "trainer_state.json", "corrupt")
    with pytest.raises(ValueError, match=r"no intact checkpoint in .*checkpoints: step-4: optimizer.pt is damaged.*step-2: trainer_state.json is damaged.*"):
        distill(cfg.replace(output_dir=str(out)), resume=True, root=data_root, progress=False)
    assert (out / "checkpoints" / "step-2").is_dir()  # nothing deleted: the user decides
