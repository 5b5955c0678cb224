"""The configurations a protocol tries: :class:`Setting` (a method, its variant, its
hyperparameters) and the dev configurations of each tuning stage, in the protocol's order.

>>> from optical_viz.protocol import load_stage_protocol
>>> [s.run_key for s in dev_settings(load_stage_protocol("quick"), "rq1")][:2]
['ot-published-lr0.0001', 'ot-middle_layer_sentence-lr0.0001']
"""
from __future__ import annotations

import dataclasses
import itertools

from optical_viz.protocol import OT_FIELDS, OTVariant, Protocol

# the hyperparameters a configuration may set, in tuning.csv's column order
HYPERPARAMETERS = ("loss", "lr", "temperature", *OT_FIELDS, "weights")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One trained configuration: a method, the name of its variant and its hyperparameters.

    params: ``loss`` (the loss name), ``lr``, ``temperature`` (contrastive), the OT fields
    of :data:`optical_viz.protocol.OT_FIELDS` and ``weights`` ("scale_probe" or None).
    """

    method: str
    variant: str
    params: tuple  # sorted (key, value) pairs: hashable, and equal settings compare equal

    @classmethod
    def make(cls, method: str, variant: str, **params) -> "Setting":
        return cls(method, variant, tuple(sorted(params.items())))

    @property
    def p(self) -> dict:
        return dict(self.params)

    @property
    def label(self) -> str:
        """The setting within its method: ``published-lr0.0001``, ``t0.05-lr0.0002``, ``lr0.0001``."""
        return f"{self.variant}-lr{self.p['lr']:g}" if self.variant else f"lr{self.p['lr']:g}"

    @property
    def run_key(self) -> str:
        """The configuration's part of a run id: ``ot-published-lr0.0001``, ``mse-lr0.0001``."""
        return f"{self.method}-{self.label}"


def ot_setting(variant: str, v: OTVariant, lr: float) -> Setting:
    """The OT variant ``variant`` of the protocol at learning rate ``lr``."""
    return Setting.make("ot", variant, loss=v.loss, lr=float(lr), weights=v.weights, **v.ot)


def published_setting(p: Protocol) -> Setting:
    """OT as published: the ``published`` variant at the stage-1 learning rate."""
    ot = p.tuning.rq1.ot
    return ot_setting("published", ot.variants["published"], ot.lr)


def dev_settings(p: Protocol, question: str, winners: dict | None = None) -> list[Setting]:
    """The dev configurations of a stage, in the protocol's order (ties go to the first).

    question: "rq1" (stage 1: OT variants at the base lr, contrastive grid, MSE grid),
    "rq1-dev2" (the OT stage-1 winner at the stage-2 lrs; needs ``winners["ot-stage1"]``).
    """
    t = p.tuning.rq1
    if question == "rq1":
        out = [ot_setting(name, v, t.ot.lr) for name, v in t.ot.variants.items()]
        grid = t.contrastive.grid
        out += [Setting.make("contrastive", f"t{temp:g}", loss="contrastive", lr=float(lr), temperature=float(temp))
                for temp, lr in itertools.product(grid["temperature"], grid["lr"])]
        out += [Setting.make("mse", "", loss="mse", lr=float(lr)) for lr in t.mse.grid["lr"]]
        return out
    if question == "rq1-dev2":
        best = winners["ot-stage1"]
        return [dataclasses.replace(best, params=tuple(sorted({**best.p, "lr": float(lr)}.items())))
                for lr in t.ot.stage2_lr]
    raise ValueError(f"no dev settings for {question!r}")


def combined_setting(ot: Setting, contrastive: Setting) -> Setting:
    """OT (best) + contrastive (best): OT's fields and lr, contrastive's temperature, terms
    weighed by the scale probe (an OT-best made of ot+mse keeps only its OT term)."""
    params = {**ot.p, "loss": "ot+contrastive", "temperature": contrastive.p["temperature"], "weights": "scale_probe"}
    return Setting.make("ot+contrastive", f"{ot.variant}+{contrastive.variant}", **params)
