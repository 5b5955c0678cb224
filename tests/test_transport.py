"""optical_viz.transport against POT, scipy and invariants."""
from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from optical_viz import transport
from optical_viz.transport import (
    TransportResult,
    cost_matrix,
    emd,
    marginal,
    partial,
    sinkhorn,
    sinkhorn_unbalanced,
    solve,
)

ATOL_POT = 1e-6  # agreement with POT in float64
TIGHT = dict(tol=1e-12, max_iter=100_000)


def _batch(B=3, T=6, S=5, H=4, seed=0, dtype=torch.float64):
    """Random cosine costs with ragged masks: (B, T, S), (B, T), (B, S)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, H, generator=g, dtype=dtype)
    y = torch.randn(B, S, H, generator=g, dtype=dtype)
    tl = torch.randint(1, T + 1, (B,), generator=g)
    sl = torch.randint(1, S + 1, (B,), generator=g)
    tl[0], sl[0] = T, S  # one full row
    sm = torch.arange(T)[None] < tl[:, None]
    tm = torch.arange(S)[None] < sl[:, None]
    return cost_matrix(x, y), sm, tm


def _blocks(C, sm, tm):
    for i in range(C.shape[0]):
        r, c = sm[i].nonzero().flatten(), tm[i].nonzero().flatten()
        yield i, r, c, C[i][r][:, c].numpy()


# ----------------------------------------------------------------------------- cost, marginal


def test_cost_matrix_metrics_match_brute_force():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 3, 5, generator=g, dtype=torch.float64), torch.randn(2, 4, 5, generator=g, dtype=torch.float64)
    cos = cost_matrix(x, y, "cosine")
    sq = cost_matrix(x, y, "sqeuclidean")
    dot = cost_matrix(x, y, "dot")
    for b in range(2):
        for t in range(3):
            for s in range(4):
                xv, yv = x[b, t], y[b, s]
                assert cos[b, t, s] == pytest.approx(1 - float(xv @ yv / (xv.norm() * yv.norm())), abs=1e-12)
                assert sq[b, t, s] == pytest.approx(float(((xv - yv) ** 2).sum()), abs=1e-10)
                assert dot[b, t, s] == pytest.approx(-float(xv @ yv), abs=1e-12)
    assert torch.allclose(cost_matrix(x[0], y[0]), cos[0])  # unbatched


def test_cost_matrix_masks_zero_padding_and_rejects_shapes():
    x, y = torch.randn(1, 3, 4), torch.randn(1, 2, 4)
    x[0, 2] = 0  # a zero vector at padding would give a meaningless cosine
    c = cost_matrix(x, y, x_mask=torch.tensor([[True, True, False]]))
    assert (c[0, 2] == 0).all() and (c[0, :2] != 0).all()
    with pytest.raises(ValueError, match=r"\(1, 3, 4\).*\(1, 2, 5\)"):
        cost_matrix(x, torch.randn(1, 2, 5))


def test_marginal_uniform_weighted_and_invalid():
    m = torch.tensor([[True, True, False], [True, False, False]])
    assert torch.equal(marginal(m), torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]))
    w = torch.tensor([[1.0, 3.0, 99.0], [2.0, 5.0, 5.0]])
    assert torch.allclose(marginal(m, w), torch.tensor([[0.25, 0.75, 0.0], [1.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        marginal(torch.tensor([[True], [False]]))
    with pytest.raises(ValueError, match="non-negative"):
        marginal(m, -w)


# ----------------------------------------------------------------------------- agreement with POT


@pytest.mark.parametrize("eps", [0.05, 0.5])
def test_sinkhorn_matches_pot_log_domain(eps):
    C, sm, tm = _batch()
    res = sinkhorn(C, sm, tm, eps=eps, **TIGHT)
    assert isinstance(res, TransportResult) and bool(res.converged.all())
    for i, r, c, block in _blocks(C, sm, tm):
        a, b = np.full(len(r), 1 / len(r)), np.full(len(c), 1 / len(c))
        ref = ot.sinkhorn(a, b, block, eps, method="sinkhorn_log", stopThr=1e-14, numItermax=100_000)
        np.testing.assert_allclose(res.plan[i][r][:, c].numpy(), ref, atol=ATOL_POT, rtol=0)
        assert float(res.cost[i]) == pytest.approx(float((ref * block).sum()), abs=ATOL_POT)


def test_sinkhorn_weighted_marginals_match_pot():
    C, sm, tm = _batch(seed=3)
    g = torch.Generator().manual_seed(4)
    a = marginal(sm, torch.rand(sm.shape, generator=g, dtype=torch.float64) + 0.1)
    b = marginal(tm, torch.rand(tm.shape, generator=g, dtype=torch.float64) + 0.1)
    res = sinkhorn(C, sm, tm, eps=0.1, a=a, b=b, **TIGHT)
    for i, r, c, block in _blocks(C, sm, tm):
        ref = ot.sinkhorn(a[i, r].numpy(), b[i, c].numpy(), block, 0.1, method="sinkhorn_log", stopThr=1e-14)
        np.testing.assert_allclose(res.plan[i][r][:, c].numpy(), ref, atol=ATOL_POT, rtol=0)


def test_emd_matches_pot():
    C, sm, tm = _batch(seed=5)
    res = emd(C, sm, tm)
    for i, r, c, block in _blocks(C, sm, tm):
        ref = ot.emd(np.full(len(r), 1 / len(r)), np.full(len(c), 1 / len(c)), block)
        assert float(res.cost[i]) == pytest.approx(float((ref * block).sum()), abs=1e-10)
    assert bool(res.converged.all()) and float(res.marginal_error.max()) < 1e-12


@pytest.mark.parametrize("rho", [0.1, 1.0])
def test_unbalanced_matches_pot(rho):
    C, sm, tm = _batch(seed=6)
    res = sinkhorn_unbalanced(C, sm, tm, eps=0.1, rho=rho, tol=1e-13, max_iter=100_000)
    assert bool(res.converged.all())
    for i, r, c, block in _blocks(C, sm, tm):
        a, b = np.full(len(r), 1 / len(r)), np.full(len(c), 1 / len(c))
        ref = ot.unbalanced.sinkhorn_unbalanced(a, b, block, 0.1, rho, reg_type="kl", stopThr=1e-15, numItermax=100_000)
        np.testing.assert_allclose(res.plan[i][r][:, c].numpy(), ref, atol=ATOL_POT, rtol=0)


def test_partial_transports_the_requested_mass_and_matches_pot():
    C, sm, tm = _batch(seed=7)
    res = partial(C, sm, tm, mass=0.6)
    assert torch.allclose(res.plan.sum((1, 2)), torch.full((3,), 0.6, dtype=torch.float64), atol=1e-9)
    for i, r, c, block in _blocks(C, sm, tm):
        ref = ot.partial.partial_wasserstein(np.full(len(r), 1 / len(r)), np.full(len(c), 1 / len(c)), block, m=0.6)
        assert float(res.cost[i]) == pytest.approx(float((ref * block).sum()), abs=1e-9)


def test_solve_dispatches_every_method():
    C, sm, tm = _batch(seed=8)
    x = torch.randn(3, 6, 4, dtype=torch.float64)
    y = torch.randn(3, 5, 4, dtype=torch.float64)
    for method in ("sinkhorn", "unbalanced", "emd", "partial"):
        res = solve(C, sm, tm, method=method, eps=0.1)
        assert res.plan.shape == C.shape and (res.plan >= 0).all()
    gw = solve(None, sm, tm, method="gw", src_cost=cost_matrix(x, x), tgt_cost=cost_matrix(y, y))
    assert torch.allclose(gw.plan.sum(2), marginal(sm, dtype=torch.float64), atol=1e-8)
    with pytest.raises(ValueError, match="method must be one of"):
        solve(C, method="nope")


# ----------------------------------------------------------------------------- invariants


def test_small_eps_approaches_hungarian_assignment():
    eps = 1e-3
    g = torch.Generator().manual_seed(9)
    for n in (3, 7, 12):
        # permutation problem: targets are shuffled noisy copies of the sources, costs in [0, 2]
        x = torch.randn(n, 8, generator=g, dtype=torch.float64)
        y = x[torch.randperm(n, generator=g)] + 0.01 * torch.randn(n, 8, generator=g, dtype=torch.float64)
        C = cost_matrix(x, y, "sqeuclidean")
        C = (2 * C / C.max()).unsqueeze(0)
        rows, cols = linear_sum_assignment(C[0].numpy())
        perm = torch.zeros(n, n, dtype=torch.float64)
        perm[rows, cols] = 1 / n
        res = sinkhorn(C, eps=eps, tol=1e-6, max_iter=20_000)
        assert bool(res.converged.all())
        assert float((res.plan[0] - perm).abs().max()) < 1e-3
        assert float(res.cost[0]) == pytest.approx(float(C[0, rows, cols].mean()), abs=1e-3)


def test_float32_is_stable_at_eps_1e3():
    C = torch.rand(4, 9, 11, generator=torch.Generator().manual_seed(10)) * 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sinkhorn(C, eps=1e-3, max_iter=300)
    assert torch.isfinite(res.plan).all() and torch.isfinite(res.cost).all()


def test_masked_entries_exactly_zero_and_marginals():
    C, sm, tm = _batch(seed=11)
    C = C.masked_fill(~(sm[:, :, None] & tm[:, None, :]), float("nan"))  # padding may be garbage
    res = sinkhorn(C, sm, tm, eps=0.1, tol=1e-10, max_iter=50_000)
    assert bool(res.converged.all())
    pad = ~(sm[:, :, None] & tm[:, None, :])
    assert (res.plan[pad] == 0).all()
    assert (res.plan >= 0).all()
    assert torch.allclose(res.plan.sum(2), marginal(sm, dtype=C.dtype), atol=1e-9)
    assert torch.allclose(res.plan.sum(1), marginal(tm, dtype=C.dtype), atol=1e-9)
    assert torch.isfinite(res.cost).all()


def test_permutation_equivariance():
    C, _, _ = _batch(B=2, seed=12)
    pt, ps = torch.randperm(6), torch.randperm(5)
    res = sinkhorn(C, eps=0.1, **TIGHT)
    res_p = sinkhorn(C[:, pt][:, :, ps], eps=0.1, **TIGHT)
    assert torch.allclose(res_p.plan, res.plan[:, pt][:, :, ps], atol=1e-12)
    assert torch.allclose(res_p.cost, res.cost, atol=1e-12)


def test_batch_equals_separate_problems():
    C, sm, tm = _batch(seed=13)
    res = sinkhorn(C, sm, tm, eps=0.1, **TIGHT)
    for i in range(3):
        one = sinkhorn(C[i : i + 1], sm[i : i + 1], tm[i : i + 1], eps=0.1, **TIGHT)
        assert torch.allclose(one.plan, res.plan[i : i + 1], atol=1e-12)


def test_nonconvergence_warns_and_reports():
    C, sm, tm = _batch(seed=14)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        res = sinkhorn(C, sm, tm, eps=0.01, max_iter=2, tol=1e-12)
    assert not bool(res.converged.all()) and torch.isfinite(res.plan).all()


# ----------------------------------------------------------------------------- validation


def test_validation_errors_name_the_problem():
    C = torch.rand(2, 3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="eps"):
        sinkhorn(C, eps=0)
    with pytest.raises(ValueError, match="eps"):
        sinkhorn(C, eps=-1.0)
    bad = C.clone()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"NaN/inf.*\(1, 2, 3\)"):
        sinkhorn(bad, eps=0.1)
    with pytest.raises(ValueError, match=r"src_mask: rows \[1\]"):
        sinkhorn(C, torch.tensor([[True, True, True], [False, False, False]]), eps=0.1)
    with pytest.raises(ValueError, match=r"src_mask must have shape \(2, 3\), got \(2, 4\)"):
        sinkhorn(C, torch.ones(2, 4, dtype=torch.bool), eps=0.1)
    with pytest.raises(ValueError, match=r"sums to 0\.5"):
        sinkhorn(C, eps=0.1, a=torch.full((2, 3), 0.5 / 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)|B, T, S"):
        sinkhorn(C[0], eps=0.1)
    with pytest.raises(ValueError, match="grad"):
        sinkhorn(C, eps=0.1, grad="sometimes")


# ----------------------------------------------------------------------------- gradients


def test_gradcheck_unroll_plan_and_cost():
    C, sm, tm = _batch(B=2, T=3, S=4, seed=15)
    C = C.clone().requires_grad_(True)

    def f(c):
        r = sinkhorn(c, sm, tm, eps=0.2, tol=1e-300, max_iter=60, grad="unroll")
        return r.plan, r.cost

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fixed iteration count on purpose
        assert torch.autograd.gradcheck(f, (C,), atol=1e-6)


def test_gradcheck_envelope_value_and_cost_gradient_is_plan():
    C, sm, tm = _batch(B=2, T=3, S=4, seed=16)
    C = C.clone().requires_grad_(True)

    def value(c):
        return sinkhorn(c, sm, tm, eps=0.2, tol=1e-14, max_iter=100_000, grad="envelope").value

    # envelope theorem: d value / d cost = plan, compared with finite differences of the solver
    assert torch.autograd.gradcheck(value, (C,), atol=1e-6)
    res = sinkhorn(C, sm, tm, eps=0.2, tol=1e-14, max_iter=100_000, grad="envelope")
    (g,) = torch.autograd.grad(res.cost.sum(), C)
    assert torch.equal(g, res.plan) and not res.plan.requires_grad


def test_grad_none_is_detached():
    C = torch.rand(1, 3, 3, requires_grad=True)
    res = sinkhorn(C, eps=0.1, grad="none")
    assert not res.cost.requires_grad and not res.plan.requires_grad


# ----------------------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(1, 12),
    S=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    weighted=st.booleans(),
)
def test_property_marginals_and_padding(T, S, seed, weighted):
    g = torch.Generator().manual_seed(seed)
    B = 3
    tl = torch.randint(1, T + 1, (B,), generator=g)
    sl = torch.randint(1, S + 1, (B,), generator=g)
    sm = torch.arange(T)[None] < tl[:, None]
    tm = torch.arange(S)[None] < sl[:, None]
    C = torch.rand(B, T, S, generator=g, dtype=torch.float64) * 2
    a = b = None
    if weighted:  # random weights, some exactly zero
        wa = torch.rand(B, T, generator=g, dtype=torch.float64) * (torch.rand(B, T, generator=g) > 0.3)
        wb = torch.rand(B, S, generator=g, dtype=torch.float64) * (torch.rand(B, S, generator=g) > 0.3)
        wa[:, 0] += 0.1
        wb[:, 0] += 0.1  # every row keeps some mass
        a, b = marginal(sm, wa), marginal(tm, wb)
    # eps 0.5: at eps 0.1 a 2 x 2 block with costs 2 apart converges so slowly (contraction
    # ~1 - 4 exp(-10)) that 100k iterations miss tol 1e-10, in either domain
    res = sinkhorn(C, sm, tm, eps=0.5, a=a, b=b, tol=1e-10, max_iter=100_000)
    a = marginal(sm, dtype=C.dtype) if a is None else a
    b = marginal(tm, dtype=C.dtype) if b is None else b
    assert bool(res.converged.all())
    assert (res.plan >= 0).all()
    assert (res.plan[~(sm[:, :, None] & tm[:, None, :])] == 0).all()
    assert torch.allclose(res.plan.sum(2), a, atol=1e-9) and torch.allclose(res.plan.sum(1), b, atol=1e-9)
    assert (res.plan[a == 0] == 0).all()
    # an all-padding row is rejected
    sm_bad = sm.clone()
    sm_bad[B - 1] = False
    with pytest.raises(ValueError, match="no real token"):
        sinkhorn(C, sm_bad, tm, eps=0.5)


# ----------------------------------------------------------------------------- kernel vs log domain


def _spy_log_domain(monkeypatch):
    """Record the batch size of every call of the log-domain solver behind sinkhorn(grad != unroll)."""
    calls = []
    inner = transport._sinkhorn_active_set

    def spy(logK, *args, **kw):
        calls.append(logK.shape[0])
        return inner(logK, *args, **kw)

    monkeypatch.setattr(transport, "_sinkhorn_active_set", spy)
    return calls


def _same_up_to_constant(x, y, atol):
    """Potentials x, y (B, N) agree up to one constant per row: same -inf entries, equal shifts."""
    fin = torch.isfinite(x)
    assert torch.equal(fin, torch.isfinite(y))
    d = torch.where(fin, x - y, 0.0)  # (B, N)
    shift = d.sum(1) / fin.sum(1)  # (B,)
    assert float(torch.where(fin, d - shift[:, None], 0.0).abs().max()) < atol
    return shift


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_kernel_domain_matches_log_domain_over_buckets(monkeypatch, dtype, atol):
    monkeypatch.setattr(transport, "_MIN_BUCKET", 2)  # 8 pairs -> 4 length buckets, each cropped
    C, sm, tm = _batch(B=8, T=9, S=7, seed=21, dtype=dtype)
    C = C.masked_fill(~(sm[:, :, None] & tm[:, None, :]), float("nan"))  # padding may be garbage
    g = torch.Generator().manual_seed(22)
    wa = torch.rand(sm.shape, generator=g, dtype=dtype) * (torch.rand(sm.shape, generator=g) > 0.2)
    wa[:, 0] += 0.1  # some real tokens of zero mass, every row keeps some
    a = marginal(sm, wa)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    calls = _spy_log_domain(monkeypatch)
    ker = sinkhorn(C, sm, tm, eps=0.1, a=a, tol=tol, max_iter=100_000)
    assert calls == []  # every problem ran in the kernel domain
    log = sinkhorn(C, sm, tm, eps=0.1, a=a, tol=tol, max_iter=100_000, domain="log")
    assert calls == [8]
    assert bool(ker.converged.all()) and bool(log.converged.all())
    assert float((ker.plan - log.plan).abs().max()) < atol
    assert (ker.plan[~(sm[:, :, None] & tm[:, None, :])] == 0).all() and (ker.plan[a == 0] == 0).all()
    assert torch.allclose(ker.cost, log.cost, atol=atol, rtol=0) and torch.allclose(ker.value, log.value, atol=atol, rtol=0)
    # potentials are defined up to f + c, g - c; -inf exactly on padding and zero mass
    c_f = _same_up_to_constant(ker.potentials[0], log.potentials[0], 1e3 * atol)
    c_g = _same_up_to_constant(ker.potentials[1], log.potentials[1], 1e3 * atol)
    assert torch.allclose(c_f, -c_g, atol=1e3 * atol)
    assert torch.equal(torch.isinf(ker.potentials[0]), (a == 0))


def test_small_eps_falls_back_to_log_domain(monkeypatch):
    # pair 0: costs within 0.05 of each other (exponent 5 at eps 0.01: kernel domain);
    # pair 1: costs spread over [0, 2] (exponent ~200 > 30 in float32: log domain)
    g = torch.Generator().manual_seed(23)
    C = torch.rand(2, 6, 5, generator=g)
    C[0] = 0.5 + 0.05 * C[0]
    C[1] = 2 * C[1]
    calls = _spy_log_domain(monkeypatch)
    res = sinkhorn(C, eps=0.01, tol=1e-5, max_iter=20_000)
    assert calls == [1]  # only pair 1 fell back
    ref = sinkhorn(C, eps=0.01, tol=1e-5, max_iter=20_000, domain="log")
    assert bool(res.converged.all()) and float((res.plan - ref.plan).abs().max()) < 1e-5
    # at eps 1e-3 every pair falls back: the result is the log-domain one, bit for bit
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low = sinkhorn(C, eps=1e-3, max_iter=300)
        ref = sinkhorn(C, eps=1e-3, max_iter=300, domain="log")
    assert calls == [2, 2] and torch.equal(low.plan, ref.plan) and torch.isfinite(low.plan).all()
    # the bound itself: float64 keeps pair 1 in the kernel domain at eps 0.01 (exponent < 300)
    calls.clear()
    sinkhorn(C.double(), eps=0.01, tol=1e-9, max_iter=100_000)
    assert calls == []


def test_non_finite_kernel_result_is_solved_again_in_log_domain(monkeypatch):
    C, sm, tm = _batch(B=4, seed=24)
    inner = transport._sinkhorn_kernel

    def failing(K, a, b, **kw):  # pretend problem 1 of the bucket under/overflowed
        u, v, n, err = inner(K, a, b, **kw)
        u[1, 0] = float("inf")
        return u, v, n, err

    monkeypatch.setattr(transport, "_sinkhorn_kernel", failing)
    calls = _spy_log_domain(monkeypatch)
    res = sinkhorn(C, sm, tm, eps=0.1, **TIGHT)
    assert calls == [1]
    ref = sinkhorn(C, sm, tm, eps=0.1, domain="log", **TIGHT)
    assert torch.isfinite(res.plan).all() and float((res.plan - ref.plan).abs().max()) < 1e-12
    assert torch.equal(res.plan[1], ref.plan[1])  # problem 1 is the log-domain solution


def test_kernel_domain_envelope_gradient_is_plan_float32():
    C, sm, tm = _batch(B=3, seed=25, dtype=torch.float32)
    C = C.clone().requires_grad_(True)
    res = sinkhorn(C, sm, tm, eps=0.05, tol=1e-6)
    (g,) = torch.autograd.grad(res.value.sum(), C)
    assert torch.equal(g, res.plan)
    with pytest.raises(ValueError, match="domain"):
        sinkhorn(C, eps=0.1, domain="kernel")


@pytest.mark.parametrize("eps", [0.1, 1e-3])  # kernel domain, log-domain fallback
def test_huge_finite_values_on_padding_are_ignored(eps):
    C, sm, tm = _batch(B=4, seed=26, dtype=torch.float32)
    pad = ~(sm[:, :, None] & tm[:, None, :])
    garbage = torch.where(torch.rand(C.shape, generator=torch.Generator().manual_seed(27)) > 0.5, 1e30, -1e30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # eps 1e-3 in 300 iterations
        clean = sinkhorn(C.masked_fill(pad, 0.0), sm, tm, eps=eps, max_iter=300)
        dirty = sinkhorn(torch.where(pad, garbage, C), sm, tm, eps=eps, max_iter=300)
    assert torch.isfinite(dirty.plan).all() and torch.isfinite(dirty.cost).all() and torch.isfinite(dirty.value).all()
    assert torch.equal(dirty.plan, clean.plan) and torch.equal(dirty.cost, clean.cost)


# ----------------------------------------------------------------------------- OT_eps value, eps-scaling, symmetric


def _kl_np(P, a, b):
    pos = P > 0
    return float((P[pos] * np.log(P[pos] / np.outer(a, b)[pos])).sum() - P.sum() + 1.0)


@pytest.mark.parametrize("grad", ["envelope", "unroll"])
def test_value_is_ot_eps_in_geomloss_convention(grad):
    """value = <P, C> + eps KL(P | a b^T), with POT's plan, for uniform and weighted marginals."""
    C, sm, tm = _batch(seed=31)
    a = marginal(sm, torch.rand(sm.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) + 0.1)
    res = sinkhorn(C, sm, tm, eps=0.1, a=a, grad=grad, **TIGHT)
    for i in range(len(C)):
        ri, ci = sm[i].nonzero().flatten(), tm[i].nonzero().flatten()
        Ci = C[i][ri][:, ci].numpy()
        ai, bi = a[i, ri].numpy(), np.full(len(ci), 1 / len(ci))
        P = ot.sinkhorn(ai, bi, Ci, reg=0.1, method="sinkhorn_log", numItermax=100_000, stopThr=1e-13)
        want = (P * Ci).sum() + 0.1 * _kl_np(P, ai, bi)
        assert res.value[i].item() == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("domain", ["auto", "log"])
