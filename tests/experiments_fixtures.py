"""A tiny default model for the plumbing tests of the experiments (stages, resume, pruning,
selection, sharding, reports): the architecture of the converted multilingual-e5-small (BERT,
12 layers, its 250k-token tokenizer and sentence-transformers files) at 16 dimensions with
seeded random weights, installed as the default model of a private ``OPTICAL_VIZ_HOME``.

Every protocol run then trains and scores in well under a second, and the real model's
embedding cache is never touched (the cache lives under ``OPTICAL_VIZ_HOME`` too). Not for
tests whose point is the real model's numbers.

    from experiments_fixtures import tiny_home, tiny_home_dir  # noqa: F401  (fixtures: import both)

    def test_x(tiny_home): ...                  # OPTICAL_VIZ_HOME points at it for the test
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

TINY = dict(hidden_size=16, num_attention_heads=2, intermediate_size=32)  # 12 layers, as e5-small


@pytest.fixture(scope="session")
def tiny_home_dir(tmp_path_factory, default_model_dir) -> Path:
    """An ``OPTICAL_VIZ_HOME`` whose default model is e5-small's architecture at 16 dimensions."""
    import torch
    from transformers import BertConfig, BertModel

    from optical_viz import convert

    home = tmp_path_factory.mktemp("tiny-home")
    out = home / "models" / convert.DEFAULT_MODEL_NAME
    # the weights and the top-level config.json are replaced; 1_Pooling/config.json (mean pooling) stays
    shutil.copytree(default_model_dir, out, ignore=lambda d, names: [
        n for n in names if n.startswith("model.safetensors") or (n == "config.json" and Path(d) == default_model_dir)])
    config = json.loads((default_model_dir / "config.json").read_text()) | TINY
    torch.manual_seed(0)
    BertModel(BertConfig(**config), add_pooling_layer=False).save_pretrained(out)
    assert BertConfig.from_pretrained(out).num_hidden_layers == 12
    return home


@pytest.fixture
def tiny_home(tiny_home_dir, monkeypatch) -> Path:
    """:func:`tiny_home_dir` as ``OPTICAL_VIZ_HOME`` for one test."""
    monkeypatch.setenv("OPTICAL_VIZ_HOME", str(tiny_home_dir))
    return tiny_home_dir
