"""The protocol's scale probe: term weights that give every term of a combined loss the
magnitude of a reference term, measured before any update (no retrieval, no dev score)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from optical_viz.config import DistillConfig
from optical_viz.protocol import Protocol
from optical_viz.rundir import atomic_write


def probe_reference(p: Protocol, loss: str) -> str:
    """The term of ``loss`` that keeps weight 1 (``scale_probe.reference_term``)."""
    refs = p.scale_probe.reference_term
    if loss not in refs:
        raise ValueError(f"the protocol's scale_probe names no reference term for loss {loss!r}")
    return refs[loss]


def scale_probe_weights(config: DistillConfig, reference: str, batches: int, root=None, cache: Path | None = None) -> dict:
    """Term weights that give every term of ``config.loss`` the magnitude of ``reference``:
    ``w_t = mean(reference) / mean(t)`` over the first ``batches`` training batches of the
    seed-0 data order, before any update (the protocol's scale probe). Cached in ``cache``
    (a JSON file, keyed by the config's loss and languages) so every run of a stage reuses it."""
    from optical_viz.distill import build_trainer  # torch and the models only when a probe runs

    key = json.dumps({"loss": config.loss.name, "ot": dataclasses.asdict(config.loss.ot),
                      "contrastive": dataclasses.asdict(config.loss.contrastive), "languages": config.languages,
                      "batch_size": config.batch_size, "max_length": config.max_length, "batches": batches}, sort_keys=True)
    known = json.loads(cache.read_text()) if cache is not None and cache.is_file() else {}
    if key in known:
        return known[key]["weights"]
    import torch

    probe = dataclasses.replace(config, seed=0)
    trainer = build_trainer(probe, root=root)
    sums: dict[str, float] = {}
    with torch.no_grad():
        for _ in range(batches):
            terms = trainer.compute_loss(trainer.sampler.next_batch()).terms
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value) / batches
    if reference not in sums:
        raise ValueError(f"scale probe: the reference term {reference!r} is not a term of loss {config.loss.name!r}")
    weights = {name: sums[reference] / value for name, value in sums.items()}
    if cache is not None:
        known[key] = {"term_means": sums, "weights": weights}
        atomic_write(cache, json.dumps(known, indent=1, sort_keys=True) + "\n")
    return weights
