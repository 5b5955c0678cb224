"""Where optical_viz keeps things: the cache home and the data root.

``OPTICAL_VIZ_HOME`` (default ``~/.cache/optical_viz``) holds converted models
(``models/``) and the embedding cache (``embeddings/``).
``OPTICAL_VIZ_DATA`` (default ``data/`` in the repository) is the data root that
holds the sets described in ``data/README.md``.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# written by optical_viz.distill inside RUN/student/; read by load_encoder and the retrieval defaults
TRAINING_INFO = "optical_viz_training.json"


def home() -> Path:
    """The cache folder: ``$OPTICAL_VIZ_HOME`` or ``~/.cache/optical_viz``."""
    env = os.environ.get("OPTICAL_VIZ_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "optical_viz"


def models_dir() -> Path:
    """Folder of converted model directories, one per model."""
    return home() / "models"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$OPTICAL_VIZ_DATA``, else ``data/`` in the repository."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("OPTICAL_VIZ_DATA")
    return Path(env).expanduser() if env else REPO_ROOT / "data"
