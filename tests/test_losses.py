"""Losses against slow references: POT for the OT loss, python loops for the others,
finite differences and gradcheck for the gradients."""
from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from optical_viz import losses

RTOL = 1e-6  # float64 agreement with POT at tight tolerances
EPS = 0.1


def _batch(lengths_x, lengths_y, h=6, seed=0, dtype=torch.float64):
    """Padded random token embeddings with garbage (large values) in the padding."""
    g = torch.Generator().manual_seed(seed)
    B, T, S = len(lengths_x), max(lengths_x), max(lengths_y)
    x = torch.randn(B, T, h, generator=g, dtype=dtype)
    y = torch.randn(B, S, h, generator=g, dtype=dtype)
    mx = torch.arange(T)[None] < torch.tensor(lengths_x)[:, None]
    my = torch.arange(S)[None] < torch.tensor(lengths_y)[:, None]
    x = torch.where(mx[..., None], x, torch.full_like(x, 1e3))
    y = torch.where(my[..., None], y, torch.full_like(y, -1e3))
    return x, y, mx, my


def _pot_plan(x, y, eps, metric="cosine", a=None, b=None):
    """POT's log-domain Sinkhorn on one unpadded pair: x (T, H), y (S, H) numpy."""
    C = cdist(x, y, "cosine") if metric == "cosine" else cdist(x, y, "sqeuclidean")
    a = np.full(len(x), 1 / len(x)) if a is None else a
    b = np.full(len(y), 1 / len(y)) if b is None else b
    P = ot.sinkhorn(a, b, C, reg=eps, method="sinkhorn_log", numItermax=20000, stopThr=1e-12)
    return P, C


@pytest.mark.parametrize("metric", ["cosine", "sqeuclidean"])
def test_ot_loss_equals_pot_inner_product(metric):
    lx, ly = [5, 3, 7], [4, 6, 2]
    x, y, mx, my = _batch(lx, ly)
    eps = EPS if metric == "cosine" else 2.0  # sqeuclidean costs are ~10x larger
    out = losses.ot_loss(x, y, mx, my, eps=eps, metric=metric, max_iter=5000, tol=1e-12)
    for i, (t, s) in enumerate(zip(lx, ly)):
        P, C = _pot_plan(x[i, :t].numpy(), y[i, :s].numpy(), eps, metric)
        np.testing.assert_allclose(out.per_example[i].item(), (P * C).sum(), rtol=RTOL)
        np.testing.assert_allclose(out.plan[i, :t, :s].numpy(), P, atol=1e-9)
        assert (out.plan[i, t:] == 0).all() and (out.plan[i, :, s:] == 0).all()
    assert out.loss.item() == pytest.approx(out.per_example.mean().item(), rel=1e-12)
    assert out.converged.all()


def test_ot_loss_token_weights_match_pot():
    lx, ly = [6, 4], [5, 5]
    x, y, mx, my = _batch(lx, ly, seed=1)
    wx, wy = losses.special_token_weights(mx).double(), losses.special_token_weights(my).double()
    out = losses.ot_loss(x, y, mx, my, eps=EPS, student_weights=wx, teacher_weights=wy, max_iter=5000, tol=1e-12)
    for i, (t, s) in enumerate(zip(lx, ly)):
        a = wx[i, :t].numpy() / wx[i, :t].sum().item()
        b = wy[i, :s].numpy() / wy[i, :s].sum().item()
        P, C = _pot_plan(x[i, :t].numpy(), y[i, :s].numpy(), EPS, a=a, b=b)
        np.testing.assert_allclose(out.per_example[i].item(), (P * C).sum(), rtol=RTOL)
        assert out.plan[i, 0].sum() == 0 and out.plan[i, t - 1].sum() == 0  # <s>, </s> carry no mass


