"""Shared fixtures. Missing data or a missing model is an error, never a skip:
CI must fail loudly when either is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI explores the same examples on every run (no database in a fresh clone); locally,
# hypothesis keeps exploring at random and remembers failures in .hypothesis/
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
# the command-line tests run `optical-viz` in subprocesses: they read $OPTICAL_VIZ_DATA, which
# `make test` exports; a bare `pytest` beside ../shared gets the same data root
if (SHARED / "data" / "README.md").is_file():
    os.environ.setdefault("OPTICAL_VIZ_DATA", str(SHARED / "data"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data sets (``$OPTICAL_VIZ_DATA``, else ``../shared/data``)."""
    env = os.environ.get("OPTICAL_VIZ_DATA")
    root = Path(env) if env else SHARED / "data"
    if not (root / "README.md").is_file():
        pytest.fail(
            f"data root {root} is missing: set OPTICAL_VIZ_DATA to the folder of the data sets "
            "(../shared/data) or run `optical-viz data fetch all`",
            pytrace=False,
        )
    return root


@pytest.fixture(scope="session")
def reference_tokenizer_path() -> Path:
    path = SHARED / "reference" / "multilingual-e5-small.tokenizer.json"
    if not path.is_file():
        pytest.fail(f"reference tokenizer {path} is missing", pytrace=False)
    return path


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The converted default model; built by `optical-viz model build` (make setup)."""
    from optical_viz.convert import default_model_path

    path = default_model_path()
    if not (path / "config.json").is_file():
        pytest.fail(
            f"the default model is not built at {path}: run `optical-viz model build` (or `make setup`)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def encoder(default_model_dir):
    """The default encoder, loaded once per test session."""
    from optical_viz.encoder import load_encoder

    return load_encoder(default_model_dir)



@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A model directory that loads and trains in a fraction of a second: BERT with 2 layers
    of 16 dimensions and seeded random weights, MiniLM's WordPiece tokenizer. For tests of
    the plumbing around a model (provenance, files, names), not of what it computes."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from optical_viz.encoder import minilm_model_dir

    path = tmp_path_factory.mktemp("models") / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_model_dir()).save_pretrained(path)
    return path


# the default model's architecture at a size that trains in seconds on one CPU thread
TINY_SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def _tiny_twin(model_dir: Path, path: Path) -> Path:
    """A copy of the model directory ``model_dir`` at ``path`` with its config at
    ``TINY_SIZES`` and seeded random weights; tokenizer and sentence-transformers files kept."""
    import json
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    model_dir = Path(model_dir)
    skip = {"config.json", "model.safetensors", "model.safetensors.sha256", "optical_viz_build.json",
            "pytorch_model.bin", "README.md"}
    shutil.copytree(model_dir, path,
                    ignore=lambda folder, names: [n for n in names if n in skip and Path(folder) == model_dir])
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg.update(TINY_SIZES)
    torch.manual_seed(0)
    BertModel(BertConfig.from_dict(cfg), add_pooling_layer=False).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_e5_dir(tmp_path_factory, default_model_dir) -> Path:
    """The default model's twin at a tiny size: its config (BERT, XLM-R's 250k SentencePiece
    vocabulary, 512 positions) with ``TINY_SIZES`` (2 layers of 32 dimensions) and seeded
    random weights, its tokenizer and its sentence-transformers files (mean pooling, the
    "query: " prompt). 33 MB of weights instead of 470; a distill step takes milliseconds.

    For the plumbing of training (run loop, resume, checkpoints, interruption, metrics, CLI
    wiring): what happens to the model's numbers is not the point of those tests."""
    return _tiny_twin(default_model_dir, tmp_path_factory.mktemp("models") / "tiny-e5")


@pytest.fixture(scope="session")
def tiny_minilm_dir(tmp_path_factory) -> Path:
    """all-MiniLM-L6-v2's twin at ``TINY_SIZES`` (English WordPiece, no prompt, random
    weights): with ``tiny_e5_dir``, a cross-model pair (two tokenizers, one hidden size) as
    MiniLM and e5 are, for the plumbing of cross-model distillation."""
    from optical_viz.encoder import minilm_model_dir

    return _tiny_twin(minilm_model_dir(), tmp_path_factory.mktemp("models") / "tiny-minilm")


def tiny_e5_config(out, model_dir, **changes):
    """:func:`tiny_distill_config` with the tiny twin of the default model (``tiny_e5_dir``) as
    teacher and student."""
    return tiny_distill_config(out, teacher=str(model_dir), student=str(model_dir), **changes)

def tiny_distill_config(out, **changes):
    """A DistillConfig of a few CPU steps on Yoruba FLORES bitext, writing to ``out``: 4 steps
    of batch 4 at 20 tokens, only the top layer trains, a checkpoint every 2 steps, 8 held-out
    sentences; ``changes`` replace top-level keys. One torch thread: on a shared 2-core
    machine two threads stall on every parallel op.

    A plain function (tests import it: ``from conftest import tiny_distill_config``), since
    the tests call it with different changes.
    """
    from optical_viz.distill import DistillConfig

    base = dict(
        languages=["yor_Latn"], bitext_sources=["flores"], steps=4, batch_size=4, max_length=20,
        warmup_steps=1, lr=1e-4, train_layers=1, checkpoint_every=2, device="cpu", num_threads=1,
        precision="fp32",  # not "auto": the same numbers on a CPU with native bf16 and without
        eval={"heldout_sentences": 8}, output_dir=str(out),
    )
    base.update(changes)
    return DistillConfig.from_dict(base)
