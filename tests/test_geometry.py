"""Geometry metrics against direct computations and known invariants."""
from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from optical_viz import geometry
from optical_viz.geometry import (
    eps_sweep,
    plan_sharpness_by_layer,
    alignment,
    alignment_report,
    language_probe_accuracy,
    linear_cka,
    mutual_argmax_mass,
    plan_entropy,
    project,
    translation_gap,
    uniformity,
)

TOL = 1e-10


def _rng(seed=0):
    return np.random.default_rng(seed)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_translation_gap_and_alignment_against_loops():
    rng = _rng()
    x = rng.normal(size=(7, 5))
    y = x + 0.3 * rng.normal(size=(7, 5))
    cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
    pos = np.mean([cos(x[i], y[i]) for i in range(7)])
    neg = np.mean([cos(x[i], y[j]) for i in range(7) for j in range(7) if i != j])
    assert translation_gap(x, y) == pytest.approx(pos - neg, abs=TOL)
    assert translation_gap(x, y) > 0.3
    assert translation_gap(x, rng.permutation(y)) < translation_gap(x, y)
    want = np.mean([np.sum((_unit(x)[i] - _unit(y)[i]) ** 2) for i in range(7)])
    assert alignment(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(want, abs=TOL)
    assert alignment(x, x) == pytest.approx(0.0, abs=TOL)
    with pytest.raises(ValueError, match=r"\(7, 5\) and \(6, 5\)"):
        translation_gap(x, y[:6])


def test_uniformity_against_pairs_and_ordering():
    rng = _rng(1)
    x = rng.normal(size=(9, 4))
    u = _unit(x)
    want = np.log(np.mean([np.exp(-2 * np.sum((u[i] - u[j]) ** 2)) for i in range(9) for j in range(i + 1, 9)]))
    assert uniformity(x) == pytest.approx(want, abs=TOL)
    spread = rng.normal(size=(200, 8))
    clumped = np.ones((200, 8)) + 0.05 * rng.normal(size=(200, 8))
    assert uniformity(spread) < uniformity(clumped) <= 0.0


def test_linear_cka_invariances():
    rng = _rng(2)
    x = rng.normal(size=(40, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0, abs=1e-9)
    unrelated = linear_cka(x, rng.normal(size=(40, 5)))
    assert 0.0 <= unrelated < 0.5
    # against the kernel (HSIC) form: tr(K H L H) / sqrt(tr(K H K H) tr(L H L H))
    y = rng.normal(size=(40, 3))
    h = np.eye(40) - 1 / 40
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    assert linear_cka(x, y) == pytest.approx(hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_)), abs=1e-9)


def test_language_probe_separable_vs_neutral():
    rng = _rng(3)
    a = rng.normal(size=(60, 10))
    shifted = np.concatenate([a, a + 3.0])  # language identity is a constant offset
    neutral = np.concatenate([a, a + 0.0 * rng.normal(size=a.shape)])  # identical points
    labels = ["aaa_Latn"] * 60 + ["bbb_Latn"] * 60
    assert language_probe_accuracy(shifted, labels) > 0.95
    assert language_probe_accuracy(neutral, labels) < 0.65
    with pytest.raises(ValueError, match="120 embeddings but 3"):
        language_probe_accuracy(shifted, labels[:3])


def test_plan_entropy_and_mutual_mass():
    uniform = torch.full((4, 5), 1 / 20, dtype=torch.float64)
    perm = torch.eye(4, dtype=torch.float64) / 4
    assert plan_entropy(uniform).item() == pytest.approx(1.0, abs=TOL)
    assert plan_entropy(perm).item() == pytest.approx(0.5, abs=TOL)  # log 4 / log 16
    assert plan_entropy(perm, normalized=False).item() == pytest.approx(np.log(4), abs=TOL)
    assert mutual_argmax_mass(perm).item() == pytest.approx(1.0, abs=TOL)
    # padding (zero rows / columns) changes nothing
    padded = torch.zeros(6, 7, dtype=torch.float64)
    padded[:4, :4] = perm
    batch = torch.stack([padded, torch.nn.functional.pad(uniform, (0, 2, 0, 2))])
    torch.testing.assert_close(plan_entropy(batch), torch.tensor([0.5, 1.0], dtype=torch.float64))
    # an entropic plan from POT: mass on mutual links matches a loop over the plan
    rng = _rng(4)
    cost = rng.random((5, 6))
    plan = ot.sinkhorn(np.full(5, 1 / 5), np.full(6, 1 / 6), cost, reg=0.05)
    keep = sum(plan[i, j] for i in range(5) for j in [plan[i].argmax()] if plan[:, j].argmax() == i)
    assert mutual_argmax_mass(torch.from_numpy(plan)).item() == pytest.approx(keep / plan.sum(), abs=TOL)
    # ... and the mass of the links alignment's "inter" extraction keeps (as its docstring says)
    from optical_viz.alignment import extract_links

    inter = sum(plan[i, j] for i, j in extract_links(torch.from_numpy(plan), "inter"))
    assert mutual_argmax_mass(torch.from_numpy(plan)).item() == pytest.approx(inter / plan.sum(), abs=TOL)
    h = -(plan / plan.sum() * np.log(plan / plan.sum())).sum() / np.log(30)
    assert plan_entropy(torch.from_numpy(plan)).item() == pytest.approx(h, abs=1e-9)
    with pytest.raises(ValueError, match="negative"):
        plan_entropy(-uniform)


