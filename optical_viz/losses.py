"""Alignment losses for distillation: pure functions of embeddings and masks.

Every loss here takes tensors, not models, so that it can be tested against a slow
reference without loading an encoder (the pattern of sentence-transformers'
``compute_loss_from_embeddings``). The trainer (:mod:`optical_viz.distill`) runs the
encoders and hands their outputs to these functions.

Conventions: ``B`` batch size, ``T`` student (low-resource) tokens, ``S`` teacher
(English) tokens, ``H`` hidden size. Token embeddings are float tensors ``(B, T, H)``
whose padding rows may hold anything; masks are bool ``(B, T)``, True on real tokens.

- :func:`ot_loss`: OPTICAL. An OT objective between the student tokens and the teacher
  tokens under a cost ``C``: the entropic value OT_eps, the plan cost ``<P, C>``, the
  debiased Sinkhorn divergence, or the exact OT cost; the loss is its batch mean, and its
  gradient is that value's gradient.
- :func:`contrastive_loss`: symmetric InfoNCE between sentence embeddings, in-batch
  negatives, optional additive margin (LaBSE).
- :func:`mse_loss`: multilingual knowledge distillation (Reimers & Gurevych 2020).
- :func:`combine`: a weighted sum of named terms.

>>> import torch
>>> x, y = torch.randn(2, 5, 8), torch.randn(2, 7, 8)
>>> mx, my = torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 7, dtype=torch.bool)
>>> out = ot_loss(x, y, mx, my, eps=0.1)             # OTConfig's defaults, eps overridden
>>> out.loss.shape, out.plan.shape
(torch.Size([]), torch.Size([2, 5, 7]))

The OT loss's options and their defaults are :class:`optical_viz.config.OTConfig`, written
once there; the trainer passes its ``loss.ot``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import ValidationError

from optical_viz import transport
from optical_viz.config import OTConfig, format_errors
# the losses' vocabulary (owned by options, which the config and the CLI read without torch;
# their meanings are written there)
from optical_viz.options import EPS_MODES, LOSS_GRAD_MODES, LOSSES, MARGINALS, OBJECTIVES, PLANS

__all__ = [
    "OTLoss",
    "ot_loss",
    "contrastive_loss",
    "mse_loss",
    "mean_pool",
    "content_weights",
    "ot_settings",
    "check_ot_options",
    "OTConfig",
    "OBJECTIVES",
    "PLANS",
    "EPS_MODES",
    "MARGINALS",
    "LOSS_GRAD_MODES",
    "combine",
    "LOSSES",
]



@dataclass
class OTLoss:
    """Result of :func:`ot_loss`.

    loss: () mean over the batch of the objective, differentiable; its gradient is the
        gradient of this value (up to the solver's tolerance for ``grad="envelope"``).
    per_example: (B,) the objective per pair.
    plan_cost: (B,) ``<P_b, C_b>`` of the student-teacher plan (detached), for monitoring.
    plan: (B, T, S) the student-teacher transport plans (detached), exactly 0 on padding
        and on tokens of zero mass.
    cost: (B, T, S) the cost matrices (detached).
    eps: (B,) the eps each pair was solved with, in cost units (``eps`` itself for
        ``eps_mode="absolute"``; 0 for exact plans).
    converged: (B,) bool, whether every solve of the pair met its tolerance.
    """

    loss: torch.Tensor
    per_example: torch.Tensor
    plan_cost: torch.Tensor
    plan: torch.Tensor
    cost: torch.Tensor
    eps: torch.Tensor
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


def content_weights(mask: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Token weights that carry mass only on content tokens.

    mask: (B, T) bool, True on real tokens. content: (B, T) bool, True on tokens that belong
    to a word of the text (``word_ids`` not None: no ``<s>``, ``</s>``, prefix or padding; see
    :meth:`optical_viz.encoder.Encoder.content_mask`). Returns (B, T) float32: 1 on content
    tokens, 0 elsewhere; a row without any content token (an empty text) keeps all its real
    tokens, so that every plan has mass.
    """
    if content.shape != mask.shape or content.dtype != torch.bool or mask.dtype != torch.bool:
        raise ValueError(f"mask {tuple(mask.shape)} and content {tuple(content.shape)} must be bool tensors of one shape")
    keep = content & mask
    empty = ~keep.any(1, keepdim=True)  # (B, 1)
    return torch.where(empty, mask, keep).float()


def _eps_per_pair(cost: torch.Tensor, pair: torch.Tensor, eps: float, eps_mode: str) -> torch.Tensor:
    """(B,) eps in cost units: ``eps``, or ``eps`` times the standard deviation of each pair's
    cost entries between tokens that carry mass (``pair`` (B, T, S) bool; detached: a
    constant of the step); a pair without spread takes the batch's mean spread."""
    B = cost.shape[0]
    if eps_mode == "absolute":
        return cost.new_full((B,), float(eps))
    c = cost.detach()
    n = pair.sum(dim=(1, 2)).to(c.dtype)  # (B,)
    mean = (c * pair).sum(dim=(1, 2)) / n
    var = (((c - mean[:, None, None]) * pair) ** 2).sum(dim=(1, 2)) / n
    sd = var.sqrt()
    flat = sd <= 0
    if flat.any():
        # a pair whose costs are all equal (one content token on each side, or identical tokens):
        # every eps > 0 gives it the same plan, the product of its marginals, so it takes the
        # batch's mean spread (1 cost unit when no pair has one); the other pairs are untouched
        spread = sd[~flat]
        sd = torch.where(flat, spread.mean() if spread.numel() else sd.new_tensor(1.0), sd)
    return eps * sd


def _entropic(cost, mask_x, mask_y, a, b, eps_b, *, grad, rho, eps_scaling, max_iter, tol, symmetric=False,
              overrelax=False):
    """Solve the entropic problem of every pair with its own eps -> (value, plan, plan cost, converged).

    cost (B, T, S); a (B, T), b (B, S) marginals; eps_b (B,) eps per pair in cost units. The
    pairs are solved on ``cost / scale`` (scale = eps_b / max eps_b) with one common eps,
    which is the problem of ``cost`` at eps_b (and rho * scale when unbalanced); the value
    OT_eps = <P, C> + eps_b KL(P | a b^T) (+ rho scale (KL(P 1 | a) + KL(P^T 1 | b))) is
    taken in cost units. grad="envelope" holds the plan constant (d value / d cost = P).
    symmetric: a self-term (mask_y = mask_x, b = a, symmetric cost), solved by
    :func:`optical_viz.transport.sinkhorn_symmetric`.
    """
    eps0 = float(eps_b.max())
    scale = (eps_b / eps0).to(cost.dtype)  # (B,), 1 for absolute eps
    scaled = cost / scale[:, None, None]  # (B, T, S)
    kw = dict(eps=eps0, a=a, b=b, max_iter=max_iter, tol=tol, grad=grad)
    if symmetric:
        kw.pop("b")
        res = transport.sinkhorn_symmetric(scaled, mask_x, **kw)
    elif rho is None:
        res = transport.sinkhorn(scaled, mask_x, mask_y, eps_scaling=eps_scaling, overrelax=overrelax, **kw)
    else:
        res = transport.sinkhorn_unbalanced(scaled, mask_x, mask_y, rho=rho, **kw)
    P = res.plan if grad == "unroll" else res.plan.detach()  # (B, T, S)
    plan_cost = (P * cost).sum(dim=(1, 2))  # (B,) <P, C>: gradient through C (and P when unrolled)
    kl = transport.entropic_kl(P, a, b)  # (B,)
    if rho is not None:  # the relaxed marginals' penalties, KL(r | a) = sum r log(r / a) - sum r + 1
        one = P.new_ones(len(P), 1)
        kl = kl + (rho / eps0) * (
            transport.entropic_kl(P.sum(2)[:, :, None], a, one)  # (B, T, 1) against a (B, T) x 1
            + transport.entropic_kl(P.sum(1)[:, :, None], b, one)
        )
    value = plan_cost + eps_b * kl
    return value, res.plan.detach(), plan_cost, res.converged


def ot_settings(settings: OTConfig | None = None, **options) -> OTConfig:
    """``settings`` (default ``OTConfig()``) with ``options`` (fields of :class:`OTConfig`) in
    their place, validated: an unknown field, a bad type or choice, or a combination that would
    not do what it says (:meth:`OTConfig.check`) is a ValueError of one line naming the field.

    >>> ot_settings(eps=0.1).objective
    'divergence'
    """
    if settings is None:
        settings = OTConfig()
    elif not isinstance(settings, OTConfig):
        raise ValueError(f"settings must be an OTConfig (or None for its defaults), got {type(settings).__name__}")
    if options:
        try:
            settings = dataclasses.replace(settings, **options)
        except ValidationError as exc:
            raise ValueError(format_errors(exc, OTConfig)) from None
        except TypeError as exc:  # a keyword that is no field
            raise ValueError(f"{exc}; the options are OTConfig's fields: {[f.name for f in dataclasses.fields(OTConfig)]}") from None
    settings.check()
    return settings


def check_ot_options(**options) -> None:
    """Raise a one-line ValueError for OT options (fields of :class:`OTConfig`) that are unknown,
    of a wrong type or choice, or would not do what they say: :func:`ot_settings` for its error.
    The keyword form of ``OTConfig(...).check()`` for a mapping that is not a config yet (the
    protocol's OT variants, :mod:`optical_viz.protocol`)."""
    ot_settings(**options)


def ot_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    student_mask: torch.Tensor,
    teacher_mask: torch.Tensor,
    settings: OTConfig | None = None,
    *,
    student_weights: torch.Tensor | None = None,
    teacher_weights: torch.Tensor | None = None,
    **options,
) -> OTLoss:
    """OT loss between student and teacher tokens; ``loss`` is exactly what its gradient descends.

    ``settings``: an :class:`optical_viz.config.OTConfig` (None: its defaults, those of the
    trainer's ``loss.ot``); ``options``: any of its fields, in place of the settings' (e.g.
    ``ot_loss(x, y, mx, my, objective="entropic", eps=0.1)``). Called without either, it
    computes what the trainer computes with a default ``loss.ot`` on the same states and
    weights. ``layer`` and ``marginals`` are the trainer's (which states and which weights it
    passes); here they are unused.

    With ``C`` the (B, T, S) cost between student and teacher tokens and ``a``, ``b`` the token
    marginals, per pair:

    - ``objective="entropic"``: ``OT_eps(a, b) = min_P <P, C> + eps KL(P | a b^T)`` (GeomLoss's
      convention). OPTICAL as run so far (its gradient, P dC, is what the trainer always
      used). Biased: its minimiser over the student is *not* the teacher's token cloud, the
      entropy term rewards blurred plans (Feydy et al., AISTATS 2019).
    - ``objective="plan_cost"``: ``<P_eps, C>``, the cost of the entropic plan, differentiated
      through the solver (``grad="unroll"``; the envelope gradient is not its gradient). With
      ``plan="emd"``: the exact OT cost, whose envelope gradient is exact.
    - ``objective="divergence"``: the debiased Sinkhorn divergence
      ``S_eps = OT_eps(a, b) - OT_eps(a, a) / 2 - OT_eps(b, b) / 2``, the self-terms with each
      side's cost to itself under the same metric and eps. ``S_eps(x, x) = 0``, ``S_eps >= 0``
      and its gradient vanishes when student = teacher.

    student: (B, T, H) student token embeddings of the low-resource sentences.
    teacher: (B, S, H) teacher token embeddings of their English translations.
    student_mask: (B, T) bool; teacher_mask: (B, S) bool; True on real tokens.
    The options (fields of OTConfig):

    plan: "sinkhorn" (entropic) or "emd" (exact plan per pair through POT, no eps;
        objective "plan_cost" and grad "envelope" only).
    eps: entropic regularisation > 0. ``eps_mode="absolute"``: in units of the cost (cosine
        cost lies in [0, 2]; with the default model's last layer the costs of a pair spread
        by ~0.07, and at eps 0.1 the plan is nearly uniform). ``"relative"``: times the
        per-pair standard deviation of the real cost entries (detached), so one setting
        means the same sharpness across layers, models and training time (the spread is
        taken over the token pairs that carry mass).
    eps_scaling: None, or the annealing ratio of :func:`optical_viz.transport.sinkhorn`
        (makes small eps affordable).
    overrelax: adaptive over-relaxation of the balanced cross term's Sinkhorn iterations
        (:func:`optical_viz.transport.sinkhorn`): fewer iterations to the same tolerance.
    metric: "cosine", "sqeuclidean" or "dot" (see :func:`optical_viz.transport.cost_matrix`).
    grad: "envelope" (plan treated as constant; exact for "entropic" and "divergence" at
        convergence, and for exact plans) or "unroll" (differentiate through the Sinkhorn
        iterations).
    rho: None for balanced OT; a positive float relaxes the marginals (unbalanced OT with
        KL marginal penalty ``rho``; objectives "entropic" and "plan_cost").
    max_iter, tol: the Sinkhorn budget per solve (iterations, L1 marginal error).

    student_weights, teacher_weights: optional (B, T) / (B, S) non-negative token weights,
        normalised into the marginals (for example :func:`content_weights`, which the trainer
        passes for ``marginals: content``); default uniform over real tokens.

    Gradients reach ``student`` (and ``teacher`` if it requires grad) through the costs.
    """
    _check_tokens(student, teacher, student_mask, teacher_mask)
    s = ot_settings(settings, **options)
    objective, plan, eps, metric = s.objective, s.plan, s.eps, s.metric
    cost = transport.cost_matrix(student, teacher, metric=metric, x_mask=student_mask, y_mask=teacher_mask)  # (B, T, S)
    a = transport.marginal(student_mask, student_weights, dtype=cost.dtype)  # (B, T)
    b = transport.marginal(teacher_mask, teacher_weights, dtype=cost.dtype)  # (B, S)
    if plan == "emd":
        res = transport.emd(cost, student_mask, teacher_mask, a=a, b=b)
        per_example = res.cost  # (B,) exact OT cost; gradient = plan * dC (envelope, exact)
        return _result(per_example, res.cost.detach(), res.plan, cost, cost.new_zeros(len(cost)), res.converged, objective, eps)
    pair = (a > 0)[:, :, None] & (b > 0)[:, None, :]  # (B, T, S): token pairs that carry mass
    eps_b = _eps_per_pair(cost, pair, eps, s.eps_mode)  # (B,)
    kw = dict(grad=s.grad, rho=s.rho, eps_scaling=s.eps_scaling, max_iter=s.max_iter, tol=s.tol, overrelax=s.overrelax)
    value, P, plan_cost, converged = _entropic(cost, student_mask, teacher_mask, a, b, eps_b, **kw)
    if objective == "entropic":
        per_example = value
    elif objective == "plan_cost":
        per_example = plan_cost
    else:  # debiased: the same eps per pair in all three problems
        c_ss = transport.cost_matrix(student, student, metric=metric, x_mask=student_mask, y_mask=student_mask)  # (B, T, T)
        v_ss, _, _, conv_ss = _entropic(c_ss, student_mask, student_mask, a, a, eps_b, symmetric=True, **kw)
        with torch.set_grad_enabled(torch.is_grad_enabled() and teacher.requires_grad):
            c_tt = transport.cost_matrix(teacher, teacher, metric=metric, x_mask=teacher_mask, y_mask=teacher_mask)  # (B, S, S)
            v_tt, _, _, conv_tt = _entropic(c_tt, teacher_mask, teacher_mask, b, b, eps_b, symmetric=True, **kw)
        per_example = value - 0.5 * v_ss - 0.5 * v_tt
        converged = converged & conv_ss & conv_tt
    return _result(per_example, plan_cost.detach(), P, cost, eps_b, converged, objective, eps)


def _result(per_example, plan_cost, plan, cost, eps_b, converged, objective, eps) -> OTLoss:
    if not torch.isfinite(per_example).all():
        raise ValueError(f"OT loss ({objective}) is not finite (eps={eps}): {per_example.tolist()}")
    return OTLoss(
        loss=per_example.mean(),
        per_example=per_example,
        plan_cost=plan_cost,
        plan=plan.detach(),
        cost=cost.detach(),
        eps=eps_b.detach(),
        converged=converged,
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
