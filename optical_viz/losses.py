"""Alignment losses for distillation: pure functions of embeddings and masks.

Every loss here takes tensors, not models, so that it can be tested against a slow
reference without loading an encoder (the pattern of sentence-transformers'
``compute_loss_from_embeddings``). The trainer (:mod:`optical_viz.distill`) runs the
encoders and hands their outputs to these functions.

Conventions: ``B`` batch size, ``T`` student (low-resource) tokens, ``S`` teacher
(English) tokens, ``H`` hidden size. Token embeddings are float tensors ``(B, T, H)``
whose padding rows may hold anything; masks are bool ``(B, T)``, True on real tokens.

- :func:`ot_loss`: OPTICAL. Entropic OT plan ``P`` between the student tokens and the
  teacher tokens under a cost ``C``; loss = mean over the batch of ``<P, C>``.
- :func:`contrastive_loss`: symmetric InfoNCE between sentence embeddings, in-batch
  negatives, optional additive margin (LaBSE).
- :func:`mse_loss`: multilingual knowledge distillation (Reimers & Gurevych 2020).
- :func:`combine`: a weighted sum of named terms.

>>> import torch
>>> x, y = torch.randn(2, 5, 8), torch.randn(2, 7, 8)
>>> mx, my = torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 7, dtype=torch.bool)
>>> out = ot_loss(x, y, mx, my, eps=0.1)
>>> out.loss.shape, out.plan.shape
(torch.Size([]), torch.Size([2, 5, 7]))
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from optical_viz import transport

__all__ = [
    "OTLoss",
    "ot_loss",
    "contrastive_loss",
    "mse_loss",
    "mean_pool",
    "special_token_weights",
    "combine",
    "LOSSES",
]

LOSSES = ("ot", "contrastive", "mse")
# what the OT loss minimises (its reported value is exactly what its gradient descends):
#   "entropic"   OT_eps = <P, C> + eps KL(P | a x b) at the entropic optimum (OPTICAL as run so far)
#   "plan_cost"  <P, C> of the entropic plan, differentiated through the solver
#   "divergence" debiased Sinkhorn divergence OT_eps(x, y) - (OT_eps(x, x) + OT_eps(y, y)) / 2
OBJECTIVES = ("entropic", "plan_cost", "divergence")
# how the plan is computed: entropic Sinkhorn, or an exact (unregularised) plan per pair (POT)
PLANS = ("sinkhorn", "emd")
# eps in cost units ("absolute"), or times the per-pair standard deviation of the costs ("relative")
EPS_MODES = ("absolute", "relative")
# token marginals: uniform over real tokens, or only content tokens (no <s>, </s>, prefix, padding)
MARGINALS = ("content", "uniform")
# our gradient modes -> optical_viz.transport's
GRAD_MODES = {"envelope": "envelope", "unroll": "autodiff"}


@dataclass
class OTLoss:
    """Result of :func:`ot_loss`.

    loss: () mean over the batch of ``<P, C>``, differentiable.
    per_example: (B,) ``<P_b, C_b>``.
    plan: (B, T, S) the transport plans (detached), exactly 0 on padding.
    cost: (B, T, S) the cost matrices (detached).
    converged: (B,) bool, whether Sinkhorn met its tolerance.
    """

    loss: torch.Tensor
    per_example: torch.Tensor
    plan: torch.Tensor
    cost: torch.Tensor
    converged: torch.Tensor


def _check_tokens(student: torch.Tensor, teacher: torch.Tensor, student_mask, teacher_mask) -> None:
    if student.dim() != 3 or teacher.dim() != 3:
        raise ValueError(
            f"expected token embeddings (B, T, H) and (B, S, H), got {tuple(student.shape)} and "
            f"{tuple(teacher.shape)}"
        )
    if student.shape[0] != teacher.shape[0] or student.shape[2] != teacher.shape[2]:
        raise ValueError(
            f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} must agree in batch "
            "size and hidden size"
        )
    if student_mask.shape != student.shape[:2]:
        raise ValueError(f"student_mask {tuple(student_mask.shape)} does not match student {tuple(student.shape)}")
    if teacher_mask.shape != teacher.shape[:2]:
        raise ValueError(f"teacher_mask {tuple(teacher_mask.shape)} does not match teacher {tuple(teacher.shape)}")
    empty = (~student_mask.any(1)) | (~teacher_mask.any(1))
    if empty.any():
        raise ValueError(f"rows {empty.nonzero().flatten().tolist()} have no real token on one side")


def special_token_weights(mask: torch.Tensor) -> torch.Tensor:
    """Token weights that ignore the first and last real token (``<s>`` and ``</s>``).

    mask: (B, T) bool, True on real tokens (left-aligned, padding on the right).
    Returns (B, T) float32: 1 on content tokens, 0 on ``<s>``, ``</s>`` and padding. A row
    with at most two real tokens keeps all of them (a plan needs some mass).
    """
    lengths = mask.sum(1)  # (B,)
    pos = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # (B, T)
    inner = mask & (pos > 0) & (pos < (lengths - 1).unsqueeze(1))
    short = lengths <= 2
    inner = torch.where(short.unsqueeze(1), mask, inner)
    return inner.float()


def ot_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    student_mask: torch.Tensor,
    teacher_mask: torch.Tensor,
    *,
    eps: float = 0.02,
    metric: str = "cosine",
    student_weights: torch.Tensor | None = None,
    teacher_weights: torch.Tensor | None = None,
    grad: str = "envelope",
    rho: float | None = None,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> OTLoss:
    """OPTICAL loss: ``mean_b <P_b, C_b>`` with ``P_b`` the entropic OT plan for ``C_b``.

    student: (B, T, H) student token embeddings of the low-resource sentences.
    teacher: (B, S, H) teacher token embeddings of their English translations.
    student_mask: (B, T) bool; teacher_mask: (B, S) bool; True on real tokens.
    eps: entropic regularisation, in units of the cost (cosine cost lies in [0, 2]). It must
        be small against the spread of the costs, not their range: with the default model's
        last layer that spread is ~0.07, and at eps 0.1 the plan is nearly uniform (check
        :func:`optical_viz.geometry.plan_entropy`), which turns the loss into "move every
        token to the mean of the other sentence".
    metric: "cosine", "sqeuclidean" or "dot" (see :func:`optical_viz.transport.cost_matrix`).
    student_weights, teacher_weights: optional (B, T) / (B, S) non-negative token weights,
        normalised into the marginals (for example :func:`special_token_weights`);
        default uniform over real tokens.
    grad: "envelope" (plan treated as constant: gradient = P * dC, the envelope theorem at
        the optimum) or "unroll" (differentiate through the Sinkhorn iterations).
    rho: None for balanced OT; a positive float relaxes the marginals (unbalanced OT with
        KL marginal penalty ``rho``, see :func:`optical_viz.transport.sinkhorn_unbalanced`).

    Gradients reach ``student`` (and ``teacher`` if it requires grad) through the cost.
    """
    _check_tokens(student, teacher, student_mask, teacher_mask)
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}")
    cost = transport.cost_matrix(student, teacher, metric=metric, x_mask=student_mask, y_mask=teacher_mask)  # (B, T, S)
    a = transport.marginal(student_mask, student_weights, dtype=cost.dtype)  # (B, T)
    b = transport.marginal(teacher_mask, teacher_weights, dtype=cost.dtype)  # (B, S)
    kw = dict(eps=eps, a=a, b=b, max_iter=max_iter, tol=tol, grad=GRAD_MODES[grad])
    if rho is None:
        res = transport.sinkhorn(cost, student_mask, teacher_mask, **kw)
    else:
        if rho <= 0:
            raise ValueError(f"rho must be positive (or None for balanced OT), got {rho}")
        res = transport.sinkhorn_unbalanced(cost, student_mask, teacher_mask, rho=rho, **kw)
    per_example = res.cost  # (B,) <P_b, C_b>, padding excluded
    if not torch.isfinite(per_example).all():
        raise ValueError(f"OT loss is not finite (eps={eps}, metric={metric}): {per_example.tolist()}")
    return OTLoss(
        loss=per_example.mean(),
        per_example=per_example,
        plan=res.plan.detach(),
        cost=cost.detach(),
        converged=res.converged,
    )


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real tokens: hidden (B, T, H), mask (B, T) bool -> (B, H)."""
    if hidden.shape[:2] != mask.shape:
        raise ValueError(f"mask {tuple(mask.shape)} does not match hidden {tuple(hidden.shape)}")
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def contrastive_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    temperature: float = 0.05,
    margin: float = 0.0,
    symmetric: bool = True,
) -> torch.Tensor:
    """Symmetric InfoNCE with in-batch negatives (optionally LaBSE's additive margin).

    student: (B, H) sentence embeddings of the low-resource sentences (mean-pooled student).
    teacher: (B, H) sentence embeddings of their English translations (teacher).
    Row i of both is a translation pair; every other row is a negative. Scores are cosine
    similarities; ``margin`` is subtracted from the positive scores before dividing by the
    temperature. ``symmetric``: average the student->teacher and teacher->student
    cross-entropies (else only student->teacher). Returns a scalar.
    """
    if student.dim() != 2 or student.shape != teacher.shape:
        raise ValueError(f"expected two (B, H) tensors of one shape, got {tuple(student.shape)} and {tuple(teacher.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    s = F.normalize(student, dim=-1)
    t = F.normalize(teacher, dim=-1)
    scores = s @ t.T  # (B, B) cosine
    scores = scores - margin * torch.eye(len(s), dtype=scores.dtype, device=scores.device)
    logits = scores / temperature
    labels = torch.arange(len(s), device=s.device)
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.T, labels))
    return loss