@pytest.mark.parametrize("ratio", [0.5, 0.8])
def test_eps_scaling_reaches_the_same_plan(domain, ratio):
    C, sm, tm = _batch(B=6, T=9, S=8, seed=32)
    w = torch.rand(sm.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) + 0.05
    a = marginal(sm, w * (torch.arange(9) != 2))  # one real token of zero mass per row (but short rows)
    kw = dict(eps=0.02, a=a, domain=domain, tol=1e-11, max_iter=50_000)
    plain = sinkhorn(C, sm, tm, **kw)
    scaled = sinkhorn(C, sm, tm, eps_scaling=ratio, **kw)
    assert bool(scaled.converged.all())
    assert float((plain.plan - scaled.plan).abs().max()) < 1e-10
    assert torch.allclose(plain.value, scaled.value, atol=1e-10, rtol=0)
    assert (scaled.plan[a == 0] == 0).all()
    stages = transport.eps_schedule(C, sm, tm, 0.02, ratio)
    diameter = float(max((C[i][sm[i]][:, tm[i]].max() - C[i][sm[i]][:, tm[i]].min()) for i in range(6)))
    assert stages[0] == pytest.approx(diameter / transport.EPS_SCALING_START)  # the costs' scale
    assert [e for e, _ in scaled.stages] == pytest.approx(stages + [0.02])  # iterations reported per stage
    assert sum(n for _, n in scaled.stages) == scaled.n_iter and plain.stages == [(0.02, plain.n_iter)]
    assert all(s > 0.02 for s in stages) and all(b / a_ == pytest.approx(ratio) for a_, b in zip(stages, stages[1:]))


