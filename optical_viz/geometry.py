"""Geometry of multilingual embedding spaces: 2-D projections and alignment metrics.

These quantify the "OT vs contrastive alignment" comparison: how close translations are
(translation gap, alignment), how spread the space is (uniformity), how much language
identity is still linearly decodable (probe accuracy: lower is more language-neutral), how
similar the representational geometry of two languages is (linear CKA), and, at token
level, how peaked transport plans are (entropy, mass on mutual-argmax links).

All metrics are pure functions of embeddings (torch tensors, any float dtype; computed in
float64) and return floats or small dataclasses; projections return the coordinates with
the label and language of every point kept alongside.

>>> x, y = enc.embed_sentences(yor), enc.embed_sentences(eng)       # (N, H) parallel rows
>>> translation_gap(x, y)                                          # > 0: translations closer
>>> report = alignment_report({"yor_Latn": x, "hau_Latn": z}, pivot=y)
>>> report.frame                                                   # one row per language
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

__all__ = [
    "PROJECTIONS",
    "Projection",
    "project",
    "translation_gap",
    "alignment",
    "uniformity",
    "linear_cka",
    "language_probe_accuracy",
    "plan_entropy",
    "mutual_argmax_mass",
    "eps_sweep",
    "plan_sharpness_by_layer",
    "TOY_OBJECTIVES",
    "TokenFlow",
    "mean_pairwise_cosine",
    "token_cloud",
    "free_token_flow",
    "GeometryReport",
    "alignment_report",
]

PROJECTIONS = ("pca", "umap", "tsne")


# ---- projections -----------------------------------------------------------------------
@dataclass
class Projection:
    """2-D coordinates of N points, with what each point is.

    coords: (N, 2) float64; labels: N strings (the text or token); langs: N language codes.
    """

    coords: np.ndarray
    labels: list[str]
    langs: list[str]
    method: str
    seed: int

    def frame(self) -> pd.DataFrame:
        """Columns x, y, label, lang: ready for seaborn."""
        return pd.DataFrame({"x": self.coords[:, 0], "y": self.coords[:, 1], "label": self.labels, "lang": self.langs})


def project(
    embeddings,
    labels: list[str] | None = None,
    langs: list[str] | None = None,
    method: str = "pca",
    seed: int = 0,
    normalize: bool = True,
    **kwargs,
) -> Projection:
    """Project embeddings (N, H) to 2-D with PCA, UMAP or t-SNE (seeded, deterministic).

    labels, langs: N strings each (default: the row index / ""). ``normalize`` L2-normalises
    rows first (cosine geometry). ``kwargs`` go to the projector (e.g. ``n_neighbors=15``,
    ``perplexity=30``; the perplexity is capped at (N - 1) / 3 for small N).
    """
    x = _as_float64(embeddings, "embeddings")
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"need at least 3 points to project, got {n}")
    labels = [str(i) for i in range(n)] if labels is None else list(labels)
    langs = [""] * n if langs is None else list(langs)
    if len(labels) != n or len(langs) != n:
        raise ValueError(f"{n} embeddings but {len(labels)} labels and {len(langs)} langs")
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
    if method == "pca":
        xc = x - x.mean(0)
        _, _, vt = np.linalg.svd(xc, full_matrices=False)
        vt = vt[:2] * np.sign(vt[:2, [0]] + (vt[:2, [0]] == 0))  # fix the sign: deterministic
        coords = xc @ vt.T
    elif method == "umap":
        import umap

        params = dict(n_neighbors=min(15, n - 1), min_dist=0.1, random_state=seed, n_jobs=1)
        params.update(kwargs)
        coords = umap.UMAP(n_components=2, **params).fit_transform(x)
    elif method == "tsne":
        from sklearn.manifold import TSNE

        params = dict(perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed)
        params.update(kwargs)
        coords = TSNE(n_components=2, **params).fit_transform(x)
    else:
        raise ValueError(f"unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}")
    return Projection(np.asarray(coords, dtype=np.float64), labels, langs, method, seed)


# ---- sentence-level metrics ------------------------------------------------------------
def translation_gap(x, y) -> float:
    """Mean cosine of translation pairs minus mean cosine of non-translation pairs.

    x, y: (N, H) embeddings with row i of x a translation of row i of y (N >= 2). The
    "random pairs" are all N(N-1) mismatched pairs (exact, no sampling).
    """
    x, y = _pair(x, y)
    sim = _unit(x) @ _unit(y).T  # (N, N)
    n = len(sim)
    diag = np.trace(sim)
    return float(diag / n - (sim.sum() - diag) / (n * (n - 1)))


def alignment(x, y, alpha: float = 2.0) -> float:
    """Wang & Isola (2020) alignment: ``E ||f(x) - f(y)||^alpha`` over positive pairs,
    on L2-normalised rows (lower is better aligned). x, y: (N, H), row i paired with row i."""
    x, y = _pair(x, y)
    return float((np.linalg.norm(_unit(x) - _unit(y), axis=1) ** alpha).mean())


def uniformity(x, t: float = 2.0) -> float:
    """Wang & Isola (2020) uniformity: ``log E exp(-t ||f(x_i) - f(x_j)||^2)`` over pairs i < j
    of L2-normalised rows (lower is more uniform). x: (N, H), N >= 2."""
    u = _unit(_as_float64(x, "x"))
    if len(u) < 2:
        raise ValueError(f"uniformity needs at least 2 points, got {len(u)}")
    sq = np.clip(2.0 - 2.0 * (u @ u.T), 0.0, None)  # (N, N) squared distances of unit vectors
    iu = np.triu_indices(len(u), k=1)
    v = -t * sq[iu]
    m = v.max()
    return float(m + np.log(np.mean(np.exp(v - m))))  # log-mean-exp, stable


def linear_cka(x, y) -> float:
    """Linear CKA (Kornblith et al. 2019) between two representations of the same N items.

    x: (N, Hx), y: (N, Hy). ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with
    column-centred Xc, Yc; 1 for representations equal up to rotation and isotropic scaling.
    """
    x, y = _as_float64(x, "x"), _as_float64(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of rows, got {x.shape} and {y.shape}")
    xc, yc = x - x.mean(0), y - y.mean(0)
    num = np.linalg.norm(yc.T @ xc) ** 2
    den = np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)
    if den == 0:
        raise ValueError("linear CKA is undefined for a constant representation")
    return float(num / den)


def language_probe_accuracy(embeddings, langs: list[str], folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a linear (logistic-regression) language-identity probe.

    embeddings: (N, H); langs: N language codes (at least 2 distinct, each at least ``folds``
    times). Chance level is the share of the most frequent language; lower accuracy means
    a more language-neutral space.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    x = _unit(_as_float64(embeddings, "embeddings"))
    y = np.asarray(langs)
    if len(y) != len(x):
        raise ValueError(f"{len(x)} embeddings but {len(y)} language labels")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2 or counts.min() < folds:
        raise ValueError(f"need >= 2 languages with >= {folds} points each, got {dict(zip(classes, counts))}")
    probe = LogisticRegression(max_iter=2000, C=1.0)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(probe, x, y, cv=cv).mean())


# ---- token-level metrics on transport plans --------------------------------------------
def plan_entropy(plan: torch.Tensor, normalized: bool = True) -> torch.Tensor:
    """Entropy of transport plans, the plan read as a joint distribution over token pairs.

    plan: (T, S) or (B, T, S), non-negative, zero on padding (the ``TransportResult.plan``
    convention). Each plan is renormalised to total mass 1. With ``normalized`` the entropy
    is divided by ``log(T_real * S_real)`` (real = rows / columns with mass), so 1 is the
    uniform plan and 1/2 ... 0 a permutation-like plan. Returns () or (B,) float.
    """
    p, squeeze = _plans(plan)
    p = p / p.sum((-2, -1), keepdim=True)
    h = -torch.where(p > 0, p * torch.log(p), torch.zeros_like(p)).sum((-2, -1))  # (B,)
    if normalized:
        t = (p.sum(-1) > 0).sum(-1)  # (B,) real source tokens
        s = (p.sum(-2) > 0).sum(-1)  # (B,) real target tokens
        size = torch.log((t * s).to(p.dtype))
        h = torch.where(size > 0, h / size.clamp(min=1e-12), torch.zeros_like(h))
    return h[0] if squeeze else h


def mutual_argmax_mass(plan: torch.Tensor) -> torch.Tensor:
    """Share of each plan's mass on mutual-argmax links (i, j): j = argmax_j P[i, :] and
    i = argmax_i P[:, j] (the links ``alignment.extract_links(plan, "inter")`` keeps).

    plan: (T, S) or (B, T, S), non-negative, zero on padding. Returns () or (B,) float in [0, 1].
    """
    p, squeeze = _plans(plan)
    B, T, S = p.shape
    row_best = p.argmax(-1)  # (B, T)
    col_best = p.argmax(-2)  # (B, S)
    rows = torch.arange(T, device=p.device).expand(B, T)
    mutual = col_best.gather(1, row_best) == rows  # (B, T): is (i, row_best[i]) mutual?
    link_mass = p.gather(2, row_best[..., None])[..., 0]  # (B, T)
    share = (link_mass * mutual * (p.sum(-1) > 0)).sum(-1) / p.sum((-2, -1))
    return share[0] if squeeze else share


def eps_sweep(
    x: torch.Tensor,
    y: torch.Tensor,
    x_mask: torch.Tensor,
    y_mask: torch.Tensor,
    eps_values,
    *,
    metric: str = "cosine",
    max_iter: int = 2000,
) -> pd.DataFrame:
    """How sharp entropic plans are, and how much the OT loss still aligns, per eps.

    x: (B, T, H), y: (B, S, H) token embeddings of B sentence pairs; masks (B, T) / (B, S)
    bool. For every eps: the Sinkhorn plans of the B cost matrices and, averaged over pairs,
    ``plan_entropy`` (normalised: 1 = the uniform plan), ``mutual_argmax_mass``,
    ``ot_cost`` (``<P, C>``, the OPTICAL loss) and ``independent_cost`` (``<a b^T, C>``, the
    loss of the uniform plan). When ``ot_cost / independent_cost`` nears 1 the loss no longer
    aligns tokens: its gradient pulls every token towards the other sentence's mean token.
    Returns a DataFrame with one row per eps (columns above, plus ``cost_ratio``).
    """
    from optical_viz import transport

    eps_values = [float(e) for e in eps_values]
    if not eps_values or min(eps_values) <= 0:
        raise ValueError(f"eps_values must be positive numbers, got {eps_values}")
    cost = transport.cost_matrix(x.double(), y.double(), metric=metric, x_mask=x_mask, y_mask=y_mask)  # (B, T, S)
    a = transport.marginal(x_mask, None, dtype=cost.dtype)  # (B, T)
    b = transport.marginal(y_mask, None, dtype=cost.dtype)  # (B, S)
    independent = (a[:, :, None] * b[:, None, :] * cost).sum((1, 2))  # (B,)
    rows = []
    for eps in eps_values:
        res = transport.sinkhorn(cost, x_mask, y_mask, eps=eps, a=a, b=b, max_iter=max_iter, tol=1e-6)
        rows.append(dict(
            eps=eps,
            plan_entropy=float(plan_entropy(res.plan).mean()),
            mutual_argmax_mass=float(mutual_argmax_mass(res.plan).mean()),
            ot_cost=float(res.cost.mean()),
            independent_cost=float(independent.mean()),
            converged=float(res.converged.double().mean()),
        ))
    frame = pd.DataFrame(rows)
    frame["cost_ratio"] = frame["ot_cost"] / frame["independent_cost"]
    return frame


def plan_sharpness_by_layer(x_by_layer, y_by_layer, eps: float = 0.02, *, metric: str = "cosine") -> pd.DataFrame:
    """How sharp entropic plans are at each layer, for one eps: what an OT loss at that layer sees.

    x_by_layer: {layer: (x, x_mask)} with x (B, T, H) token embeddings and x_mask (B, T) bool;
    y_by_layer: {layer: (y, y_mask)}, y (B, S, H), the same B translation pairs and layers.
    For each layer, the :func:`eps_sweep` row at ``eps`` (``plan_entropy``, ``mutual_argmax_mass``,
    ``ot_cost``, ``independent_cost``, ``cost_ratio``) plus ``cost_std`` (standard deviation of a
    pair's real costs, mean over pairs: eps against it says how blurred the plans are) and
    ``self_cosine`` (mean cosine between distinct tokens of the same sentence, mean over source
    sentences with >= 2 tokens: 1 = collapsed). Returns a DataFrame with one row per layer.
    """
    from optical_viz import transport

    if set(x_by_layer) != set(y_by_layer) or not x_by_layer:
        raise ValueError(f"x_by_layer and y_by_layer must have the same non-empty layers, got "
                         f"{sorted(x_by_layer)} and {sorted(y_by_layer)}")
    rows = []
    for layer in sorted(x_by_layer):
        (x, xm), (y, ym) = x_by_layer[layer], y_by_layer[layer]
        keep = xm.any(1) & ym.any(1)  # (B,) pairs with tokens on both sides
        x, xm, y, ym = x[keep], xm[keep], y[keep], ym[keep]
        row = eps_sweep(x, y, xm, ym, [eps], metric=metric).iloc[0].to_dict()
        cost = transport.cost_matrix(x.double(), y.double(), metric=metric, x_mask=xm, y_mask=ym)  # (B, T, S)
        pair = xm[:, :, None] & ym[:, None, :]  # (B, T, S) real entries
        stds = [float(c[p].std()) for c, p in zip(cost, pair) if int(p.sum()) > 1]
        selfs = [mean_pairwise_cosine(xi[mi]) for xi, mi in zip(x, xm) if int(mi.sum()) >= 2]
        rows.append(dict(layer=int(layer), **row, cost_std=float(np.mean(stds)), self_cosine=float(np.mean(selfs))))
    return pd.DataFrame(rows)


# the objectives the free-token toy compares: name -> ot_loss options
TOY_OBJECTIVES = {
    "entropic": dict(objective="entropic", grad="envelope"),
    "plan_cost": dict(objective="plan_cost", grad="unroll"),
    "divergence": dict(objective="divergence", grad="envelope"),
    "emd": dict(objective="plan_cost", plan="emd"),
}


@dataclass
class TokenFlow:
    """Result of :func:`free_token_flow`.

    spread: DataFrame with columns objective, step, spread (mean pairwise cosine of the
        student's tokens after that many steps; step 0 is the start), loss.
    teacher_spread: the teacher tokens' mean pairwise cosine, the value a faithful loss
        should end at.
    """

    spread: pd.DataFrame
    teacher_spread: float

    def final(self) -> dict[str, float]:
        """Spread after the last step, per objective."""
        last = self.spread[self.spread["step"] == self.spread["step"].max()]
        return dict(zip(last["objective"], last["spread"]))


def mean_pairwise_cosine(x: torch.Tensor) -> float:
    """Mean cosine over distinct pairs of the rows of x (N, H), N >= 2: 1 means collapsed."""
    if x.dim() != 2 or len(x) < 2:
        raise ValueError(f"expected (N, H) with N >= 2, got {tuple(x.shape)}")
    u = torch.nn.functional.normalize(x.double(), dim=-1)
    g = u @ u.T  # (N, N)
    n = len(u)
    return float((g.sum() - g.diagonal().sum()) / (n * (n - 1)))


def token_cloud(encoder, text: str, layer: int = -1) -> torch.Tensor:
    """The content tokens of one text as a point cloud: (N, H) float32, the token embeddings
    of ``layer`` whose ``word_ids`` are not None (no ``<s>``, ``</s>``, prefix pieces)."""
    batch = encoder.embed_tokens([text], layer=layer)
    keep = [k for k, w in enumerate(batch.word_ids[0]) if w is not None]  # real tokens are left-aligned
    if len(keep) < 2:
        raise ValueError(f"{text!r} has {len(keep)} content token(s); a cloud needs at least 2")
    return batch.embeddings[0, keep].cpu()


def free_token_flow(
    student: torch.Tensor,
    teacher: torch.Tensor,
    objectives=tuple(TOY_OBJECTIVES),
    *,
    eps: float = 0.02,
    steps: int = 200,
    lr: float = 0.01,
    record_every: int = 10,
) -> TokenFlow:
    """The free-token toy: what each OT objective does to a point cloud it may move freely.

    student: (T, H) token vectors (e.g. e5's content tokens of a German sentence), the
    starting point; teacher: (S, H) the target tokens (its English translation), fixed. For
    every objective of :data:`TOY_OBJECTIVES`, the T vectors are optimised by Adam
    (``lr``, ``steps``) on the OT loss (cosine cost, uniform marginals, eps in cost units),
    and the student's spread (:func:`mean_pairwise_cosine`) is recorded every
    ``record_every`` steps. A loss whose minimiser is the teacher's cloud ends at the
    teacher's spread; the entropic value OT_eps ends more collapsed (Feydy et al. 2019).
    """
    from optical_viz import losses

    if student.dim() != 2 or teacher.dim() != 2 or student.shape[1] != teacher.shape[1]:
        raise ValueError(f"student (T, H) and teacher (S, H) must share H, got {tuple(student.shape)} and {tuple(teacher.shape)}")
    bad = [o for o in objectives if o not in TOY_OBJECTIVES]
    if bad:
        raise ValueError(f"unknown objectives {bad}; choose from {list(TOY_OBJECTIVES)}")
    y = teacher.detach().double()[None]  # (1, S, H)
    my = torch.ones(1, y.shape[1], dtype=torch.bool)
    mx = torch.ones(1, student.shape[0], dtype=torch.bool)
    rows = []
    for name in objectives:
        x = student.detach().double().clone()[None].requires_grad_(True)  # (1, T, H)
        opt = torch.optim.Adam([x], lr=lr)
        for step in range(steps + 1):
            with warnings.catch_warnings():  # a toy: a pair a little short of tol moves the same way
                warnings.filterwarnings("ignore", "sinkhorn", RuntimeWarning)
                out = losses.ot_loss(x, y, mx, my, eps=eps, max_iter=1000, tol=1e-6, **TOY_OBJECTIVES[name])
            if step % record_every == 0 or step == steps:
                rows.append(dict(objective=name, step=step, spread=mean_pairwise_cosine(x[0].detach()), loss=float(out.loss.detach())))
            if step == steps:
                break
            opt.zero_grad()
            out.loss.backward()
            opt.step()
    return TokenFlow(pd.DataFrame(rows), mean_pairwise_cosine(teacher))


# ---- report ----------------------------------------------------------------------------
@dataclass
class GeometryReport:
    """Alignment metrics per language (rows) and overall (``lang == "all"``).

    frame columns: lang, n, translation_gap, alignment, uniformity, cka (with the pivot);
    probe_accuracy and probe_chance are on the "all" row (a probe over all languages + pivot).
    """

    frame: pd.DataFrame
    pivot: str
    notes: list[str] = field(default_factory=list)


def alignment_report(
    embeddings: dict[str, torch.Tensor],
    pivot,
    pivot_lang: str = "eng_Latn",
    probe: bool = True,
    seed: int = 0,
) -> GeometryReport:
    """Alignment metrics of each language against a pivot (English) on parallel sentences.

    embeddings: language -> (N, H) sentence embeddings; pivot: (N, H) embeddings of the
    same N sentences in the pivot language (row i of every array is the same sentence).
    """
    if not embeddings:
        raise ValueError("no languages given")
    yp = _as_float64(pivot, "pivot")
    rows = []
    for lang, x in embeddings.items():
        x = _as_float64(x, lang)
        if x.shape != yp.shape:
            raise ValueError(f"{lang}: embeddings {x.shape} do not match the pivot {yp.shape}")
        rows.append(dict(lang=lang, n=len(x), translation_gap=translation_gap(x, yp), alignment=alignment(x, yp),
                         uniformity=uniformity(x), cka=linear_cka(x, yp)))
    frame = pd.DataFrame(rows)
    overall = {"lang": "all", "n": int(frame["n"].sum())}
    for col in ("translation_gap", "alignment", "uniformity", "cka"):
        overall[col] = float(frame[col].mean())
    if probe:
        allx = np.concatenate([yp, *(_as_float64(x, k) for k, x in embeddings.items())])
        labels = [pivot_lang] * len(yp) + [k for k, x in embeddings.items() for _ in range(len(x))]
        overall["probe_accuracy"] = language_probe_accuracy(allx, labels, seed=seed)
        overall["probe_chance"] = max(np.unique(labels, return_counts=True)[1]) / len(labels)
    frame = pd.concat([frame, pd.DataFrame([overall])], ignore_index=True)
    return GeometryReport(frame, pivot_lang)


# ---- helpers ---------------------------------------------------------------------------
def _as_float64(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, H) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_float64(x, "x"), _as_float64(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must be parallel (same shape), got {x.shape} and {y.shape}")
    if len(x) < 2:
        raise ValueError(f"need at least 2 pairs, got {len(x)}")
    return x, y


def _plans(plan: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if plan.ndim not in (2, 3):
        raise ValueError(f"plan must be (T, S) or (B, T, S), got shape {tuple(plan.shape)}")
    if bool((plan < 0).any()):
        raise ValueError("plan has negative entries")
    p = plan[None] if plan.ndim == 2 else plan
    if bool((p.sum((-2, -1)) <= 0).any()):
        raise ValueError("a plan has zero total mass")
    return p, plan.ndim == 2
