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