@pytest.mark.parametrize("domain", ["auto", "log"])
@pytest.mark.parametrize("eps_scaling", [None, 0.5])
@pytest.mark.parametrize("seed", [40, 41, 42])
def test_overrelaxed_sinkhorn_reaches_the_same_plan_in_fewer_iterations(seed, eps_scaling, domain):
    """Same fixed point as plain Sinkhorn (float64, tight tolerance), zero-mass rows kept at
    zero, exact columns at the stop, and fewer iterations at a small eps."""
    C, sm, tm = _batch(B=8, T=12, S=10, seed=seed)
    w = torch.rand(sm.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) + 0.05
    a = marginal(sm, w * (torch.arange(12) != 3))
    kw = dict(eps=0.01, a=a, tol=1e-10, max_iter=50_000, eps_scaling=eps_scaling, domain=domain)
    plain = sinkhorn(C, sm, tm, **kw)
    fast = sinkhorn(C, sm, tm, overrelax=True, **kw)
    assert bool(plain.converged.all()) and bool(fast.converged.all())
    assert float((plain.plan - fast.plan).abs().sum(dim=(1, 2)).max()) < 1e-7
    assert torch.allclose(plain.value, fast.value, atol=1e-9, rtol=0)
    assert (fast.plan[a == 0] == 0).all()
    assert float((fast.plan.sum(1) - marginal(tm, dtype=C.dtype)).abs().max()) < 1e-12  # columns exact
    assert fast.n_iter < 0.7 * plain.n_iter, (fast.n_iter, plain.n_iter)