def test_eps_sweep_from_sharp_to_uniform():
    # y is a noisy permutation of x: small eps recovers the permutation, large eps the uniform plan
    g = torch.Generator().manual_seed(0)
    B, T, H = 3, 9, 16
    x = torch.randn(B, T, H, generator=g, dtype=torch.float64)
    y = 0.05 * torch.randn(B, T, H, generator=g, dtype=torch.float64)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[2, 7:] = False  # a shorter pair: padding must not count
    for i, n in enumerate(mask.sum(1).tolist()):
        y[i, :n] += x[i, torch.randperm(n, generator=g)]
    sweep = eps_sweep(x, y, mask, mask, [0.003, 0.03, 0.3, 300.0])
    assert list(sweep["eps"]) == [0.003, 0.03, 0.3, 300.0] and (sweep["converged"] == 1).all()
    assert np.all(np.diff(sweep["plan_entropy"]) > 0) and np.all(np.diff(sweep["cost_ratio"]) > 0)
    sharp, flat = sweep.iloc[0], sweep.iloc[-1]
    # a permutation plan: entropy log(n) / log(n^2) = 1/2, all mass on mutual-argmax links
    assert sharp["plan_entropy"] == pytest.approx(0.5, abs=0.01) and sharp["mutual_argmax_mass"] > 0.99
    assert flat["plan_entropy"] > 0.999 and flat["cost_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert (sweep["ot_cost"] <= sweep["independent_cost"] + 1e-12).all()
    # the independent coupling's cost, from the masked cost matrices directly
    c = 1 - torch.nn.functional.cosine_similarity(x[:, :, None], y[:, None], dim=-1)  # (B, T, T)
    ref = np.mean([c[i][mask[i]][:, mask[i]].mean().item() for i in range(B)])
    assert sweep["independent_cost"].iloc[0] == pytest.approx(ref, rel=1e-9)
    with pytest.raises(ValueError, match="eps_values must be positive"):
        eps_sweep(x, y, mask, mask, [0.1, 0.0])


def test_plan_sharpness_by_layer_tells_a_collapsed_layer_from_a_sharp_one():
    # layer 1: y a noisy permutation of x (sharp plans); layer 2: every token near one direction
    g = torch.Generator().manual_seed(1)
    B, T, H = 4, 6, 16
    x = torch.randn(B, T, H, generator=g, dtype=torch.float64)
    y = 0.05 * torch.randn(B, T, H, generator=g, dtype=torch.float64)
    for i in range(B):
        y[i] += x[i, torch.randperm(T, generator=g)]
    common = torch.randn(H, generator=g, dtype=torch.float64)
    xc = common + 0.05 * torch.randn(B, T, H, generator=g, dtype=torch.float64)
    yc = common + 0.05 * torch.randn(B, T, H, generator=g, dtype=torch.float64)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 4:] = False  # padding must not count
    frame = plan_sharpness_by_layer({1: (x, mask), 2: (xc, mask)}, {1: (y, mask), 2: (yc, mask)}, eps=0.02)
    sharp, flat = frame.set_index("layer").loc[1], frame.set_index("layer").loc[2]
    assert list(frame["layer"]) == [1, 2]
    assert sharp["plan_entropy"] < 0.6 < 0.9 < flat["plan_entropy"]
    assert flat["self_cosine"] > 0.95 and abs(sharp["self_cosine"]) < 0.3
    assert sharp["cost_std"] > 10 * flat["cost_std"]
    # cost_std against the masked cost matrices directly
    c = 1 - torch.nn.functional.cosine_similarity(x[:, :, None], y[:, None], dim=-1)  # (B, T, T)
    ref = np.mean([c[i][mask[i]][:, mask[i]].std().item() for i in range(B)])
    assert sharp["cost_std"] == pytest.approx(ref, rel=1e-9)
    with pytest.raises(ValueError, match="same non-empty layers"):
        plan_sharpness_by_layer({1: (x, mask)}, {2: (y, mask)})


