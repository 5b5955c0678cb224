"""The distillation engine: config, sampler, bad input, a short real run, resume, 2 processes.

CPU time is scarce: every run here freezes the embedding table, uses batches of 4-8,
short max lengths and a handful of steps.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from optical_viz.distill import BitextSampler, Corpus, DistillConfig, distill, latest_checkpoint, read_metrics

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
RQ2 = ["rq2-5", "rq2-10", "rq2-20", "rq2-50"]
LOSS_KEYS = ("loss", "loss_ot", "loss_contrastive", "loss_mse", "heldout_cosine")


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
    unseen = yaml.safe_load((CONFIGS / "rq2-unseen.yaml").read_text())["unseen_languages"]
    assert len(unseen) == len(set(unseen)) == 20
    assert set(unseen) <= flores and not set(unseen) & set(sets[-1])


def test_unknown_keys_and_bad_values_are_named():
    base = yaml.safe_load((CONFIGS / "quick.yaml").read_text())
    with pytest.raises(ValueError, match="learning_rate"):
        DistillConfig.from_dict({**base, "learning_rate": 1e-4})
    with pytest.raises(ValueError, match=r"loss\.ot\.epsilon"):
        DistillConfig.from_dict({**base, "loss": {"name": "ot", "ot": {"epsilon": 0.1}}})
    with pytest.raises(ValueError, match=r"loss\.ot\.eps must be > 0, got -1"):
        DistillConfig.from_dict({**base, "loss": {"ot": {"eps": -1}}})
    with pytest.raises(ValueError, match="'ot2'"):
        DistillConfig.from_dict({**base, "loss": {"name": "ot2"}})
    with pytest.raises(ValueError, match="batch_size: expected an integer, got 'eight'"):
        DistillConfig.from_dict({**base, "batch_size": "eight"})
    with pytest.raises(ValueError, match="sampling: 'random'"):
        DistillConfig.from_dict({**base, "sampling": "random"})
    cfg = DistillConfig.from_dict({**base, "lr": "1e-4"})  # YAML 1.1 reads 1e-4 as a string
    assert cfg.lr == 1e-4


# ----------------------------------------------------------------------------- sampler


def _corpora():
    return [Corpus("aaa_Latn", ["x"], [f"a{i}" for i in range(7)], [f"A{i}" for i in range(7)]),
            Corpus("bbb_Latn", ["x"], [f"b{i}" for i in range(30)], [f"B{i}" for i in range(30)])]


def test_sampler_is_deterministic_resumable_and_covers_epochs():
    s = BitextSampler(_corpora(), batch_size=6, seed=3, sampling="uniform", temperature=1.0)
    batches = [s.next_batch() for _ in range(20)]
    s2 = BitextSampler(_corpora(), batch_size=6, seed=3, sampling="uniform", temperature=1.0)
    for _ in range(8):
        s2.next_batch()
    state = json.loads(json.dumps(s2.state_dict()))
    s3 = BitextSampler(_corpora(), batch_size=6, seed=3, sampling="uniform", temperature=1.0)
    s3.load_state_dict(state)
    assert [s3.next_batch() for _ in range(12)] == batches[8:]
    # within an epoch a language's examples come without replacement
    a = [src for b in batches for lang, src, _ in b if lang == "aaa_Latn"]
    assert len(a) >= 14 and sorted(a[:7]) == sorted(f"a{i}" for i in range(7)) == sorted(a[7:14])
    assert all(src[1:] == tgt[1:] for b in batches for _, src, tgt in b)  # pairs stay aligned


def test_sampler_language_probabilities():
    uni = BitextSampler(_corpora(), 4, 0, "uniform", 1.0).probs
    prop = BitextSampler(_corpora(), 4, 0, "proportional", 1.0).probs
    temp = BitextSampler(_corpora(), 4, 0, "temperature", 5.0).probs
    np.testing.assert_allclose(uni, [0.5, 0.5])
    np.testing.assert_allclose(prop, [7 / 37, 30 / 37])
    ref = np.array([7, 30]) ** 0.2
    np.testing.assert_allclose(temp, ref / ref.sum())
    s = BitextSampler(_corpora(), 8, 1, "proportional", 1.0)
    langs = [l for _ in range(500) for l, _, _ in s.next_batch()]
    assert abs(langs.count("bbb_Latn") / len(langs) - 30 / 37) < 0.02


# ----------------------------------------------------------------------------- bad input


def _tiny(out, **kw) -> DistillConfig:
    """A few steps of Yoruba FLORES bitext: batch 4, 20 tokens, only the top layer trains."""
    base = dict(
        languages=["yor_Latn"], bitext_sources=["flores"], steps=4, batch_size=4, max_length=20,
        warmup_steps=1, lr=1e-4, train_layers=1, checkpoint_every=2, device="cpu",
        eval={"heldout_sentences": 8}, output_dir=str(out),
    )
    base.update(kw)
    return DistillConfig.from_dict(base)


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


def test_existing_run_directory_is_never_overwritten(tmp_path, data_root):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--resume"):
        distill(_tiny(out), root=data_root, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