def test_eps_scaling_unrolled_gradient_matches_envelope_at_convergence():
    C, sm, tm = _batch(B=2, T=5, S=4, seed=33)
    Cu = C.clone().requires_grad_(True)
    sinkhorn(Cu, sm, tm, eps=0.02, grad="unroll", eps_scaling=0.5, tol=1e-12, max_iter=20000).value.sum().backward()
    Ce = C.clone().requires_grad_(True)
    env = sinkhorn(Ce, sm, tm, eps=0.02, eps_scaling=0.5, tol=1e-12, max_iter=20000)
    env.value.sum().backward()
    pair = sm[:, :, None] & tm[:, None, :]
    # d OT_eps / d C = P (the envelope theorem), through the unrolled iterations as well
    assert torch.allclose(Cu.grad[pair], env.plan[pair], atol=1e-8)
    assert torch.allclose(Ce.grad[pair], env.plan[pair], atol=1e-12)


def test_eps_scaling_rejects_bad_ratios():
    C, sm, tm = _batch()
    for r in (0, 1, 1.5, -0.5, "fast"):
        with pytest.raises(ValueError, match="eps_scaling"):
            sinkhorn(C, sm, tm, eps=0.1, eps_scaling=r)


def test_eps_none_and_float_masks_are_clear_errors():
    C, sm, tm = _batch()
    with pytest.raises(ValueError, match=r"eps must be a finite number > 0.*None"):
        sinkhorn(C, sm, tm, eps=None)
    with pytest.raises(ValueError, match=r"src_mask must be a bool tensor.*float32.*mask.bool\(\)"):
        sinkhorn(C, sm.float(), tm, eps=0.1)
    with pytest.raises(ValueError, match=r"x_mask must be a bool tensor"):
        cost_matrix(torch.randn(2, 3, 4), torch.randn(2, 5, 4), x_mask=torch.ones(2, 3))


