"""The toolkit's vocabularies and the aligner's settings, in one module without torch.

Every choice a config, a command line or a notebook offers is a tuple owned here, imported
by the module that implements it (transport, losses, alignment, retrieval, encoder,
linear_map, data) and by those that offer it (:mod:`optical_viz.config`, the CLI's
``optical_viz.commands``), so that ``optical-viz --help`` lists the choices and defaults
without importing torch (seconds) and no module keeps a copy. This module imports nothing
of the package.

:class:`AlignConfig` is the one setting of the word aligner (method, eps, layer,
extraction, threshold, solver keywords): ``optical-viz align``, ``optical-viz evaluate
alignment``, the alignment explorer (:class:`optical_viz.widgets.AlignmentExplorer`) and the
targets of alignment fine-tuning (:meth:`optical_viz.align_train.AlignTrainConfig.resolved`)
start from ``AlignConfig()``. The OT loss's settings are :class:`optical_viz.config.OTConfig`.

>>> AlignConfig().describe()
'sinkhorn eps=0.3, inter, layer 7'
>>> AlignConfig.with_options(eps=0.05).eps, AlignConfig.with_options(eps=0.05).layer
(0.05, 7)
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import ClassVar

__all__ = [
    "METRICS",
    "SOLVERS",
    "SOLVER_GRAD_MODES",
    "LOSSES",
    "OBJECTIVES",
    "PLANS",
    "EPS_MODES",
    "MARGINALS",
    "LOSS_GRAD_MODES",
    "ALIGNERS",
    "EXTRACTIONS",
    "AlignConfig",
    "FLORES_SPLITS",
    "TASKS",
    "FLORES_TASK_SPLITS",
    "SCORINGS",
    "PRECISIONS",
    "START_METHODS",
]

# ----------------------------------------------------------------------------- transport
# cost between two tokens (optical_viz.transport.cost_matrix)
METRICS = ("cosine", "sqeuclidean", "dot")
# the OT solvers of optical_viz.transport.solve(method=...)
SOLVERS = ("sinkhorn", "unbalanced", "emd", "partial", "gw")
# how a solver's plan carries gradients: held constant at convergence (envelope theorem),
# through the iterations (unroll), or not at all (none: a plan to look at)
SOLVER_GRAD_MODES = ("envelope", "unroll", "none")

# ----------------------------------------------------------------------------- losses
# the distillation losses (optical_viz.losses), combined with "+" in a config ("ot+contrastive")
LOSSES = ("ot", "contrastive", "mse")
# what the OT loss minimises (its reported value is exactly what its gradient descends):
#   "entropic"   OT_eps = <P, C> + eps KL(P | a x b) at the entropic optimum (OPTICAL as run so far)
#   "plan_cost"  <P, C> of the entropic plan, differentiated through the solver
#   "divergence" debiased Sinkhorn divergence OT_eps(x, y) - (OT_eps(x, x) + OT_eps(y, y)) / 2
OBJECTIVES = ("entropic", "plan_cost", "divergence")
# how the loss's plan is computed: entropic Sinkhorn, or an exact (unregularised) plan per pair (POT)
PLANS = ("sinkhorn", "emd")
# eps in cost units ("absolute"), or times the per-pair standard deviation of the costs ("relative")
EPS_MODES = ("absolute", "relative")
# token marginals: only content tokens (no <s>, </s>, prefix, padding), or uniform over real tokens
MARGINALS = ("content", "uniform")
# gradient of the OT loss: the solver's modes but "none" (a loss always has a gradient)
LOSS_GRAD_MODES = tuple(m for m in SOLVER_GRAD_MODES if m != "none")

# ----------------------------------------------------------------------------- alignment
# word aligners (optical_viz.alignment): the OT solvers but gw; "divergence", the Sinkhorn
# plan with the pair's debiased divergence as its value; "similarity", the marginal-free
# baseline exp(-cost / eps) normalised to total mass one (SimAlign's matrix, cosine with
# temperature eps); "dot", exp(x . y) of the raw hidden states (awesome-align's matrix)
ALIGNERS = ("sinkhorn", "divergence", "unbalanced", "emd", "partial", "similarity", "dot")
# how hard links are read off a plan (optical_viz.alignment.extract_links)
EXTRACTIONS = ("inter", "union", "grow-diag", "threshold", "itermax", "softmax")


@dataclass(frozen=True)
class AlignConfig:
    """The word aligner's setting: what :func:`optical_viz.alignment.align` is called with.

    method: one of :data:`ALIGNERS`. eps: entropic regularisation in cost units (> 0; the
        temperature of "similarity"; ignored by "emd", "partial" and "dot").
    layer: the hidden layer whose token states are aligned (0 = embedding output, -1 = last).
    extraction: one of :data:`EXTRACTIONS`. threshold: of the "threshold" and "softmax"
        extractions; None: their own (0.5 of the one-to-one mass, 1e-3).
    solver_kw: extra keywords of the solver (``rho`` of "unbalanced", ``mass`` of "partial").

    The defaults are the leave-one-pair-out setting (:attr:`SOURCE`, tools/alignment_sweep.py):
    over layers x plans x extractions on de-en, en-fr and ro-en with multilingual-e5-small,
    each family's setting chosen on two pairs and scored on the third; Sinkhorn had the lowest
    mean held-out AER (16.3%: de-en 13.7, en-fr 6.9, ro-en 28.3), shipped with its setting best
    on all three pairs.
    """

    method: str = "sinkhorn"
    eps: float = 0.3
    layer: int = 7
    extraction: str = "inter"
    threshold: float | None = None
    solver_kw: dict = field(default_factory=dict)

    SOURCE: ClassVar[str] = "results/alignment/heldout.json"  # where the defaults were chosen

    def __post_init__(self) -> None:
        if self.method not in ALIGNERS:
            raise ValueError(f"method must be one of {ALIGNERS}, got {self.method!r}")
        if self.extraction not in EXTRACTIONS:
            raise ValueError(f"extraction must be one of {EXTRACTIONS}, got {self.extraction!r}")
        if not _number(self.eps) or not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps must be a finite number > 0 (in cost units), got {self.eps!r}")
        if isinstance(self.layer, bool) or not isinstance(self.layer, numbers.Integral):
            raise ValueError(f"layer must be an integer (0 = embedding output, -1 = last), got {self.layer!r}")
        if self.threshold is not None and not (_number(self.threshold) and self.threshold > 0):
            raise ValueError(f"threshold must be > 0 or None, got {self.threshold!r}")
        if not isinstance(self.solver_kw, dict):
            raise ValueError(f"solver_kw must be a mapping of solver keywords (rho, mass), got {self.solver_kw!r}")

    @classmethod
    def with_options(cls, **options) -> "AlignConfig":
        """The default setting with the options that are not None in its place (the form of
        optional command-line and widget arguments): ``with_options(eps=None)`` is ``AlignConfig()``."""
        return cls(**{k: v for k, v in options.items() if v is not None})

    def is_default(self) -> bool:
        """Whether this is the leave-one-pair-out default setting."""
        return self == type(self)()

    def describe(self) -> str:
        """One line: ``"sinkhorn eps=0.3, inter, layer 7"`` (eps left out where the method ignores it)."""
        eps = "" if self.method in ("emd", "partial", "dot") else f" eps={self.eps:g}"
        extra = "".join(f", {k}={v}" for k, v in (("threshold", self.threshold), *self.solver_kw.items()) if v is not None)
        return f"{self.method}{eps}, {self.extraction}, layer {self.layer}{extra}"

    def align_kwargs(self) -> dict:
        """The keywords of :func:`optical_viz.alignment.align` / ``align_batch``: method, eps,
        layer, extraction, threshold and the solver's."""
        return {"method": self.method, "eps": self.eps, "layer": self.layer, "extraction": self.extraction,
                "threshold": self.threshold, **self.solver_kw}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


# ----------------------------------------------------------------------------- data and retrieval
# the splits of FLORES-200 (optical_viz.data.load_flores)
FLORES_SPLITS = ("train", "dev", "test")
# retrieval tasks (optical_viz.retrieval.evaluate)
TASKS = ("xquad-r", "xquad", "flores", "tatoeba", "clir")
# the splits the FLORES task evaluates on: all of FLORES's, one of them, or dev and test
# together (held out from a model distilled on FLORES train bitext)
FLORES_TASK_SPLITS = ("all", *FLORES_SPLITS, "dev+test")
# how a query is scored against the candidates: sentence cosine or MaxSim over tokens
SCORINGS = ("dense", "maxsim")

# ----------------------------------------------------------------------------- models
# encoder precision (optical_viz.encoder.resolve_precision): auto, fp32, or bf16 autocast
PRECISIONS = ("auto", "fp32", "bf16")
# how a distillation student starts (optical_viz.linear_map): as loaded, or a fitted linear map
START_METHODS = ("none", "linear_map")