@pytest.mark.parametrize("method", ["pca", pytest.param("umap", marks=pytest.mark.slow), "tsne"])  # umap: ~20 s (numba)
def test_projections_are_seeded_and_keep_labels(method):
    rng = _rng(5)
    centres = 3.0 * np.eye(8)[:2]  # two clusters, also apart after L2 normalisation
    x = np.concatenate([centres[0] + 0.5 * rng.normal(size=(20, 8)), centres[1] + 0.5 * rng.normal(size=(20, 8))])
    labels = [f"s{i}" for i in range(40)]
    langs = ["aaa_Latn"] * 20 + ["bbb_Latn"] * 20
    kw = {"max_iter": 500} if method == "tsne" else {}  # 40 points need far fewer than 1000
    a = project(x, labels, langs, method=method, seed=1, **kw)
    b = project(x, labels, langs, method=method, seed=1, **kw)
    assert a.coords.shape == (40, 2) and np.isfinite(a.coords).all()
    np.testing.assert_allclose(a.coords, b.coords, atol=1e-6)
    assert a.frame()["lang"].tolist() == langs and a.labels == labels
    # the two clusters stay apart: every point is nearer its own cluster's centre
    c0, c1 = a.coords[:20].mean(0), a.coords[20:].mean(0)
    near0 = np.linalg.norm(a.coords - c0, axis=1) < np.linalg.norm(a.coords - c1, axis=1)
    assert near0[:20].all() and not near0[20:].any()
    with pytest.raises(ValueError, match="40 embeddings but 3 labels"):
        project(x, labels[:3], langs, method=method)


def test_pca_matches_svd_up_to_sign():
    rng = _rng(6)
    x = rng.normal(size=(30, 6)) * np.arange(1, 7)
    got = project(x, method="pca", normalize=False).coords
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc)
    want = xc @ vt[:2].T
    np.testing.assert_allclose(np.abs(got), np.abs(want), atol=1e-9)


def test_alignment_report_rows():
    rng = _rng(7)
    eng = rng.normal(size=(30, 8))
    embs = {"close_Latn": eng + 0.1 * rng.normal(size=eng.shape), "far_Latn": rng.normal(size=eng.shape)}
    rep = alignment_report(embs, eng, pivot_lang="eng_Latn")
    f = rep.frame.set_index("lang")
    assert list(f.index) == ["close_Latn", "far_Latn", "all"]
    assert f.loc["close_Latn", "translation_gap"] > f.loc["far_Latn", "translation_gap"]
    assert f.loc["close_Latn", "cka"] > f.loc["far_Latn", "cka"]
    assert f.loc["all", "translation_gap"] == pytest.approx(f["translation_gap"].iloc[:2].mean())
    assert f.loc["all", "probe_chance"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="do not match the pivot"):
        alignment_report({"x": eng[:5]}, eng)


def test_mean_pairwise_cosine():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    assert geometry.mean_pairwise_cosine(x) == pytest.approx((0 + 1 + 0) / 3)
    with pytest.raises(ValueError, match="N >= 2"):
        geometry.mean_pairwise_cosine(x[:1])


def test_free_token_flow_entropic_collapses_divergence_and_emd_keep_the_teacher_spread():
    """Feydy et al.'s entropic bias, on a cloud the loss may move freely: minimising OT_eps
    pulls the student's tokens together; the debiased divergence and exact OT end at the
    teacher's spread (equal token counts, so that the teacher's cloud is reachable)."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(6, 8, generator=g, dtype=torch.float64) + 1.0  # (S, H)
    x = y[torch.randperm(6, generator=g)] + 0.5 * torch.randn(6, 8, generator=g, dtype=torch.float64)  # (T, H)
    flow = geometry.free_token_flow(x, y, steps=100, lr=0.03, eps=0.3, record_every=50)
    end = flow.final()
    teacher = flow.teacher_spread
    assert end["entropic"] > teacher + 0.2
    assert abs(end["divergence"] - teacher) < 0.01 and abs(end["emd"] - teacher) < 0.01
    assert end["plan_cost"] < end["entropic"]
    assert sorted(flow.spread["step"].unique()) == [0, 50, 100]
    with pytest.raises(ValueError, match="unknown objectives"):
        geometry.free_token_flow(x, y, ["sharp"])