def test_symmetric_sinkhorn_equals_alternating_sinkhorn_and_is_symmetric():
    g = torch.Generator().manual_seed(34)
    x = torch.randn(4, 7, 3, generator=g, dtype=torch.float64)
    mask = torch.arange(7)[None] < torch.tensor([7, 5, 2, 1])[:, None]
    C = cost_matrix(x, x, x_mask=mask, y_mask=mask)
    a = marginal(mask, torch.rand(4, 7, generator=g, dtype=torch.float64) * mask)
    sym = transport.sinkhorn_symmetric(C, mask, eps=0.2, a=a, tol=1e-13, max_iter=5000)
    alt = sinkhorn(C, mask, mask, eps=0.2, a=a, b=a, tol=1e-13, max_iter=200_000)
    assert bool(sym.converged.all())
    assert sym.n_iter < 200
    assert float((sym.plan - alt.plan).abs().max()) < 1e-9
    assert torch.allclose(sym.value, alt.value, atol=1e-11, rtol=0)
    assert torch.allclose(sym.plan, sym.plan.transpose(1, 2), atol=1e-14, rtol=0)
    assert (sym.plan[~(mask[:, :, None] & mask[:, None, :])] == 0).all()
    with pytest.raises(ValueError, match="square"):
        transport.sinkhorn_symmetric(torch.rand(2, 3, 4, dtype=torch.float64), eps=0.1)


