"""Optimal transport between padded batches of token embeddings.

Shapes used throughout (B sentence pairs, T source tokens, S target tokens, H hidden size):

- ``x`` (B, T, H) and ``y`` (B, S, H): token embeddings, any values at padding.
- ``src_mask`` (B, T) and ``tgt_mask`` (B, S): bool, True on real tokens.
- ``cost`` (B, T, S): cost between source token t and target token s; entries that touch
  padding are ignored (they may even be NaN).
- ``a`` (B, T) and ``b`` (B, S): marginals, non-negative, exactly 0 on padding, each row
  summing to one.
- ``plan`` (B, T, S): the transport plan, exactly 0 on every row and column of padding.

The core is a batched, masked Sinkhorn written in torch (``sinkhorn``); POT
handles exact EMD, partial OT and Gromov-Wasserstein pair by pair. ``solve(method=...)``
dispatches to all of them, so that a notebook switches solver with one argument.

>>> x, y = torch.randn(2, 5, 8), torch.randn(2, 7, 8)
>>> res = sinkhorn(cost_matrix(x, y), eps=0.05)
>>> res.plan.shape, res.cost.shape
(torch.Size([2, 5, 7]), torch.Size([2]))

Why our own Sinkhorn rather than ``ot.batch.solve_batch``: POT's batched solver has no
masks (padding must be emulated with zero weights), runs every problem until the slowest
converges, checks convergence with an extra pass over the plan, and its "envelope" mode
gives gradients to the objective value only. Ours buckets the pairs by length (each bucket
cropped to its longest sentences), iterates in the kernel domain (two batched
matrix-vector products per iteration) wherever exp(-(C - row/column minima) / eps) is safe
in the dtype and in the log domain elsewhere (small eps), drops problems from the batch as
they converge and checks convergence for free. ``optical-viz bench transport`` measures it
against a Python loop of ``ot.sinkhorn(method="sinkhorn_log")`` and against ``solve_batch``
(benchmarks/transport.json), and the debiased divergence against GeomLoss and eps-scaling
(benchmarks/transport_objectives.json); the README summarises both (on one thread, ours is
one to two orders of magnitude faster than either POT route at equal or better plan accuracy).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# the cost metrics, the solvers of solve(method=...) and how a plan carries gradients: the
# vocabulary module owns them (the config and the CLI read it without importing torch)
from optical_viz.options import METRICS, SOLVER_GRAD_MODES, SOLVERS

DOMAINS = ("auto", "log")
# the budget of a Sinkhorn solve asked for on its own (a notebook, the aligner's plans): the
# plan is the product, solved to a tight marginal error. The OT loss never uses these: it
# passes its own (optical_viz.config.OTConfig.max_iter / tol, a budget per training step).
SINKHORN_MAX_ITER = 1000
SINKHORN_TOL = 1e-5  # L1 marginal error

# a marginal must sum to one within this tolerance (per dtype)
MARGINAL_SUM_ATOL = {torch.float16: 1e-2, torch.bfloat16: 1e-2, torch.float32: 1e-4, torch.float64: 1e-8}
# norms below this count as zero in the cosine distance
_NORM_EPS = 1e-12


@dataclass
class TransportResult:
    """A batch of transport plans.

    plan            (B, T, S) transport plans, exactly 0 on padding rows and columns
    cost            (B,) transport cost <plan, cost>; differentiable w.r.t. the cost
                    (through the plan too when grad="unroll")
    converged       (B,) bool, marginal_error <= tol (always True for the exact solvers)
    n_iter          iterations run by the slowest problem of the batch (0 for POT solvers)
    marginal_error  (B,) L1 error of both marginals: |plan 1 - a|_1 + |plan^T 1 - b|_1
                    (for "unbalanced" and "partial" the marginals are not constraints)
    value           (B,) the entropic OT value OT_eps = <plan, cost> + eps KL(plan | a x b)
                    (GeomLoss's convention; Sinkhorn only), whose gradient w.r.t. the cost is
                    the plan at convergence (envelope theorem)
    potentials      ((B, T), (B, S)) dual potentials f, g in cost units (Sinkhorn only),
                    -inf on padding and on tokens of zero mass
    stages          [(eps, iterations)] of each annealing stage of eps-scaling and of the
                    final solve at the target eps (Sinkhorn only; one entry without scaling)
    """

    plan: Tensor
    cost: Tensor
    converged: Tensor
    n_iter: int
    marginal_error: Tensor
    value: Tensor | None = None
    potentials: tuple[Tensor, Tensor] | None = None
    stages: list[tuple[float, int]] | None = None


# --------------------------------------------------------------------------- cost, marginals


def cost_matrix(
    x: Tensor,
    y: Tensor,
    metric: str = "cosine",
    x_mask: Tensor | None = None,
    y_mask: Tensor | None = None,
) -> Tensor:
    """Cost between every source and target token of each pair.

    x       (B, T, H) or (T, H) source token embeddings
    y       (B, S, H) or (S, H) target token embeddings
    metric  "cosine": 1 - cos(x_t, y_s) in [0, 2]; "sqeuclidean": |x_t - y_s|^2;
            "dot": -<x_t, y_s>
    x_mask  (B, T) bool, optional: entries touching padding are set to 0
    y_mask  (B, S) bool, optional
    returns (B, T, S) (or (T, S) for 2-D inputs), dtype and device of x
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    unbatched = x.dim() == 2 and y.dim() == 2
    if unbatched:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    if x.dim() != 3 or y.dim() != 3 or x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(
            f"x and y must be (B, T, H) and (B, S, H) with the same B and H, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if metric == "cosine":
        xn = x / x.norm(dim=-1, keepdim=True).clamp_min(_NORM_EPS)
        yn = y / y.norm(dim=-1, keepdim=True).clamp_min(_NORM_EPS)
        cost = 1.0 - torch.bmm(xn, yn.transpose(1, 2))  # (B, T, S)
    elif metric == "sqeuclidean":
        x2 = (x * x).sum(-1)  # (B, T)
        y2 = (y * y).sum(-1)  # (B, S)
        cost = (x2[:, :, None] + y2[:, None, :] - 2.0 * torch.bmm(x, y.transpose(1, 2))).clamp_min(0.0)
    else:
        cost = -torch.bmm(x, y.transpose(1, 2))
    if x_mask is not None or y_mask is not None:
        pair = _pair_mask(cost, _check_mask(x_mask, cost.shape[:2], "x_mask"), _check_mask(y_mask, (cost.shape[0], cost.shape[2]), "y_mask"))
        cost = cost.masked_fill(~pair, 0.0)
    return cost.squeeze(0) if unbatched else cost


def marginal(mask: Tensor, weights: Tensor | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Token masses of each sentence, normalised to sum to one.

    mask     (B, T) bool, True on real tokens
    weights  (B, T) optional non-negative weights (for example embedding norms or inverse
             document frequencies); default uniform over real tokens
    returns  (B, T) float (dtype of weights, else ``dtype``, else float32), exactly 0 on padding

    >>> marginal(torch.tensor([[True, True, False]]))
    tensor([[0.5000, 0.5000, 0.0000]])
    """
    if mask.dim() != 2:
        raise ValueError(f"mask must be (B, T), got shape {tuple(mask.shape)}")
    mask = mask.bool()
    if weights is None:
        w = mask.to(dtype or torch.float32)
    else:
        if weights.shape != mask.shape:
            raise ValueError(f"weights {tuple(weights.shape)} and mask {tuple(mask.shape)} must have the same shape")
        if not torch.isfinite(weights[mask]).all() or (weights[mask] < 0).any():
            raise ValueError("weights must be finite and non-negative on real tokens")
        w = weights.masked_fill(~mask, 0.0)
        if dtype is not None:
            w = w.to(dtype)
    total = w.sum(dim=1, keepdim=True)  # (B, 1)
    empty = (total <= 0).squeeze(1)
    if empty.any():
        rows = empty.nonzero().flatten().tolist()
        raise ValueError(f"rows {rows[:10]} have no real token or zero total weight")
    return w / total


# --------------------------------------------------------------------------- validation


def _check_mask(mask: Tensor | None, shape, name: str) -> Tensor | None:
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise ValueError(f"{name} must be a bool tensor of shape {tuple(shape)}, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor (True on real tokens), got {mask.dtype}; pass mask.bool()")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(mask.shape)}")
    return mask


def _pair_mask(cost: Tensor, src_mask: Tensor | None, tgt_mask: Tensor | None) -> Tensor:
    """(B, T, S) bool: True where both tokens are real."""
    B, T, S = cost.shape
    sm = src_mask if src_mask is not None else torch.ones(B, T, dtype=torch.bool, device=cost.device)
    tm = tgt_mask if tgt_mask is not None else torch.ones(B, S, dtype=torch.bool, device=cost.device)
    return sm[:, :, None] & tm[:, None, :]


@dataclass
class _Problem:
    cost: Tensor  # (B, T, S), 0 at padding (finite with fill_padding=False; may carry grad)
    a: Tensor  # (B, T)
    b: Tensor  # (B, S)
    src_mask: Tensor  # (B, T) bool
    tgt_mask: Tensor  # (B, S) bool


def _prepare(cost, src_mask, tgt_mask, a, b, eps=None, fill_padding=True) -> _Problem:
    """Validate a batch of problems at the public boundary; fill padding with 0.

    fill_padding=False skips the (B, T, S) copy when the whole cost is already finite: for
    solvers that mask padding themselves (the plan is exactly 0 there, so <plan, cost> is too).
    """
    if not isinstance(cost, Tensor) or cost.dim() != 3:
        raise ValueError(f"cost must be a (B, T, S) tensor, got {getattr(cost, 'shape', type(cost))}")
    if not cost.is_floating_point():
        raise ValueError(f"cost must be floating point, got {cost.dtype}")
    B, T, S = cost.shape
    if T == 0 or S == 0:
        raise ValueError(f"cost has an empty side: shape {tuple(cost.shape)}")
    if eps is not None:
        _check_eps(eps)
    dev = cost.device
    src_mask = _check_mask(src_mask, (B, T), "src_mask")
    tgt_mask = _check_mask(tgt_mask, (B, S), "tgt_mask")
    if src_mask is None:
        src_mask = torch.ones(B, T, dtype=torch.bool, device=dev)
    if tgt_mask is None:
        tgt_mask = torch.ones(B, S, dtype=torch.bool, device=dev)
    for name, m in (("src_mask", src_mask), ("tgt_mask", tgt_mask)):
        empty = ~m.any(dim=1)
        if empty.any():
            raise ValueError(f"{name}: rows {empty.nonzero().flatten().tolist()[:10]} have no real token")
    # padding may hold anything, even NaN: zero it. One reduction tells whether the whole tensor
    # is finite (then a multiplication by the 0/1 pair mask is enough, and fast); otherwise the
    # slow path finds NaN/inf on real tokens (a sum overflowing on finite values lands there too)
    if bool(torch.isfinite(cost.detach().sum())):
        if fill_padding:
                cost = (cost * src_mask.to(cost.dtype)[:, :, None]).mul_(tgt_mask.to(cost.dtype)[:, None, :])  # (B, T, S)
    else:
        pair = src_mask[:, :, None] & tgt_mask[:, None, :]  # (B, T, S)
        cost = torch.where(pair, cost, 0.0)
        bad = ~torch.isfinite(cost.detach())
        if bad.any():
            idx = bad.nonzero()[0].tolist()
            raise ValueError(f"cost {tuple(cost.shape)} has {int(bad.sum())} NaN/inf entries on real tokens, first at {tuple(idx)}")
    a = _check_marginal(a, src_mask, cost.dtype, "a")
    b = _check_marginal(b, tgt_mask, cost.dtype, "b")
    return _Problem(cost, a, b, src_mask, tgt_mask)


def _check_eps(eps) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0 (in cost units), got {eps!r}")


def _check_marginal(w: Tensor | None, mask: Tensor, dtype, name: str) -> Tensor:
    if w is None:
        return marginal(mask, dtype=dtype)
    if tuple(w.shape) != tuple(mask.shape):
        raise ValueError(f"{name} must have shape {tuple(mask.shape)}, got {tuple(w.shape)}")
    w = w.to(dtype)
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    if (w.masked_fill(mask, 0) != 0).any():
        raise ValueError(f"{name} puts mass on padding tokens")
    sums = w.sum(dim=1)
    off = (sums - 1).abs() > MARGINAL_SUM_ATOL.get(dtype, 1e-4)
    if off.any():
        i = int(off.nonzero()[0])
        raise ValueError(f"{name} must sum to one per row; row {i} sums to {float(sums[i]):.6g}")
    return w


# --------------------------------------------------------------------------- Sinkhorn


# adaptive over-relaxation (``sinkhorn(overrelax=True)``): plain iterations for this many
# checks, then each problem's omega = 2 / (1 + sqrt(1 - rate)) from its plain convergence rate
# per iteration (the optimal relaxation of the linearised iteration, Thibault et al. 2021,
# "Overrelaxed Sinkhorn-Knopp"), at most OVERRELAX_MAX; a problem whose error grows between two
# checks goes back to omega 1 for good (the safeguard).
OVERRELAX_WARMUP_CHECKS = 2
OVERRELAX_MAX = 1.9


def _omega(err: Tensor, prev: Tensor, check_every: int) -> Tensor:
    """Each problem's relaxation from its plain convergence rate per iteration between two
    checks: 2 / (1 + sqrt(1 - rate)), in [1, OVERRELAX_MAX]."""
    rate = (err / prev).nan_to_num(nan=1.0).clamp(0.0, 1.0 - 1e-6) ** (1.0 / check_every)
    return (2.0 / (1.0 + torch.sqrt(1.0 - rate))).clamp(1.0, OVERRELAX_MAX)


def _lse_(w: Tensor, dim: int) -> Tensor:
    """In-place logsumexp over ``dim``: destroys ``w``; at least one finite entry per slice."""
    m = w.amax(dim=dim, keepdim=True)
    w.sub_(m).exp_()
    return m.squeeze(dim) + w.sum(dim=dim).log()


def _sinkhorn_active_set(logK, loga, logb, *, max_iter, tol, check_every, v0=None, overrelax=False):
    """Balanced log-domain Sinkhorn without autograd, shrinking the batch as problems converge.

    Same iterations and arguments as ``_sinkhorn_iterations`` (tau = 1), but every
    ``check_every`` iterations the converged problems are written out and dropped, so a
    batch costs what its problems need, not B times its slowest problem. Logsumexps run in
    place in one work buffer. ``v0`` (B, S): a warm start of v (eps-scaling), else 0.
    ``overrelax``: as in ``_sinkhorn_kernel``, in log form (u <- (1 - w) u + w (log a - row)).
    Returns u (B, T), v (B, S), n_iter (of the slowest problem), err (B,).
    """
    B, T, S = logK.shape
    u_out = torch.zeros(B, T, dtype=logK.dtype, device=logK.device)
    v_out = torch.zeros(B, S, dtype=logK.dtype, device=logK.device)
    err_out = torch.full((B,), float("inf"), dtype=logK.dtype, device=logK.device)
    active = torch.arange(B, device=logK.device)  # (B',) indices of the unconverged problems
    a = loga.exp()
    u, v = u_out.clone(), (v_out.clone() if v0 is None else v0.clone())
    work = torch.empty_like(logK)
    w = logK.new_ones(B, 1)  # (B', 1) relaxation of each problem
    prev = logK.new_full((B,), math.inf)
    relaxed, checks = False, 0
    for it in range(1, max_iter + 1):
        row = _lse_(torch.add(logK, v[:, None, :], out=work[: len(active)]), dim=2)  # (B', T)
        if it > 1 and (it - 1) % check_every == 0:
            # columns are exact after a (plain) v-step; the rows of the current plan sum to exp(u + row)
            err = (torch.exp(u + row) - a).abs().sum(dim=1)  # (B',)
            checks += 1
            if overrelax and checks == OVERRELAX_WARMUP_CHECKS:
                w = _omega(err, prev, check_every)[:, None]
                relaxed = True
            elif relaxed:
                w = torch.where((err > prev)[:, None], 1.0, w)  # the safeguard
            prev = err
            done = err <= tol
            if bool(done.any()):
                idx = active[done]
                u_out[idx], v_out[idx], err_out[idx] = u[done], v[done], err[done]
                if bool(done.all()):
                    return u_out, v_out, it - 1, err_out
                keep = ~done
                active, logK, loga, logb, a = active[keep], logK[keep], loga[keep], logb[keep], a[keep]
                u, v, row, w, prev = u[keep], v[keep], row[keep], w[keep], prev[keep]
            err_out[active] = err[~done]
        if relaxed:  # finite where the mass is: -inf (padding, zero mass) stays -inf
            u = torch.where(torch.isfinite(loga), (1.0 - w) * u + w * (loga - row), -math.inf)
        else:
            u = loga - row
        col = _lse_(torch.add(logK, u[:, :, None], out=work[: len(active)]), dim=1)  # (B', S)
        if relaxed and it % check_every != 0:  # the v-step before a check stays plain
            v = torch.where(torch.isfinite(logb), (1.0 - w) * v + w * (logb - col), -math.inf)
        else:
            v = logb - col
    u_out[active], v_out[active] = u, v
    return u_out, v_out, max_iter, err_out


def _sinkhorn_iterations(logK, loga, logb, *, max_iter, tol, check_every, tau=1.0, inplace=True, v0=None):
    """Log-domain Sinkhorn iterations on logK (B, T, S) = -cost / eps (finite everywhere).

    loga (B, T), logb (B, S): log marginals, -inf on padding (zero mass rows/columns come out
    as potentials -inf, hence exactly-zero plan entries). tau = rho / (rho + eps) < 1 relaxes
    the marginals (unbalanced); tau = 1 is balanced OT. ``v0`` (B, S): warm start of v.
    Returns u (B, T), v (B, S), n_iter, the (B,) row-marginal L1 error at the last check.
    """
    B, T, S = logK.shape
    u = torch.zeros(B, T, dtype=logK.dtype, device=logK.device)
    v = torch.zeros(B, S, dtype=logK.dtype, device=logK.device) if v0 is None else v0
    a = loga.exp()
    err = torch.full((B,), float("inf"), dtype=logK.dtype, device=logK.device)
    work = torch.empty_like(logK) if inplace else None
    it = 0
    for it in range(1, max_iter + 1):
        if inplace:
            row = _lse_(torch.add(logK, v[:, None, :], out=work), dim=2)  # (B, T)
        else:
            row = torch.logsumexp(logK + v[:, None, :], dim=2)  # (B, T)
        if tau == 1.0 and it > 1 and (it - 1) % check_every == 0:
            # columns are exact after a v-step; the row marginals of the current plan are
            # exp(u + row), for free
            err = (torch.exp(u + row) - a).abs().sum(dim=1)  # (B,)
            if bool((err <= tol).all()):
                return u, v, it - 1, err
        u_new = loga - row
        if tau != 1.0:
            u_new = tau * u_new
        if inplace:
            col = _lse_(torch.add(logK, u_new[:, :, None], out=work), dim=1)  # (B, S)
        else:
            col = torch.logsumexp(logK + u_new[:, :, None], dim=1)  # (B, S)
        v_new = logb - col
        if tau != 1.0:
            v_new = tau * v_new
            if it % check_every == 0:
                # unbalanced: stop on the change of the potentials (as POT does)
                fin = torch.isfinite(u_new)
                du = (u_new - u).masked_fill(~fin, 0).abs().amax(dim=1)
                fin = torch.isfinite(v_new)
                dv = (v_new - v).masked_fill(~fin, 0).abs().amax(dim=1)
                err = torch.maximum(du, dv)
                if bool((err <= tol).all()):
                    return u_new, v_new, it, err
        u, v = u_new, v_new
    return u, v, it, err



# Largest (cost - row/column shifts) / eps for which the kernel exp(-(C - shift) / eps) and the
# scalings u, v stay far from under/overflow (float32 exp underflows near -87, float64 near -708).
KERNEL_MAX_EXPONENT = {torch.float32: 30.0, torch.float64: 300.0}
# a bucket of the kernel path holds at least this many pairs (fewer, larger bmms)
_MIN_BUCKET = 256


@dataclass
class _Kernel:
    """A bucket of problems in the kernel domain, cropped to its longest sentences.

    idx          (N,) indices of the problems in the full batch
    K            (N, T', S') exp(-(C - f0 - g0) / eps); 1 where a token is padding (the
                 scalings are 0 there, so padding adds nothing to K v, K^T u or the plan)
    f0, g0       (N, T'), (N, S') the shifts (row, then column minima of the cost), 0 on padding
    safe         (N,) bool, max exponent (C - f0 - g0) / eps within KERNEL_MAX_EXPONENT
    """

    idx: Tensor
    K: Tensor
    f0: Tensor
    g0: Tensor
    safe: Tensor


def _kernel(cost: Tensor, src_mask: Tensor, tgt_mask: Tensor, idx: Tensor, eps: float, warm=None) -> _Kernel:
    """Shifted kernel of the problems ``idx`` of cost (B, T, S) (any finite value on padding),
    cropped to their last real tokens.

    warm: None, or potentials (f (B, T), g (B, S)) in cost units from eps-scaling, absorbed
    into the kernel (K = exp((f + g - C) / eps), so that the scalings start near 1). Entries
    far from the plan's support may then underflow to 0, which is harmless as long as every
    row and column keeps an entry near 1 (checked, with the overflow side, in ``safe``).
    """
    T = int(src_mask[idx].nonzero()[:, 1].max()) + 1
    S = int(tgt_mask[idx].nonzero()[:, 1].max()) + 1
    sm, tm = src_mask[idx, :T], tgt_mask[idx, :S]  # (N, T'), (N, S')
    inf_t = torch.zeros(sm.shape, dtype=cost.dtype, device=cost.device).masked_fill_(~sm, math.inf)
    inf_s = torch.zeros(tm.shape, dtype=cost.dtype, device=cost.device).masked_fill_(~tm, math.inf)
    c = torch.index_select(cost[:, :T, :S], 0, idx)  # (N, T', S'), a copy
    c.add_(inf_t[:, :, None]).add_(inf_s[:, None, :])  # +inf on padding
    limit = KERNEL_MAX_EXPONENT[cost.dtype]
    if warm is None:
        f0 = c.amin(dim=2).masked_fill_(~sm, 0.0)  # (N, T')
        c.sub_(f0[:, :, None])
        g0 = c.amin(dim=1).masked_fill_(~tm, 0.0)  # (N, S')
        c.sub_(g0[:, None, :])
        top = c.nan_to_num_(posinf=0.0).amax(dim=(1, 2)) / eps  # (N,) largest real exponent (real >= 0)
        safe = top <= limit
    else:
        f0 = warm[0][idx, :T].nan_to_num(neginf=0.0).masked_fill_(~sm, 0.0)  # (N, T'), 0 on zero mass
        g0 = warm[1][idx, :S].nan_to_num(neginf=0.0).masked_fill_(~tm, 0.0)  # (N, S')
        c.sub_(f0[:, :, None]).sub_(g0[:, None, :])  # C - f - g, +inf on padding
        low = c.amin(dim=(1, 2)) / eps  # (N,) most negative exponent: overflow guard
        near_t = c.amin(dim=2).masked_fill_(~sm, 0.0).amax(dim=1) / eps  # every row keeps an entry near 1
        near_s = c.amin(dim=1).masked_fill_(~tm, 0.0).amax(dim=1) / eps  # every column too
        safe = (low >= -limit) & (near_t <= limit) & (near_s <= limit)
        c.nan_to_num_(posinf=0.0)
    K = c.mul_(-1.0 / eps).exp_()  # (N, T', S'), 1 on padding
    return _Kernel(idx, K, f0, g0, safe)


def _sinkhorn_kernel(K, a, b, *, max_iter, tol, check_every, overrelax=False):
    """Balanced Sinkhorn in the kernel domain, shrinking the batch as problems converge.

    K (N, T, S): kernel, any positive value on padding; a (N, T), b (N, S) marginals (0 on padding, so u and v are 0 there). Iterates u = a / (K v), v = b / (K^T u) as batched row-vector
    products; stops a problem when the row error |u * K v - a|_1 (columns are exact after a
    v-step) is <= tol. A problem whose error turns non-finite is dropped and reported.
    overrelax: after OVERRELAX_WARMUP_CHECKS plain checks, u <- u^(1-w) (a / K v)^w and
    v <- v^(1-w) (b / K^T u)^w with each problem's own w in [1, OVERRELAX_MAX] (see
    OVERRELAX_MAX); the v-step before a check stays plain, so that the check still sees exact
    columns and the stopping rule is unchanged. Same fixed point, fewer iterations at small eps.
    Returns u (N, T), v (N, S), n_iter (of the slowest problem), err (N,) (NaN: failed).
    """
    N, T, S = K.shape
    u_out, v_out = a.new_zeros(N, T), b.new_ones(N, S)
    err_out = a.new_full((N,), math.inf)
    active = torch.arange(N, device=K.device)  # (N',) indices of the unconverged problems
    a3, b3 = a[:, None, :], b[:, None, :]  # (N, 1, T), (N, 1, S)
    u, v = a3.clone(), (b3 > 0).to(b.dtype)  # v: 0 on padding from the start
    w = a.new_ones(N, 1, 1)  # (N', 1, 1) relaxation of each problem (1: plain Sinkhorn)
    prev = a.new_full((N,), math.inf)  # (N',) error at the previous check
    relaxed = False  # set once the warm-up checks are done (overrelax only)
    n_iter, checks = max_iter, 0
    for it in range(1, max_iter + 1):
        Kv = torch.bmm(v, K.transpose(1, 2))  # (N', 1, T): row sums of diag(u) K diag(v) divided by u
        if it > 1 and (it - 1) % check_every == 0:
            err = (u * Kv - a3).abs().sum(dim=(1, 2))  # (N',)
            checks += 1
            if overrelax and checks == OVERRELAX_WARMUP_CHECKS:
                w = _omega(err, prev, check_every)[:, None, None]
                relaxed = True
            elif relaxed:
                w = torch.where((err > prev)[:, None, None], 1.0, w)  # the safeguard
            prev = err
            done = (err <= tol) | ~torch.isfinite(err)
            if bool(done.any()):
                idx = active[done]
                u_out[idx], v_out[idx] = u[done, 0], v[done, 0]
                err_out[idx] = torch.where(torch.isfinite(err[done]), err[done], math.nan)
                if bool(done.all()):
                    n_iter = it - 1
                    break
                keep = ~done
                active, K = active[keep], K[keep]
                a3, b3, u, v, Kv = a3[keep], b3[keep], u[keep], v[keep], Kv[keep]
                err, prev, w = err[keep], prev[keep], w[keep]
            err_out[active] = err
        if relaxed:  # u^(1-w) (a / Kv)^w = u (a / (u Kv))^w, 0 where a is
            u = torch.where(a3 > 0, u * (a3 / (u * Kv)) ** w, 0.0)
            KTu = torch.bmm(u, K)  # (N', 1, S)
            v = b3 / KTu if it % check_every == 0 else torch.where(b3 > 0, v * (b3 / (v * KTu)) ** w, 0.0)
        else:
            u = a3 / Kv
            v = b3 / torch.bmm(u, K)  # (N', 1, S)
    else:
        u_out[active], v_out[active] = u[:, 0], v[:, 0]
    return u_out, v_out, n_iter, err_out


def _buckets(src_mask: Tensor, tgt_mask: Tensor, min_size: int | None = None) -> list[Tensor]:
    """Split a batch into buckets of similar lengths (sorted by last real source, then target token).

    Each bucket is later cropped to its own longest sentences, so that a batch of short and
    long pairs does not pay for padding everywhere. Returns a list of (N_k,) index tensors;
    a batch smaller than 2 * min_size stays whole: [arange(B)].
    """
    B, T = src_mask.shape
    S = tgt_mask.shape[1]
    last_t = (src_mask * torch.arange(1, T + 1, device=src_mask.device)).amax(dim=1)  # (B,)
    last_s = (tgt_mask * torch.arange(1, S + 1, device=tgt_mask.device)).amax(dim=1)  # (B,)
    n = max(1, B // (min_size or _MIN_BUCKET))
    if n == 1:
        return [torch.arange(B, device=src_mask.device)]
    n_t = max(1, round(math.sqrt(n)))
    n_s = max(1, n // n_t)
    out = []
    for chunk in torch.argsort(last_t, stable=True).tensor_split(n_t):
        out.extend(chunk[torch.argsort(last_s[chunk], stable=True)].tensor_split(n_s))
    return [idx for idx in out if len(idx)]


@dataclass
class _Solution:
    """Converged scalings of a batch: plan (B, T, S), potentials f (B, T), g (B, S) in cost
    units (-inf on padding and zero mass), the solver's row check (B,) and n_iter."""

    plan: Tensor
    f: Tensor
    g: Tensor
    check: Tensor
    n_iter: int


def _sinkhorn_detached(p: _Problem, eps: float, *, max_iter, tol, check_every, domain, warm=None,
                       overrelax=False) -> _Solution:
    """Sinkhorn without autograd: kernel domain where numerically safe, log domain otherwise.

    Problems are bucketed by length; a bucket whose exponent (C - row/col minima) / eps stays
    within KERNEL_MAX_EXPONENT iterates on the kernel with two bmms per iteration, every other
    problem (and any that produced a non-finite value) runs the log-domain solver.
    ``p.cost`` may hold any finite value on padding. ``warm``: potentials (f, g) in cost
    units to start from (eps-scaling), absorbed into the kernel / used as the log-domain v.
    ``overrelax``: adaptive over-relaxation of the iterations (kernel and log domain).
    """
    cost = p.cost.detach()
    B, T, S = cost.shape
    blocks = []  # (idx, (N, T', S') plan block) per bucket
    f = cost.new_full((B, T), -math.inf)
    g = cost.new_full((B, S), -math.inf)
    check = cost.new_full((B,), math.inf)
    n_iter, fallback, buckets = 0, [], []
    if domain == "auto" and cost.dtype in KERNEL_MAX_EXPONENT:
        buckets = _buckets(p.src_mask, p.tgt_mask)
    else:
        fallback.append(torch.arange(B, device=cost.device))
    for idx in buckets:
        k = _kernel(cost, p.src_mask, p.tgt_mask, idx, eps, warm)
        if not bool(k.safe.all()):
            fallback.append(idx[~k.safe])
            if not bool(k.safe.any()):
                continue
            k = _Kernel(*(x[k.safe] for x in (k.idx, k.K, k.f0, k.g0, k.safe)))
        Tk, Sk = k.K.shape[1:]
        u, v, n, err = _sinkhorn_kernel(
            k.K, p.a[k.idx, :Tk], p.b[k.idx, :Sk], max_iter=max_iter, tol=tol, check_every=check_every,
            overrelax=overrelax,
        )
        ok = torch.isfinite(err) & torch.isfinite(u).all(dim=1) & torch.isfinite(v).all(dim=1)  # (N,)
        if not bool(ok.all()):
            fallback.append(k.idx[~ok])
            k.idx, k.K, u, v, err, k.f0, k.g0 = k.idx[ok], k.K[ok], u[ok], v[ok], err[ok], k.f0[ok], k.g0[ok]
        blocks.append((k.idx, k.K.mul_(u[:, :, None]).mul_(v[:, None, :])))  # (N, T', S') plan, in place
        f[k.idx, :Tk] = eps * u.log() + k.f0  # log 0 = -inf on padding and zero mass
        g[k.idx, :Sk] = eps * v.log() + k.g0
        check[k.idx] = err
        n_iter = max(n_iter, n)
    if len(blocks) == 1 and blocks[0][1].shape == cost.shape:  # one bucket, whole and uncropped:
        plan = blocks[0][1]  # its idx is arange(B)
    else:
        plan = torch.zeros_like(cost)  # (B, T, S)
        for idx, block in blocks:
            plan[idx, : block.shape[1], : block.shape[2]] = block
    if fallback:
        idx = torch.cat(fallback)
        pair = p.src_mask[idx, :, None] & p.tgt_mask[idx, None, :]  # (N, T, S)
        logK = torch.where(pair, cost[idx], 0.0) / (-eps)  # (N, T, S), 0 on padding
        v0 = None if warm is None else (warm[1][idx] / eps).masked_fill(~p.tgt_mask[idx], -math.inf)  # (N, S)
        u, v, n, err = _sinkhorn_active_set(
            logK, p.a[idx].log(), p.b[idx].log(), max_iter=max_iter, tol=tol, check_every=check_every, v0=v0,
            overrelax=overrelax,
        )
        plan[idx] = (logK + u[:, :, None] + v[:, None, :]).exp()  # -inf -> exactly 0 on padding
        f[idx], g[idx], check[idx] = eps * u, eps * v, err
        n_iter = max(n_iter, n)
    return _Solution(plan, f, g, check, n_iter)


# iterations per annealing stage of eps-scaling (at most; a stage stops early once it meets tol).
# On 64 FLORES dev deu-eng pairs (e5 last layer, cosine cost, eps 0.005, ratio 0.5): 10 leaves
# the warm start too far for the kernel domain (1.05 s), 30 gives 0.19 s, 100 gives 0.21 s.
EPS_SCALING_STAGE_ITERS = 30
# eps-scaling starts at diameter / this: a stage that converges from a cold start in a few dozen
# iterations (the kernel exp(-C / eps) spans at most e^10). Larger stages only cost iterations;
# much smaller ones leave the first stage unconverged: at diameter / 30 one of the four German
# pairs of tests/test_distill.py (divergence, eps 0.01) no longer converged within 1000
# iterations, at / 10 and / 1 all did. Real e5 costs, 1024 FLORES pairs, eps 0.005 / 0.01, one
# thread (benchmarks/transport_objectives.json, eps_scaling_start): / 1 1.76 / 1.37 s,
# / 10 1.60 / 1.25 s, / 30 2.28 / 0.85 s, the same fraction converged (98.4-98.8%).
EPS_SCALING_START = 10.0


def eps_schedule(cost: Tensor, src_mask: Tensor, tgt_mask: Tensor, eps: float, ratio: float) -> list[float]:
    """The annealing stages of eps-scaling, before the target ``eps``.

    Starts at the scale of the costs: the diameter of the problem (the largest spread
    max C - min C of the real cost entries of the batch) divided by ``EPS_SCALING_START``,
    and divides by 1 / ``ratio`` while the value stays above ``eps``; empty when that start
    is already at most ``eps``. The schedule of GeomLoss's ``scaling`` and OTT-JAX's
    ``epsilon_scheduler``, started lower: stages at eps >= diameter / 10 converge from a cold
    start anyway and only cost iterations. Each stage runs until its marginal error is
    below tol or for ``EPS_SCALING_STAGE_ITERS`` iterations and warm-starts the next.

    >>> C = torch.tensor([[[0.0, 0.6], [0.6, 0.0]]])
    >>> [round(e, 3) for e in eps_schedule(C, torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool), 0.005, 0.5)]
    [0.06, 0.03, 0.015, 0.008]
    """
    pair = src_mask[:, :, None] & tgt_mask[:, None, :]  # (B, T, S)
    c = cost.detach()
    diam = float((c.masked_fill(~pair, -math.inf).amax(dim=(1, 2)) - c.masked_fill(~pair, math.inf).amin(dim=(1, 2))).max())
    stages, e = [], diam / EPS_SCALING_START
    while e > eps and len(stages) < 100:
        stages.append(e)
        e *= ratio
    return stages


def sinkhorn(
    cost: Tensor,
    src_mask: Tensor | None = None,
    tgt_mask: Tensor | None = None,
    *,
    eps: float,
    a: Tensor | None = None,
    b: Tensor | None = None,
    max_iter: int = SINKHORN_MAX_ITER,
    tol: float = SINKHORN_TOL,
    grad: str = "envelope",
    check_every: int = 10,
    domain: str = "auto",
    eps_scaling: float | None = None,
    overrelax: bool = False,
) -> TransportResult:
    """Entropic OT for a batch of padded problems.

    Solves OT_eps = min_P <P, C> + eps KL(P | a b^T)  s.t. P 1 = a, P^T 1 = b, P >= 0, per pair.

    cost      (B, T, S) float32/float64 cost (cosine distances lie in [0, 2]); padding
              entries are ignored
    src_mask  (B, T) bool, True on real source tokens (default: all real)
    tgt_mask  (B, S) bool, True on real target tokens
    eps       entropic regularisation > 0, in cost units (stable down to 1e-3 on [0, 2] costs;
              small eps needs many iterations unless ``eps_scaling`` is set)
    a, b      (B, T), (B, S) marginals (default: uniform over real tokens, see ``marginal``);
              real tokens of zero mass get exactly zero plan rows / columns
    max_iter  iteration cap (annealing stages included); tol: L1 marginal error at which a
              problem counts as converged, checked every ``check_every`` iterations (a check
              costs nothing extra). Defaults SINKHORN_MAX_ITER / SINKHORN_TOL: a plan solved
              on its own; the OT loss passes OTConfig's budget instead
    grad      "envelope": iterations run without autograd; ``cost`` and ``value`` are
              differentiable w.r.t. the cost with the plan held constant (d value / d cost =
              plan exactly at convergence, the envelope theorem; cheap).
              "unroll": backpropagate through every iteration (the plan is differentiable
              too; memory grows with the number of iterations; always log domain).
              "none": no gradient at all.
    domain    "auto" (envelope / none): problems whose (C - row/col minima) / eps stays below
              KERNEL_MAX_EXPONENT iterate on the kernel exp(-C / eps) with batched matrix-vector
              products, the others (small eps) in the log domain, as does any problem whose
              kernel iterations produce a non-finite value; "log": log domain only.
    eps_scaling  None, or a ratio r in (0, 1): anneal eps from diameter / EPS_SCALING_START
              down to ``eps`` by factor r per stage (at most EPS_SCALING_STAGE_ITERS
              iterations each, see ``eps_schedule``), warm-starting the potentials; each next
              stage absorbs them into the kernel, so that small eps stays in the fast kernel
              domain. ``result.stages`` lists the iterations of each stage.
    overrelax adaptive over-relaxation of the iterations (envelope / none; see
              OVERRELAX_MAX): the same fixed point and stopping rule in fewer iterations, 2-3x
              fewer on real e5 costs at eps 0.005-0.02 (benchmarks/transport_objectives.json,
              overrelax). Off by default: on, plans differ from plain Sinkhorn's within the
              tolerance, not bit for bit.
    returns   TransportResult; a warning (never NaN) when some problem did not converge

    >>> res = sinkhorn(torch.rand(1, 3, 4), eps=0.1)
    >>> torch.allclose(res.plan.sum(2), torch.full((1, 3), 1 / 3), atol=1e-4)
    True
    """
    if grad not in SOLVER_GRAD_MODES:
        raise ValueError(f"grad must be one of {SOLVER_GRAD_MODES}, got {grad!r}")
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    _check_eps(eps)
    if eps_scaling is not None and not (isinstance(eps_scaling, (int, float)) and 0 < eps_scaling < 1):
        raise ValueError(f"eps_scaling must be a ratio in (0, 1) or None, got {eps_scaling!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    track = grad == "unroll" and torch.is_grad_enabled()
    p = _prepare(cost, src_mask, tgt_mask, a, b, eps, fill_padding=track)
    loga, logb = p.a.log(), p.b.log()  # -inf on padding and zero mass
    stages = eps_schedule(p.cost, p.src_mask, p.tgt_mask, eps, eps_scaling) if eps_scaling else []
    n_iter = 0
    done = []  # (eps, iterations) per stage
    if track:  # autograd through every iteration: no in-place ops, no batch shrinking
        v, prev = None, None
        logK = p.cost / (-eps)  # (B, T, S)
        for e in stages + [eps]:
            if v is not None:  # warm start: the previous stage's potential g = prev * v, in cost units
                v = v * (prev / e)
            budget = max_iter - n_iter if e == eps else min(EPS_SCALING_STAGE_ITERS, max_iter - n_iter - 1)
            if budget < 1:
                continue
            u, v, n, check = _sinkhorn_iterations(
                p.cost / (-e), loga, logb, max_iter=budget, tol=tol, check_every=check_every, inplace=False, v0=v
            )
            n_iter, prev = n_iter + n, e
            done.append((e, n))
        log_plan = logK + u[:, :, None] + v[:, None, :]  # (B, T, S), -inf on padding
        plan = log_plan.exp()
        f, g = (eps * u).detach(), (eps * v).detach()
    else:
        with torch.no_grad():
            warm = None
            for e in stages:
                budget = min(EPS_SCALING_STAGE_ITERS, max_iter - n_iter - 1)
                if budget < 1:
                    break
                sol = _sinkhorn_detached(p, e, max_iter=budget, tol=tol, check_every=check_every, domain=domain, warm=warm,
                                         overrelax=overrelax)
                warm, n_iter = (sol.f, sol.g), n_iter + sol.n_iter
                done.append((e, sol.n_iter))
            sol = _sinkhorn_detached(
                p, eps, max_iter=max_iter - n_iter, tol=tol, check_every=check_every, domain=domain, warm=warm,
                overrelax=overrelax,
            )
        plan, f, g, check = sol.plan, sol.f, sol.g, sol.check
        n_iter += sol.n_iter
        done.append((eps, sol.n_iter))
    rows, cols = plan.detach().sum(2), plan.detach().sum(1)  # (B, T), (B, S)
    err = (rows - p.a).abs().sum(1) + (cols - p.b).abs().sum(1)
    # the solver's own check (row error with exact columns) decides convergence: recomputed
    # from the plan, float32 rounding alone can add ~1e-6
    converged = check.detach() <= tol
    _warn_unconverged("sinkhorn", converged, n_iter, f"eps={eps}, max marginal error {float(err.max()):.3g} > tol={tol}",
                      "; raise max_iter or eps, or set eps_scaling")
    B = plan.shape[0]
    # (B, 1, T*S) @ (B, T*S, 1): <plan, cost> without a (B, T, S) temporary
    cost_out = torch.bmm(plan.reshape(B, 1, -1), p.cost.reshape(B, -1, 1)).view(B)  # (B,)
    if grad == "none":
        cost_out = cost_out.detach()
    if track:
        value = cost_out + eps * entropic_kl(plan, p.a, p.b, log_plan=log_plan)
    else:
        # KL(P | a b^T) = sum P (log P - log a - log b) - sum P + 1, and log P = (f + g - C) / eps:
        # eps KL = <f - eps log a, P 1> + <g - eps log b, P^T 1> - <P, C> - eps (sum P - 1)
        fa = torch.where(rows > 0, (f - eps * loga) * rows, 0.0).sum(1)  # (B,)
        gb = torch.where(cols > 0, (g - eps * logb) * cols, 0.0).sum(1)  # (B,)
        kl_eps = fa + gb - cost_out.detach() - eps * (rows.sum(1) - 1)  # (B,) eps * KL
        value = cost_out + kl_eps
    return TransportResult(
        plan=plan,
        cost=cost_out,
        converged=converged,
        n_iter=n_iter,
        marginal_error=err,
        value=value,
        potentials=(f, g),
        stages=done,
    )


def sinkhorn_symmetric(
    cost: Tensor,
    mask: Tensor | None = None,
    *,
    eps: float,
    a: Tensor | None = None,
    max_iter: int = SINKHORN_MAX_ITER,
    tol: float = SINKHORN_TOL,
    grad: str = "envelope",
    check_every: int = 5,
) -> TransportResult:
    """Entropic OT of a measure with itself, OT_eps(a, a), for a symmetric cost (B, T, T).

    The self-terms of the debiased Sinkhorn divergence. The optimal potentials of a symmetric
    problem are equal (f = g), and the averaged fixed-point iteration f <- (f + T(f)) / 2 of
    GeomLoss (Feydy et al., AISTATS 2019) converges in a few dozen iterations where
    alternating Sinkhorn oscillates slowly. Log domain. Shapes and ``grad`` as in ``sinkhorn``
    with ``src_mask = tgt_mask = mask`` and ``b = a``; the plan is symmetric.
    """
    if grad not in SOLVER_GRAD_MODES:
        raise ValueError(f"grad must be one of {SOLVER_GRAD_MODES}, got {grad!r}")
    _check_eps(eps)
    if cost.dim() != 3 or cost.shape[1] != cost.shape[2]:
        raise ValueError(f"cost must be a square (B, T, T) tensor, got {tuple(cost.shape)}")
    track = grad == "unroll" and torch.is_grad_enabled()
    p = _prepare(cost, mask, mask, a, a, eps, fill_padding=True)
    loga = p.a.log()  # (B, T), -inf on padding and zero mass
    real = torch.isfinite(loga)
    with torch.set_grad_enabled(track):
        logK = (p.cost if track else p.cost.detach()) / (-eps)  # (B, T, T), 0 on padding (u = -inf there)
        u = torch.zeros_like(loga).masked_fill(~real, -math.inf)  # (B, T) = f / eps
        err = torch.full_like(loga[:, 0], math.inf)
        n_iter = 0
        for n_iter in range(1, max_iter + 1):
            row = torch.logsumexp(logK + u[:, None, :], dim=2)  # (B, T)
            if (n_iter - 1) % check_every == 0:
                err = (torch.exp(u + row) - p.a).abs().sum(1).detach()  # rows (= columns) of the current plan
                if bool((err <= tol).all()):
                    break
            u = torch.where(real, 0.5 * (u + loga - row), -math.inf)
        log_plan = logK + u[:, :, None] + u[:, None, :]  # (B, T, T), -inf on padding
        plan = log_plan.exp()
    converged = err <= tol
    _warn_unconverged("sinkhorn_symmetric", converged, n_iter, f"eps={eps}, max marginal error {float(err.max()):.3g} > tol={tol}")
    cost_out = (plan * p.cost).sum(dim=(1, 2))  # (B,): gradient through the cost (and plan when unrolled)
    if grad == "none":
        cost_out = cost_out.detach()
    value = cost_out + eps * entropic_kl(plan, p.a, p.a, log_plan=log_plan)
    f = (eps * u).detach()
    return TransportResult(
        plan=plan,
        cost=cost_out,
        converged=converged,
        n_iter=n_iter,
        marginal_error=_marginal_error(plan.detach(), p.a, p.a),
        value=value,
        potentials=(f, f),
    )


def entropic_kl(plan: Tensor, a: Tensor, b: Tensor, log_plan: Tensor | None = None) -> Tensor:
    """KL(plan | a b^T) = sum P log(P / (a b^T)) - sum P + 1 per problem -> (B,).

    plan (B, T, S) >= 0 (differentiable or not), a (B, T), b (B, S) its reference marginals;
    entries with P = 0 contribute 0 (and no gradient). ``log_plan`` (B, T, S), when known,
    avoids log(0) and gives exact gradients through the plan.
    """
    pos = plan > 0
    logP = log_plan if log_plan is not None else plan.clamp_min(torch.finfo(plan.dtype).tiny).log()
    loga = a.clamp_min(torch.finfo(a.dtype).tiny).log()
    logb = b.clamp_min(torch.finfo(b.dtype).tiny).log()
    ratio = torch.where(pos, logP - loga[:, :, None] - logb[:, None, :], 0.0)  # (B, T, S)
    return (plan * ratio).sum(dim=(1, 2)) - plan.sum(dim=(1, 2)) + 1.0


def _warn_unconverged(solver: str, converged: Tensor, n_iter: int, detail: str, advice: str = "") -> None:
    """One RuntimeWarning (never NaN) for the problems of a batch that missed their tolerance,
    attributed to the caller of the solver."""
    if not bool(converged.all()):
        warnings.warn(
            f"{solver}: {int((~converged).sum())}/{len(converged)} problems did not converge in {n_iter} "
            f"iterations ({detail}){advice}",
            RuntimeWarning,
            stacklevel=3,
        )


def _marginal_error(plan: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """(B,) L1 error of both marginals of plan (B, T, S)."""
    return (plan.sum(2) - a).abs().sum(1) + (plan.sum(1) - b).abs().sum(1)


def sinkhorn_unbalanced(
    cost: Tensor,
    src_mask: Tensor | None = None,
    tgt_mask: Tensor | None = None,
    *,
    eps: float,
    rho: float = 1.0,
    a: Tensor | None = None,
    b: Tensor | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    grad: str = "envelope",
    check_every: int = 10,
) -> TransportResult:
    """Unbalanced entropic OT with KL-relaxed marginals, batched and masked.

    Solves min_P <P, C> + eps KL(P | a b^T) + rho KL(P 1 | a) + rho KL(P^T 1 | b), the
    formulation of ``ot.unbalanced.sinkhorn_unbalanced(reg_type="kl")``. Small ``rho``
    lets tokens without a counterpart keep their mass (untranslated words); rho -> inf
    recovers balanced OT. Shapes and ``grad`` as in ``sinkhorn``; ``tol`` bounds the change
    of the log-potentials between checks. ``marginal_error`` measures the (allowed)
    deviation from a and b.
    """
    if grad not in SOLVER_GRAD_MODES:
        raise ValueError(f"grad must be one of {SOLVER_GRAD_MODES}, got {grad!r}")
    if not (isinstance(rho, (int, float)) and rho > 0):
        raise ValueError(f"rho must be > 0, got {rho!r}")
    p = _prepare(cost, src_mask, tgt_mask, a, b, eps)
    loga, logb = p.a.log(), p.b.log()
    track = grad == "unroll" and torch.is_grad_enabled()
    with torch.set_grad_enabled(track):
        c = p.cost if track else p.cost.detach()
        # kernel of KL(P | a b^T): -C / eps + log a_t + log b_s (finite: padding is handled by u, v)
        logK = c / (-eps) + loga.masked_fill(~torch.isfinite(loga), 0)[:, :, None] + logb.masked_fill(~torch.isfinite(logb), 0)[:, None, :]
        if not track:
            loga, logb = loga.detach(), logb.detach()
        tau = rho / (rho + eps) if math.isfinite(rho) else 1.0
        u, v, n_iter, err = _sinkhorn_iterations(
            logK, loga, logb, max_iter=max_iter, tol=tol, check_every=check_every, tau=tau, inplace=not track
        )
        plan = (logK + u[:, :, None] + v[:, None, :]).exp()
    converged = err <= tol
    _warn_unconverged("sinkhorn_unbalanced", converged, max_iter, f"potential change {float(err.max()):.3g} > tol={tol}")
    plan_c = plan if track else plan.detach()
    cost_out = (plan_c * p.cost).sum(dim=(1, 2))
    if grad == "none":
        cost_out = cost_out.detach()
    return TransportResult(
        plan=plan_c,
        cost=cost_out,
        converged=converged,
        n_iter=n_iter,
        marginal_error=_marginal_error(plan.detach(), p.a, p.b),
        potentials=((eps * u).detach(), (eps * v).detach()),
    )


# --------------------------------------------------------------------------- POT, pair by pair


def _per_pair(p: _Problem, solve_one, threads: int = 1) -> TransportResult:
    """Run ``solve_one(a_np, b_np, C_np, i) -> (plan_np, converged)`` on the real block of each
    pair, in a pool of ``threads`` threads (POT's network simplex releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    B, T, S = p.cost.shape
    plan = torch.zeros(B, T, S, dtype=torch.float64)
    conv = torch.ones(B, dtype=torch.bool)
    C = p.cost.detach().to("cpu", torch.float64).numpy()
    A, Bm = p.a.detach().to("cpu", torch.float64).numpy(), p.b.detach().to("cpu", torch.float64).numpy()
    sm, tm = p.src_mask.cpu().numpy(), p.tgt_mask.cpu().numpy()
    rows = [np.flatnonzero(sm[i]) for i in range(B)]
    cols = [np.flatnonzero(tm[i]) for i in range(B)]

    def job(i):
        return solve_one(A[i, rows[i]], Bm[i, cols[i]], C[i][np.ix_(rows[i], cols[i])], i)

    if threads > 1 and B > 1:
        with ThreadPoolExecutor(min(threads, B)) as pool:
            out = list(pool.map(job, range(B)))
    else:
        out = [job(i) for i in range(B)]
    for i, (block, ok) in enumerate(out):
        plan[i, torch.as_tensor(rows[i])[:, None], torch.as_tensor(cols[i])[None, :]] = torch.as_tensor(block)
        conv[i] = ok
    plan = plan.to(p.cost.device, p.cost.dtype)
    return TransportResult(
        plan=plan,
        cost=(plan * p.cost).sum(dim=(1, 2)),  # envelope gradient: the plan is constant
        converged=conv.to(p.cost.device),
        n_iter=0,
        marginal_error=_marginal_error(plan, p.a, p.b),
    )


def emd(cost, src_mask=None, tgt_mask=None, *, a=None, b=None, max_iter: int = 100_000) -> TransportResult:
    """Exact OT (network simplex, ``ot.emd``) pair by pair. Shapes as in ``sinkhorn``.

    ``cost`` is differentiable w.r.t. the cost matrix (gradient = plan, exact for EMD).
    """
    import ot

    p = _prepare(cost, src_mask, tgt_mask, a, b)

    def one(a_, b_, c_, i):
        plan, log = ot.emd(a_ / a_.sum(), b_ / b_.sum(), c_, numItermax=max_iter, log=True)
        return plan, log["warning"] is None

    return _per_pair(p, one, threads=torch.get_num_threads())


def partial(cost, src_mask=None, tgt_mask=None, *, mass: float = 0.8, a=None, b=None) -> TransportResult:
    """Exact partial OT (``ot.partial.partial_wasserstein``): transport only ``mass`` in (0, 1].

    Tokens without a good counterpart are left unmatched. Shapes as in ``sinkhorn``.
    """
    import ot

    if not (0 < mass <= 1):
        raise ValueError(f"mass must be in (0, 1], got {mass!r}")
    p = _prepare(cost, src_mask, tgt_mask, a, b)

    def one(a_, b_, c_, i):
        return ot.partial.partial_wasserstein(a_, b_, c_, m=min(mass, a_.sum(), b_.sum())), True

    return _per_pair(p, one)


def gromov_wasserstein(
    src_cost: Tensor,
    tgt_cost: Tensor,
    src_mask=None,
    tgt_mask=None,
    *,
    cost: Tensor | None = None,
    alpha: float = 0.5,
    a=None,
    b=None,
) -> TransportResult:
    """Gromov-Wasserstein (``ot.gromov``) pair by pair: matches the *structure* of two sentences.

    src_cost (B, T, T) intra-source costs (e.g. ``cost_matrix(x, x)``); tgt_cost (B, S, S)
    cost     optional (B, T, S) cross cost: then fused GW, alpha weighting the structure term
    returns  plan (B, T, S); ``cost`` is <plan, cost> when a cross cost is given, else the GW loss
    """
    import ot

    if src_cost.dim() != 3 or tgt_cost.dim() != 3 or src_cost.shape[0] != tgt_cost.shape[0]:
        raise ValueError(f"src_cost and tgt_cost must be (B, T, T) and (B, S, S), got {tuple(src_cost.shape)} and {tuple(tgt_cost.shape)}")
    B, T, _ = src_cost.shape
    S = tgt_cost.shape[1]
    if src_cost.shape[1:] != (T, T) or tgt_cost.shape[1:] != (S, S):
        raise ValueError(f"src_cost and tgt_cost must be square, got {tuple(src_cost.shape)} and {tuple(tgt_cost.shape)}")
    cross = cost if cost is not None else torch.zeros(B, T, S, dtype=src_cost.dtype, device=src_cost.device)
    p = _prepare(cross, src_mask, tgt_mask, a, b)
    C1 = src_cost.detach().to("cpu", torch.float64)
    C2 = tgt_cost.detach().to("cpu", torch.float64)
    sm, tm = p.src_mask.cpu(), p.tgt_mask.cpu()
    losses = torch.zeros(B, dtype=torch.float64)

    def one(a_, b_, c_, i):
        ri, ci = sm[i].nonzero().flatten(), tm[i].nonzero().flatten()
        c1, c2 = C1[i][ri][:, ri].numpy(), C2[i][ci][:, ci].numpy()
        if cost is None:
            plan, log = ot.gromov.gromov_wasserstein(c1, c2, a_, b_, log=True)
            losses[i] = log["gw_dist"]
        else:
            plan, log = ot.gromov.fused_gromov_wasserstein(c_, c1, c2, a_, b_, alpha=alpha, log=True)
            losses[i] = log["fgw_dist"]
        return plan, True

    res = _per_pair(p, one)
    if cost is None:
        res.cost = losses.to(p.cost.device, p.cost.dtype)
    return res


def solve(
    cost: Tensor | None,
    src_mask: Tensor | None = None,
    tgt_mask: Tensor | None = None,
    method: str = "sinkhorn",
    **kw,
) -> TransportResult:
    """One entry point for every solver: ``method`` in SOLVERS, keyword arguments passed on.

    "sinkhorn" (eps, a, b, max_iter, tol, grad), "unbalanced" (eps, rho, ...), "emd",
    "partial" (mass), "gw" (src_cost, tgt_cost, optional cross ``cost`` with alpha).

    >>> c = torch.rand(2, 3, 4)
    >>> [solve(c, method=m, eps=0.1).plan.shape[1:] for m in ("sinkhorn", "emd")]
    [torch.Size([3, 4]), torch.Size([3, 4])]
    """
    if method == "sinkhorn":
        return sinkhorn(cost, src_mask, tgt_mask, **kw)
    if method == "unbalanced":
        return sinkhorn_unbalanced(cost, src_mask, tgt_mask, **kw)
    # the exact solvers have no eps; accept it so that callers can switch methods freely
    kw.pop("eps", None)
    kw.pop("grad", None)
    if method == "emd":
        return emd(cost, src_mask, tgt_mask, **kw)
    if method == "partial":
        return partial(cost, src_mask, tgt_mask, **kw)
    if method == "gw":
        if "src_cost" not in kw or "tgt_cost" not in kw:
            raise ValueError("method='gw' needs src_cost (B, T, T) and tgt_cost (B, S, S)")
        return gromov_wasserstein(kw.pop("src_cost"), kw.pop("tgt_cost"), src_mask, tgt_mask, cost=cost, **kw)
    raise ValueError(f"method must be one of {SOLVERS}, got {method!r}")


__all__ = [
    "SOLVERS",
    "METRICS",
    "SOLVER_GRAD_MODES",
    "DOMAINS",
    "SINKHORN_MAX_ITER",
    "SINKHORN_TOL",
    "KERNEL_MAX_EXPONENT",
    "TransportResult",
    "cost_matrix",
    "marginal",
    "sinkhorn",
    "eps_schedule",
    "sinkhorn_symmetric",
    "entropic_kl",
    "sinkhorn_unbalanced",
    "emd",
    "partial",
    "gromov_wasserstein",
    "solve",
]