def mse_loss(student_lr: torch.Tensor, student_en: torch.Tensor, teacher_en: torch.Tensor) -> torch.Tensor:
    """Multilingual knowledge distillation (Reimers & Gurevych 2020).

    student_lr: (B, H) student sentence embeddings of the low-resource sentences.
    student_en: (B, H) student sentence embeddings of the English sentences.
    teacher_en: (B, H) teacher sentence embeddings of the English sentences (the target).
    Returns ``mean((s_lr - t)^2) + mean((s_en - t)^2)`` (means over batch and dimensions).
    """
    if not (student_lr.shape == student_en.shape == teacher_en.shape) or student_lr.dim() != 2:
        raise ValueError(
            f"expected three (B, H) tensors of one shape, got {tuple(student_lr.shape)}, "
            f"{tuple(student_en.shape)}, {tuple(teacher_en.shape)}"
        )
    return F.mse_loss(student_lr, teacher_en) + F.mse_loss(student_en, teacher_en)


def combine(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Weighted sum ``sum_k weights[k] * terms[k]``; every weighted term must be present."""
    missing = sorted(set(weights) - set(terms))
    if missing:
        raise ValueError(f"weights name terms {missing} that were not computed (have {sorted(terms)})")
    if not weights:
        raise ValueError("combine needs at least one weighted term")
    return sum(float(w) * terms[k] for k, w in weights.items())