def test_ot_loss_unbalanced_matches_pot():
    lx, ly = [5, 3], [4, 6]
    x, y, mx, my = _batch(lx, ly, seed=2)
    rho = 0.5
    out = losses.ot_loss(x, y, mx, my, eps=EPS, rho=rho, max_iter=20000, tol=1e-12)
    for i, (t, s) in enumerate(zip(lx, ly)):
        C = cdist(x[i, :t].numpy(), y[i, :s].numpy(), "cosine")
        a, b = np.full(t, 1 / t), np.full(s, 1 / s)
        P = ot.unbalanced.sinkhorn_unbalanced(a, b, C, reg=EPS, reg_m=rho, numItermax=20000, stopThr=1e-13)
        np.testing.assert_allclose(out.per_example[i].item(), (P * C).sum(), rtol=1e-5)


def test_envelope_gradient_is_gradient_of_regularised_ot_value():
    """d/dx of W_eps(x) = min_P <P, C(x)> + eps sum P log P, by central finite differences
    through POT, equals the envelope gradient of the OT loss (P held fixed)."""
    lx, ly = [4], [3]
    x, y, mx, my = _batch(lx, ly, h=3, seed=3)
    xr = x.clone().requires_grad_(True)
    losses.ot_loss(xr, y, mx, my, eps=EPS, max_iter=5000, tol=1e-13).loss.backward()

    def value(xn):
        P, C = _pot_plan(xn, y[0].numpy(), EPS)
        return (P * C).sum() + EPS * (P * np.log(P)).sum()

    h = 1e-6
    fd = np.zeros((4, 3))
    for t in range(4):
        for k in range(3):
            xp, xm = x[0].numpy().copy(), x[0].numpy().copy()
            xp[t, k] += h
            xm[t, k] -= h
            fd[t, k] = (value(xp) - value(xm)) / (2 * h)
    np.testing.assert_allclose(xr.grad[0].numpy(), fd, atol=1e-7)


@pytest.mark.filterwarnings("ignore:sinkhorn:RuntimeWarning")  # fixed 300 iterations, tol=0 on purpose
def test_unrolled_gradient_gradcheck():
    x, y, mx, my = _batch([3, 2], [2, 3], h=3, seed=4)
    x = x.clone().requires_grad_(True)
    y = y.clone().requires_grad_(True)
    f = lambda x_, y_: losses.ot_loss(x_, y_, mx, my, eps=0.5, grad="unroll", max_iter=300, tol=0).loss
    assert torch.autograd.gradcheck(f, (x, y), eps=1e-6, atol=1e-6)


def test_envelope_gradient_flows_to_student_only_through_real_tokens():
    x, y, mx, my = _batch([5, 2], [3, 4], seed=5, dtype=torch.float32)
    x.requires_grad_(True)
    losses.ot_loss(x, y, mx, my, eps=EPS).loss.backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad[~mx] == 0).all() and (x.grad[mx].abs().sum(-1) > 0).all()


@pytest.mark.filterwarnings("ignore:sinkhorn:RuntimeWarning")  # 2000 iterations reach ~1e-9, tol is 1e-10
@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=4), st.integers(0, 2**16))
def test_ot_loss_ignores_padding_and_is_permutation_invariant(lengths, seed):
    lx, ly = [l[0] for l in lengths], [l[1] for l in lengths]
    x, y, mx, my = _batch(lx, ly, seed=seed)
    out = losses.ot_loss(x, y, mx, my, eps=0.2, max_iter=2000, tol=1e-10)
    # padding content is irrelevant
    x2 = torch.where(mx[..., None], x, torch.zeros_like(x))
    out2 = losses.ot_loss(x2, y, mx, my, eps=0.2, max_iter=2000, tol=1e-10)
    torch.testing.assert_close(out.per_example, out2.per_example, rtol=1e-7, atol=1e-9)
    # permuting the real tokens of every student sentence leaves <P, C> unchanged
    xp = x.clone()
    for i, t in enumerate(lx):
        xp[i, :t] = x[i, :t].flip(0)
    out3 = losses.ot_loss(xp, y, mx, my, eps=0.2, max_iter=2000, tol=1e-10)
    torch.testing.assert_close(out.per_example, out3.per_example, rtol=1e-7, atol=1e-9)
    assert (out.per_example >= 0).all() and (out.per_example <= 2).all()  # cosine costs lie in [0, 2]