@pytest.mark.slow
def test_eps_scaling_converges_at_eps_0005_on_real_e5_costs(encoder, data_root):
    """Issue 11's bar: 64 FLORES dev deu-eng pairs, last layer, cosine cost, tol 1e-4,
    max_iter 1000 (annealing stages included): >= 99% of the pairs converge at eps 0.005."""
    from optical_viz.data import load_flores

    de = load_flores("deu", split="dev", root=data_root).texts[:64]
    en = load_flores("eng", split="dev", root=data_root).texts[:64]
    x, y = encoder.embed_tokens(de), encoder.embed_tokens(en)
    C = cost_matrix(x.embeddings, y.embeddings, x_mask=x.mask, y_mask=y.mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        plain = sinkhorn(C, x.mask, y.mask, eps=0.005, tol=1e-4, max_iter=1000)
    scaled = sinkhorn(C, x.mask, y.mask, eps=0.005, tol=1e-4, max_iter=1000, eps_scaling=0.5)
    assert float(scaled.converged.float().mean()) >= 0.99
    assert scaled.n_iter <= 1000
    assert float(scaled.converged.float().mean()) > float(plain.converged.float().mean())
    assert len(scaled.stages) <= 5  # from the costs' scale (~0.06), not from the diameter (~0.5: 8 stages)


@pytest.mark.slow
def test_relative_eps_converges_more_with_the_scale_schedule_on_real_e5_costs(encoder, data_root, monkeypatch):
    """Issue 22: relative eps 0.1 (~0.005 in cost units) with eps-scaling on 64 FLORES dev
    deu-eng pairs, tol 1e-4. Measured: at max_iter 300 (the protocol's) 81.2% converge with
    the schedule from diameter / 10, 76.6% from the diameter (before issue 22); at max_iter
    1000 all do (87.5% at 300 from diameter / 30, which left a divergence problem of
    tests/test_distill.py unconverged). The issue's target (>= 99% within 300) is not met: a tail of problems needs
    ~1000 iterations at this eps."""
    from optical_viz.data import load_flores
    from optical_viz.losses import ot_loss

    de = load_flores("deu", split="dev", root=data_root).texts[:64]
    en = load_flores("eng", split="dev", root=data_root).texts[:64]
    x, y = encoder.embed_tokens(de), encoder.embed_tokens(en)

    def converged(max_iter: int) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = ot_loss(x.embeddings, y.embeddings, x.mask, y.mask, objective="entropic", eps=0.1,
                          eps_mode="relative", eps_scaling=0.5, max_iter=max_iter, tol=1e-4)
        return float(res.converged.float().mean())

    scale_300, scale_1000 = converged(300), converged(1000)
    monkeypatch.setattr(transport, "EPS_SCALING_START", 1.0)  # the schedule before: from the diameter
    diameter_300 = converged(300)
    assert scale_300 >= 0.8 and scale_300 > diameter_300
    assert scale_1000 >= 0.99
