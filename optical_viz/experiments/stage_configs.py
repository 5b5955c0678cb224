"""The distill config of every protocol run: a question's run config (``configs/rq1.yaml``,
``configs/rq2-N.yaml``) with the protocol's schedule, limits and overrides
(:func:`base_config`), then a setting's loss, hyperparameters and seed (:func:`setting_config`)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from optical_viz import paths
from optical_viz.config import DistillConfig, deep_merge, load_yaml
from optical_viz.experiments.settings import Setting
from optical_viz.protocol import OT_FIELDS, Protocol

RQ1_CONFIG = "configs/rq1.yaml"


def base_config(p: Protocol, config_path: str | os.PathLike, n_languages: int | None) -> DistillConfig:
    """The run config at ``config_path`` (relative to the repository) with the protocol's
    training schedule, its first ``n_languages`` languages (and at most ``limits.max_languages``),
    the dev checkpoints as snapshots and ``distill_overrides``."""
    base = DistillConfig.from_yaml(paths.REPO_ROOT / config_path)
    limit = p.limits.max_languages
    n = min(x for x in (n_languages, limit, len(base.languages)) if x is not None)
    t = p.training
    checkpoints = p.checkpoints
    every = int(np.gcd.reduce(checkpoints))  # the monitor logs at every checkpoint
    changes = {
        "languages": base.languages[:n], "steps": t.steps, "warmup_steps": t.warmup_steps,
        "batch_size": t.batch_size, "max_length": t.max_length, "lr": t.lr,
        "snapshots": [c for c in checkpoints if c < t.steps],
        "eval": {"heldout_every": every}, **p.distill_overrides,
    }
    return DistillConfig.from_dict(deep_merge(base.to_dict(), changes))


def rq2_base_config(p: Protocol, size: int) -> DistillConfig:
    """The RQ2 run config of ``size`` training languages (``splits.rq2.sizes``)."""
    return base_config(p, p.splits.rq2.sizes[size], size)


def setting_config(base: DistillConfig, s: Setting, seed: int, output_dir: Path, weights: dict | None) -> DistillConfig:
    """``base`` with the setting's loss, hyperparameters and seed."""
    q = s.p
    loss: dict = {"name": q["loss"], "weights": weights or {}}
    if "objective" in q:
        loss["ot"] = {k: q[k] for k in OT_FIELDS}
    if "temperature" in q:
        loss["contrastive"] = {"temperature": q["temperature"]}
    d = deep_merge(base.to_dict(), {"loss": loss, "lr": q["lr"], "seed": seed, "output_dir": str(output_dir)})
    return DistillConfig.from_dict(d)


def unseen_languages(p: Protocol) -> list[str]:
    """The RQ2 languages no run trains on (``splits.rq2.unseen.config``; at most ``limits.max_unseen``)."""
    langs = load_yaml(paths.REPO_ROOT / p.splits.rq2.unseen.config, what="language list")["unseen_languages"]
    return list(langs)[: p.limits.max_unseen]