def test_ot_loss_rejects_bad_shapes():
    x, y, mx, my = _batch([3], [4])
    with pytest.raises(ValueError, match=r"\(1, 3, 6\)"):
        losses.ot_loss(x, y[:, :, :5], mx, my)
    with pytest.raises(ValueError, match="student_mask"):
        losses.ot_loss(x, y, mx[:, :2], my)
    with pytest.raises(ValueError, match="no real token"):
        losses.ot_loss(x, y, torch.zeros_like(mx), my)
    with pytest.raises(ValueError, match="grad"):
        losses.ot_loss(x, y, mx, my, grad="autograd")


def _info_nce_reference(s, t, temperature, margin, symmetric):
    """Loop over rows, straight from the definition."""
    B = len(s)
    cos = lambda u, v: float(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v))
    S = np.array([[cos(s[i], t[j]) - (margin if i == j else 0) for j in range(B)] for i in range(B)]) / temperature
    fwd = np.mean([-S[i, i] + math.log(sum(math.exp(S[i, j]) for j in range(B))) for i in range(B)])
    if not symmetric:
        return fwd
    bwd = np.mean([-S[j, j] + math.log(sum(math.exp(S[i, j]) for i in range(B))) for j in range(B)])
    return 0.5 * (fwd + bwd)


@pytest.mark.parametrize("margin,symmetric", [(0.0, True), (0.3, True), (0.2, False)])
def test_contrastive_loss_matches_loop_reference(margin, symmetric):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 8, generator=g, dtype=torch.float64), torch.randn(5, 8, generator=g, dtype=torch.float64)
    got = losses.contrastive_loss(s, t, temperature=0.1, margin=margin, symmetric=symmetric)
    assert got.item() == pytest.approx(_info_nce_reference(s.numpy(), t.numpy(), 0.1, margin, symmetric), rel=1e-10)


def test_contrastive_loss_gradcheck_and_minimum():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: losses.contrastive_loss(a, b, temperature=0.2, margin=0.1), (s, t))
    # aligned pairs with orthogonal sentences beat shuffled pairs
    e = torch.eye(4, dtype=torch.float64)
    assert losses.contrastive_loss(e, e).item() < 1e-6 < losses.contrastive_loss(e, e.flip(0)).item()


def test_mse_loss_matches_numpy_and_gradcheck():
    g = torch.Generator().manual_seed(2)
    a, b, c = (torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    ref = ((a - c) ** 2).detach().numpy().mean() + ((b - c) ** 2).detach().numpy().mean()
    assert losses.mse_loss(a, b, c).item() == pytest.approx(ref, rel=1e-12)
    assert torch.autograd.gradcheck(losses.mse_loss, (a, b, c))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(3, 3\)"):
        losses.mse_loss(a, b, c[:, :3])


def test_mean_pool_matches_loop():
    x, _, mx, _ = _batch([3, 1, 4], [1, 1, 1], seed=6)
    got = losses.mean_pool(x, mx)
    for i, t in enumerate([3, 1, 4]):
        torch.testing.assert_close(got[i], x[i, :t].mean(0))


def test_special_token_weights():
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    w = losses.special_token_weights(mask)
    assert w.tolist() == [[0, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]]


def test_combine_weights_and_errors():
    terms = {"ot": torch.tensor(2.0), "contrastive": torch.tensor(3.0)}
    assert losses.combine(terms, {"ot": 1.0, "contrastive": 0.5}).item() == pytest.approx(3.5)
    with pytest.raises(ValueError, match="mse"):
        losses.combine(terms, {"mse": 1.0})
