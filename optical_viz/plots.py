"""Figures for papers and teaching: transport plans, alignments, projections, curves.

Every plotting function takes ``ax=None`` (or ``axes=None`` for small multiples),
creates a figure only when none is given, draws on the axes it was handed, and
returns them. No function here computes transport: plans, projections and
metrics come from :mod:`optical_viz.transport`, :mod:`optical_viz.alignment`,
:mod:`optical_viz.geometry`, :mod:`optical_viz.retrieval` and the trainer.

Arrays may be numpy arrays, torch tensors (any device, any float dtype) or
nested lists; they are converted to float64 numpy arrays for drawing.

>>> from optical_viz import plots
>>> with plots.publication_style():
...     ax = plots.plot_plan(result.plan[0], src_tokens, tgt_tokens)
...     plots.save_figure(ax.figure, "figures/plan")      # plan.pdf, plan.svg, plan.png
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = [
    "PALETTE",
    "PLAN_CMAP",
    "SCRIPT_FONTS",
    "font_families",
    "missing_script_fonts",
    "publication_style",
    "save_figure",
    "language_colors",
    "plot_plan",
    "plot_bipartite",
    "plot_plan_grid",
    "plot_toy_transport",
    "plot_projection",
    "plot_projections",
    "plot_projection_comparison",
    "metrics_frame",
    "loss_columns",
    "finite_array",
    "plot_training_curves",
    "plot_eval_curves",
    "plot_retrieval",
    "plot_scaling",
    "plot_metric_comparison",
    "plot_contrasts",
    "plot_alignment_by_layer",
    "plot_links_vs_gold",
    "GOLD_LINK_COLORS",
    "plot_estimates",
    "plot_eps_sweep",
    "plot_token_flow",
]

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common
# colour-vision deficiencies and in greyscale print. Black comes last: language_colors keeps
# it for English, the reference language.
PALETTE: tuple[str, ...] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#CC79A7",  # reddish purple
    "#F0E442",  # yellow
    "#000000",  # black
)
# Sequential, perceptually uniform, colour-blind safe and readable in greyscale.
PLAN_CMAP = "magma_r"

# one column of a two-column paper (ACM / ACL) is about 3.3 inches wide
COLUMN_WIDTH = 3.3
TEXT_WIDTH = 6.9


# Text of every script the toolkit's languages use (FLORES-200). DejaVu Sans first (Latin,
# Greek, Cyrillic, IPA); then one Noto family per script it lacks (Debian: fonts-noto-core,
# fonts-noto-cjk; `make setup` installs them). Matplotlib takes each glyph from the first
# family of ``font.family`` that has it, and its bundled libraqm shapes complex scripts
# (Arabic joining, Devanagari conjuncts) and lays right-to-left text out right to left.
SCRIPT_FONTS: tuple[str, ...] = (
    "DejaVu Sans",
    "Noto Sans",
    "Noto Sans Devanagari", "Noto Sans Bengali", "Noto Sans Gurmukhi", "Noto Sans Gujarati",
    "Noto Sans Oriya", "Noto Sans Tamil", "Noto Sans Telugu", "Noto Sans Kannada",
    "Noto Sans Malayalam", "Noto Sans Sinhala", "Noto Sans Meetei Mayek", "Noto Sans Ol Chiki",
    "Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK JP", "Noto Sans CJK KR",
    "Noto Sans Arabic", "Noto Sans Hebrew", "Noto Sans Syriac", "Noto Sans Thaana",
    "Noto Sans Ethiopic", "Noto Sans Tifinagh", "Noto Sans Armenian", "Noto Sans Georgian",
    "Noto Sans Thai", "Noto Sans Lao", "Noto Sans Khmer", "Noto Sans Myanmar", "Noto Serif Tibetan",
    "Noto Sans Symbols",
)


@functools.lru_cache(maxsize=1)
def font_families() -> tuple[str, ...]:
    """The families of :data:`SCRIPT_FONTS` that are installed, in that order.

    Fonts installed after matplotlib built its font cache (``make setup`` on a machine where
    matplotlib was used before) are registered here from the system font folders, once.
    """
    from matplotlib import font_manager as fm

    known = {f.name for f in fm.fontManager.ttflist}
    missing = [f for f in SCRIPT_FONTS if f not in known]
    if missing:
        # file names: NotoSansDevanagari-Regular.ttf, NotoSansCJK-Regular.ttc (all four CJK families)
        stems = {re.sub(r"CJK(SC|TC|JP|KR)$", "CJK", m.replace(" ", "")) + "-Regular." for m in missing}
        for path in fm.findSystemFonts():
            if any(Path(path).name.startswith(stem) for stem in stems):
                with contextlib.suppress(Exception):  # an unreadable font file: skip it
                    fm.fontManager.addfont(path)
        known = {f.name for f in fm.fontManager.ttflist}
    return tuple(f for f in SCRIPT_FONTS if f in known)


@contextlib.contextmanager
def missing_glyphs() -> Iterator[list[str]]:
    """Collect matplotlib's "Glyph N missing from font(s) <every fallback font>" warnings (one
    long line per character and draw) while drawing: yields a list that holds, after the block,
    the characters no installed font has (drawn as empty boxes: most emoji), for one short
    note. Other warnings pass through.

    >>> with missing_glyphs() as missing:     # doctest: +SKIP
    ...     fig.savefig("plan.png")
    >>> missing                               # doctest: +SKIP
    ['🤖']
    """
    import warnings

    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield found
    for w in caught:
        m = re.match(r"Glyph (\d+) \(.*\) missing from font", str(w.message))
        if m is None:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif chr(int(m.group(1))) not in found:
            found.append(chr(int(m.group(1))))


def missing_script_fonts() -> list[str]:
    """The families of :data:`SCRIPT_FONTS` that are not installed ([] when all are)."""
    have = set(font_families())
    return [f for f in SCRIPT_FONTS if f not in have]


# --------------------------------------------------------------------------- style


@contextlib.contextmanager
def publication_style(font_size: float = 8.0, *, usetex: bool = False) -> Iterator[None]:
    """Context manager with paper-ready matplotlib settings.

    Font sizes readable at column width (``font_size`` for text, one point less
    for ticks and legends), fonts for every script of the toolkit's languages
    (:func:`font_families`: no empty boxes for Hindi, Chinese, Arabic, Amharic or
    Thai tokens, Arabic shaped and laid out right to left), the Okabe-Ito colour cycle, thin spines without the
    top and right ones, constrained (tight) layout, vector-friendly fonts
    (Type 42 in PDF, text kept as text in SVG), 300 dpi raster output.
    Settings are restored on exit::

        with publication_style():
            ax = plot_scaling(df)
            save_figure(ax.figure, "figures/scaling")
    """
    small = font_size - 1
    rc = {
        "font.size": font_size,
        "font.family": list(font_families()) or ["sans-serif"],  # per-glyph fallback
        "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
        "axes.titlesize": font_size + 1,
        "axes.labelsize": font_size,
        "xtick.labelsize": small,
        "ytick.labelsize": small,
        "legend.fontsize": small,
        "legend.title_fontsize": font_size,
        "legend.frameon": False,
        "axes.prop_cycle": mpl.cycler(color=list(PALETTE)),
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.linewidth": 0.6,
        "axes.titlepad": 4.0,
        "xtick.major.width": 0.6,
        "ytick.major.width": 0.6,
        "xtick.major.size": 2.5,
        "ytick.major.size": 2.5,
        "lines.linewidth": 1.3,
        "lines.markersize": 4.0,
        "grid.linewidth": 0.4,
        "grid.alpha": 0.4,
        "figure.figsize": (COLUMN_WIDTH, COLUMN_WIDTH * 0.75),
        "figure.dpi": 110,
        "figure.constrained_layout.use": True,
        "savefig.dpi": 300,
        "savefig.bbox": "tight",
        "savefig.pad_inches": 0.02,
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "svg.fonttype": "none",
        "svg.hashsalt": "optical_viz",  # deterministic SVG ids
        "image.cmap": PLAN_CMAP,
        "text.usetex": usetex,
    }
    # pyplot's interactive mode is switched on by the notebook backend the first time
    # pyplot is used, possibly inside this block: keep it, or later figures never display
    interactive = mpl.rcParams["interactive"]
    try:
        with mpl.rc_context(rc):
            try:
                yield
            finally:
                interactive = mpl.rcParams["interactive"]
    finally:
        mpl.interactive(interactive)


def save_figure(
    fig: Figure,
    path: str | os.PathLike,
    formats: Sequence[str] = ("pdf", "svg", "png"),
    *,
    dpi: int = 300,
) -> list[Path]:
    """Write ``fig`` as PDF, SVG and PNG next to each other.

    ``path`` is the stem (``figures/plan``); a suffix in it (``plan.png``) is
    replaced. Parent folders are created. The files are byte-reproducible: no creation or
    modification date, fixed creator / software tags and SVG hash salt, so re-running a
    seeded notebook rewrites identical PDF, SVG and PNG files (given the same installed
    fonts: the per-glyph fallback list of :func:`publication_style` names the installed
    Noto fonts in SVG text and changes the fonts embedded in PDF).
    Returns the paths written, in the order of ``formats``.
    """
    if not isinstance(fig, Figure):
        raise ValueError(f"save_figure expects a matplotlib Figure, got {type(fig).__name__}")
    unknown = [f for f in formats if f not in ("pdf", "svg", "png")]
    if unknown or not formats:
        raise ValueError(f"formats must be a non-empty subset of ('pdf', 'svg', 'png'), got {tuple(formats)}")
    stem = Path(path)
    if stem.suffix.lower() in (".pdf", ".svg", ".png"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "pdf": {"CreationDate": None, "ModDate": None, "Creator": "optical_viz", "Producer": None},
        "svg": {"Date": None, "Creator": "optical_viz"},
        "png": {"Software": "optical_viz"},
    }
    written = []
    for fmt in formats:
        out = stem.with_name(stem.name + "." + fmt)
        with mpl.rc_context({"svg.hashsalt": "optical_viz"}):  # deterministic SVG element ids
            fig.savefig(out, format=fmt, dpi=dpi, metadata=metadata[fmt], bbox_inches="tight", pad_inches=0.02)
        written.append(out)
    return written


def language_colors(languages: Iterable[str]) -> dict[str, str]:
    """A stable colour per language: English (``eng*``/``en``) black, others in palette order."""
    colors: dict[str, str] = {}
    others = [c for c in PALETTE if c != "#000000"]
    k = 0
    for lang in dict.fromkeys(languages):  # unique, first-seen order
        if str(lang).split("_")[0] in ("eng", "en"):
            colors[lang] = "#000000"
        else:
            colors[lang] = others[k % len(others)]
            k += 1
    return colors


# --------------------------------------------------------------------------- helpers


def finite_array(x: Any, name: str) -> np.ndarray:
    """numpy float64 copy of an array-like or a torch tensor (detached, on the CPU)."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().to("cpu").double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite values (NaN or inf); shape {arr.shape}")
    return arr


def _plan_2d(plan: Any, src_tokens: Sequence[str] | None, tgt_tokens: Sequence[str] | None, index: int) -> np.ndarray:
    """A (T, S) plan with padding rows/columns removed (kept to the token lists' lengths)."""
    p = finite_array(plan, "plan")
    if p.ndim == 3:
        if not 0 <= index < p.shape[0]:
            raise ValueError(f"index {index} out of range for a batch of plans of shape {p.shape}")
        p = p[index]
    if p.ndim != 2:
        raise ValueError(f"plan must have shape (T, S) or (B, T, S), got {p.shape}")
    if (p < -1e-12).any():
        raise ValueError(f"plan has negative entries (min {p.min():.3g}); shape {p.shape}")
    t = len(src_tokens) if src_tokens is not None else p.shape[0]
    s = len(tgt_tokens) if tgt_tokens is not None else p.shape[1]
    if t > p.shape[0] or s > p.shape[1]:
        raise ValueError(
            f"{t} source and {s} target tokens do not fit a plan of shape {p.shape} "
            "(rows are source tokens, columns target tokens)"
        )
    # padding sits at the end (right padding); it carries no mass and is hidden
    return p[:t, :s]


def _new_ax(ax: Axes | None, figsize: tuple[float, float] | None = None) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize)
    return ax


def _display_token(tok: str) -> str:
    """SentencePiece ``\u2581word`` -> ``_word`` so that word starts stay visible in any font."""
    return str(tok).replace("\u2581", "_")


def _blank(ax: Axes) -> None:
    """No ticks, no spines: for point clouds whose axes carry no meaning."""
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)


def _auto_size(t: int, s: int, cell: float = 0.2) -> tuple[float, float]:
    return (min(max(2.2, 1.1 + cell * s), TEXT_WIDTH), min(max(2.0, 0.8 + cell * t), 9.0))


# --------------------------------------------------------------------------- plans


def plot_plan(
    plan: Any,
    src_tokens: Sequence[str] | None = None,
    tgt_tokens: Sequence[str] | None = None,
    *,
    links: Iterable[tuple[int, int]] | None = None,
    index: int = 0,
    ax: Axes | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
    title: str | None = None,
    cmap: str = PLAN_CMAP,
) -> Axes:
    """Heatmap of a transport plan: source tokens on rows, target tokens on columns.

    Parameters
    ----------
    plan : array-like or tensor, shape (T, S) or (B, T, S)
        Non-negative transport plan (``TransportResult.plan`` or ``Alignment.plan``);
        with a batch, ``index`` picks the pair. Padding (right-padded rows and
        columns beyond ``len(src_tokens)`` / ``len(tgt_tokens)``) is hidden.
    src_tokens, tgt_tokens : list of str, lengths T' <= T and S' <= S
        Tick labels (low-resource side on rows, English side on columns).
    links : iterable of (i, j), optional
        Hard links (row i, column j) drawn as open squares over the heatmap.
    vmax : float, optional
        Upper end of the colour scale (default: the plan's maximum); pass one
        value to compare several plans on the same scale.

    The image's data (``ax.images[0].get_array()``) is the cropped plan.
    """
    p = _plan_2d(plan, src_tokens, tgt_tokens, index)
    t, s = p.shape
    ax = _new_ax(ax, _auto_size(t, s))
    vmax = float(p.max()) if vmax is None else float(vmax)
    im = ax.imshow(p, cmap=cmap, vmin=0.0, vmax=vmax if vmax > 0 else 1.0, aspect="auto", interpolation="nearest")
    if tgt_tokens is not None:
        ax.set_xticks(range(s))
        ax.set_xticklabels([_display_token(x) for x in tgt_tokens], rotation=60, ha="right", rotation_mode="anchor")
    else:
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True, nbins=6))
    if src_tokens is not None:
        ax.set_yticks(range(t))
        ax.set_yticklabels([_display_token(x) for x in src_tokens])
    else:
        ax.yaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True, nbins=6))
    ax.tick_params(length=0)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    if links is not None:
        ij = np.array(sorted(set(links)), dtype=float).reshape(-1, 2)
        bad = ij[(ij[:, 0] >= t) | (ij[:, 1] >= s) | (ij < 0).any(axis=1)]
        if len(bad):
            raise ValueError(f"links {bad[:3].astype(int).tolist()} fall outside the ({t}, {s}) plan")
        ax.scatter(
            ij[:, 1], ij[:, 0], marker="s", s=40, facecolors="none", edgecolors=PALETTE[4],
            linewidths=1.0, label="hard links", zorder=3,
        )
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
        cb.set_label("transported mass")
        cb.outline.set_linewidth(0.4)
    if title is not None:
        ax.set_title(title)
    return ax


def plot_bipartite(
    plan: Any,
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    *,
    links: Iterable[tuple[int, int]] | None = None,
    index: int = 0,
    ax: Axes | None = None,
    encode: str = "both",
    min_mass: float = 0.02,
    color: str = PALETTE[0],
    title: str | None = None,
) -> Axes:
    """Bipartite diagram: the source sentence on top, the target below, lines by mass.

    Parameters
    ----------
    plan : array-like or tensor, shape (T, S) or (B, T, S)
        As in :func:`plot_plan`; padding beyond the token lists is ignored.
    src_tokens, tgt_tokens : list of str
        The tokens of the two rows.
    encode : "width", "alpha" or "both"
        How a line shows its mass, relative to the plan's largest entry.
    min_mass : float
        Entries below ``min_mass * plan.max()`` are not drawn (they would be invisible).
    links : iterable of (i, j), optional
        Hard links, drawn as thin dashed black lines on top.

    The lines are ``ax.collections[0]`` (a LineCollection, one segment per drawn
    entry, in row-major order of the entries kept).
    """
    if encode not in ("width", "alpha", "both"):
        raise ValueError(f"encode must be 'width', 'alpha' or 'both', got {encode!r}")
    p = _plan_2d(plan, src_tokens, tgt_tokens, index)
    t, s = p.shape
    ax = _new_ax(ax, (min(max(3.0, 0.45 * max(t, s)), TEXT_WIDTH), 1.8))
    # tokens spread over [0, 1] on each row, so sentences of different lengths line up
    xs = np.linspace(0, 1, t) if t > 1 else np.array([0.5])
    xt = np.linspace(0, 1, s) if s > 1 else np.array([0.5])
    top, bottom = 1.0, 0.0
    peak = p.max() if p.max() > 0 else 1.0
    rel = p / peak  # (T, S) in [0, 1]
    keep = np.argwhere(rel >= min_mass)  # (K, 2) pairs (i, j)
    segments = [[(xs[i], top), (xt[j], bottom)] for i, j in keep]
    r = rel[keep[:, 0], keep[:, 1]] if len(keep) else np.zeros(0)
    widths = 0.3 + 3.2 * r if encode in ("width", "both") else np.full(len(r), 1.2)
    alphas = 0.15 + 0.85 * r if encode in ("alpha", "both") else np.full(len(r), 0.8)
    rgba = np.array([mpl.colors.to_rgba(color, a) for a in alphas]).reshape(-1, 4)
    ax.add_collection(LineCollection(segments, linewidths=widths, colors=rgba, capstyle="round", zorder=1))
    if links is not None:
        hard = [[(xs[i], top), (xt[j], bottom)] for i, j in sorted(set(links)) if i < t and j < s]
        ax.add_collection(LineCollection(hard, linewidths=0.6, colors="black", linestyles=(0, (2, 2)), zorder=2))
    text_kw = dict(ha="center", fontsize=mpl.rcParams["xtick.labelsize"], zorder=3,
                   bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.9))
    rot = 45 if max(t, s) > 12 else 0
    for x, tok in zip(xs, src_tokens):
        ax.text(x, top + 0.04, _display_token(tok), va="bottom", rotation=rot, **text_kw)
    for x, tok in zip(xt, tgt_tokens):
        ax.text(x, bottom - 0.04, _display_token(tok), va="top", rotation=rot, **text_kw)
    ax.set_xlim(-0.06, 1.06)
    ax.set_ylim(-0.35, 1.35)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return ax


def plot_plan_grid(
    plans: Mapping[str, Any],
    src_tokens: Sequence[str] | None = None,
    tgt_tokens: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    axes: Sequence[Axes] | np.ndarray | None = None,
    shared_scale: bool = True,
) -> np.ndarray:
    """Small multiples of one pair under several solvers (e.g. EMD, Sinkhorn at several eps).

    Parameters
    ----------
    plans : mapping title -> plan of shape (T, S)
        In display order, e.g. ``{"EMD": p0, "Sinkhorn ε=0.01": p1, ...}``.
    shared_scale : bool
        One colour scale for all panels (default), so that the blur of large eps
        shows as a fainter plan; one colour bar is drawn for the whole grid.
    axes : sequence of Axes, optional
        At least ``len(plans)`` axes; created (``ncols`` per row) when omitted.

    Returns the axes used, a 1-D object array of length ``len(plans)``.
    """
    if not plans:
        raise ValueError("plans is empty: pass at least one title -> plan")
    cropped = {k: _plan_2d(v, src_tokens, tgt_tokens, 0) for k, v in plans.items()}
    shapes = {v.shape for v in cropped.values()}
    if len(shapes) != 1:
        raise ValueError(f"all plans must have the same shape, got {sorted(shapes)}")
    n = len(cropped)
    if axes is None:
        ncols = ncols or min(n, 4)
        nrows = math.ceil(n / ncols)
        t, s = next(iter(shapes))
        w = min(TEXT_WIDTH, ncols * (0.9 + 0.16 * s))
        h = nrows * (0.9 + 0.16 * t)
        fig, grid = plt.subplots(nrows, ncols, figsize=(w, h), squeeze=False, sharex=True, sharey=True)
        for extra in grid.ravel()[n:]:
            extra.remove()
        axes = grid.ravel()[:n]
    axes = np.asarray(axes, dtype=object).ravel()
    if len(axes) < n:
        raise ValueError(f"{n} plans need {n} axes, got {len(axes)}")
    vmax = max(float(v.max()) for v in cropped.values()) if shared_scale else None
    for k, (ax, (name, p)) in enumerate(zip(axes, cropped.items())):
        plot_plan(p, src_tokens, tgt_tokens, ax=ax, vmax=vmax, colorbar=not shared_scale, title=name)
        if k % max(1, ncols or n) != 0:
            ax.tick_params(labelleft=False)
    if shared_scale:
        fig = axes[0].figure
        cb = fig.colorbar(axes[0].images[0], ax=list(axes[:n]), fraction=0.03, pad=0.02)
        cb.set_label("transported mass")
        cb.outline.set_linewidth(0.4)
    return axes[:n]


def plot_toy_transport(
    x: Any,
    y: Any,
    plan: Any,
    *,
    a: Any = None,
    b: Any = None,
    ax: Axes | None = None,
    min_mass: float = 0.01,
    labels: tuple[str, str] = ("source", "target"),
    title: str | None = None,
) -> Axes:
    """Two 2-D point clouds and a plan between them drawn as lines (for teaching).

    Parameters
    ----------
    x : array-like, shape (T, 2)
        Source points.
    y : array-like, shape (S, 2)
        Target points.
    plan : array-like or tensor, shape (T, S)
        Transport plan between them; line opacity and width follow mass.
    a, b : array-like, shapes (T,) and (S,), optional
        Point weights, shown as marker areas (default: equal sizes).
    min_mass : float
        Entries below ``min_mass * plan.max()`` are not drawn.

    Lines are ``ax.collections[0]``; the two clouds are ``ax.collections[1:3]``.
    """
    x = finite_array(x, "x")
    y = finite_array(y, "y")
    if x.ndim != 2 or x.shape[1] != 2 or y.ndim != 2 or y.shape[1] != 2:
        raise ValueError(f"x and y must have shapes (T, 2) and (S, 2), got {x.shape} and {y.shape}")
    p = finite_array(plan, "plan")
    if p.shape != (len(x), len(y)):
        raise ValueError(f"plan must have shape ({len(x)}, {len(y)}) for these clouds, got {p.shape}")
    ax = _new_ax(ax, (COLUMN_WIDTH, COLUMN_WIDTH))
    peak = p.max() if p.max() > 0 else 1.0
    keep = np.argwhere(p >= min_mass * peak)
    rel = p[keep[:, 0], keep[:, 1]] / peak
    segs = [[tuple(x[i]), tuple(y[j])] for i, j in keep]
    rgba = np.array([mpl.colors.to_rgba("0.25", 0.1 + 0.8 * r) for r in rel]).reshape(-1, 4)
    ax.add_collection(LineCollection(segs, colors=rgba, linewidths=0.3 + 1.7 * rel, zorder=1))

    def sizes(w: Any, n: int) -> np.ndarray:
        if w is None:
            return np.full(n, 22.0)
        w = finite_array(w, "weights")
        if w.shape != (n,):
            raise ValueError(f"weights must have shape ({n},), got {w.shape}")
        return 22.0 * n * w / max(w.sum(), 1e-12)

    ax.scatter(x[:, 0], x[:, 1], s=sizes(a, len(x)), c=PALETTE[0], marker="o", label=labels[0],
               edgecolors="white", linewidths=0.4, zorder=2)
    ax.scatter(y[:, 0], y[:, 1], s=sizes(b, len(y)), c=PALETTE[1], marker="^", label=labels[1],
               edgecolors="white", linewidths=0.4, zorder=2)
    ax.set_aspect("equal", adjustable="box")  # distances are the cost: keep them undistorted
    _blank(ax)
    ax.legend(loc="best", handletextpad=0.2, borderaxespad=0.2)
    if title is not None:
        ax.set_title(title)
    return ax


# --------------------------------------------------------------------------- projections


@dataclass
class _Points:
    coords: np.ndarray  # (N, 2)
    languages: list[str]  # N
    labels: list[Any] | None  # N or None


def _points(projection: Any, languages: Sequence[str] | None, labels: Sequence[Any] | None) -> _Points:
    """Accept a :class:`optical_viz.geometry.Projection` (``.coords``, ``.langs``, ``.labels``),
    a DataFrame with columns x, y, lang (or language)[, label], or an (N, 2) array with ``languages``."""
    if isinstance(projection, pd.DataFrame):
        coords = projection[["x", "y"]].to_numpy(dtype=float)
        lang_col = "lang" if "lang" in projection else "language"
        if languages is None and lang_col in projection:
            languages = projection[lang_col].tolist()
        if labels is None and "label" in projection:
            labels = projection["label"].tolist()
    elif hasattr(projection, "coords"):
        coords = finite_array(projection.coords, "coords")
        if languages is None:
            languages = next((getattr(projection, k) for k in ("langs", "languages") if hasattr(projection, k)), None)
        if labels is None:
            labels = getattr(projection, "labels", None)
    else:
        coords = finite_array(projection, "coords")
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must have shape (N, 2), got {coords.shape}")
    n = len(coords)
    if languages is None:
        raise ValueError("languages are required: one language per point")
    languages = [str(x) for x in languages]
    if len(languages) != n:
        raise ValueError(f"{n} points but {len(languages)} languages")
    if labels is not None:
        labels = list(labels)
        if len(labels) != n:
            raise ValueError(f"{n} points but {len(labels)} labels")
    return _Points(coords, languages, labels)


def _links(pts: _Points, link: str | None) -> list[tuple[int, int]]:
    """Index pairs of translations: same label ("label"), or same rank within each language ("parallel")."""
    if link is None:
        return []
    if link == "label":
        if pts.labels is None:
            raise ValueError("link='label' needs labels (translations share a label)")
        keys = pts.labels
    elif link == "parallel":
        counts = pd.Series(pts.languages).value_counts()
        if counts.nunique() != 1:
            raise ValueError(f"link='parallel' needs the same number of points per language, got {counts.to_dict()}")
        seen: dict[str, int] = {}
        keys = []
        for lang in pts.languages:  # rank of the point within its language
            keys.append(seen.get(lang, 0))
            seen[lang] = keys[-1] + 1
    else:
        raise ValueError(f"link must be None, 'label' or 'parallel', got {link!r}")
    groups: dict[Any, list[int]] = {}
    for k, key in enumerate(keys):
        groups.setdefault(key, []).append(k)
    return [(ks[m], ks[m + 1]) for ks in groups.values() for m in range(len(ks) - 1)]


def plot_projection(
    projection: Any,
    languages: Sequence[str] | None = None,
    labels: Sequence[Any] | None = None,
    *,
    link: str | None = None,
    pairs: Iterable[tuple[int, int]] | None = None,
    ax: Axes | None = None,
    colors: Mapping[str, str] | None = None,
    legend: bool = True,
    title: str | None = None,
) -> Axes:
    """Scatter of 2-D projected embeddings coloured by language.

    Parameters
    ----------
    projection : geometry.Projection, DataFrame (x, y, lang[, label]) or array (N, 2)
        The 2-D coordinates, one point per sentence (or token).
    languages : list of str, length N (taken from ``projection`` when it has them)
    labels : list, length N, optional (taken from ``projection`` when it has them)
    link : None, "label" or "parallel"
        Link translations with light grey lines: points sharing a label
        ("label", e.g. FLORES sentence ids), or the k-th point of every
        language ("parallel": each language lists the same sentences in the same order).
    pairs : iterable of (i, j), optional
        Explicit point pairs to link (overrides ``link``).

    One scatter collection per language, in first-seen order, labelled with the
    language code; links (if any) are ``ax.collections[0]``.
    """
    pts = _points(projection, languages, labels)
    ax = _new_ax(ax, (COLUMN_WIDTH, COLUMN_WIDTH))
    colors = dict(colors) if colors is not None else language_colors(pts.languages)
    links = [(int(i), int(j)) for i, j in pairs] if pairs is not None else _links(pts, link)
    if links:
        n = len(pts.coords)
        if any(not (0 <= i < n and 0 <= j < n) for i, j in links):
            raise ValueError(f"pairs index outside the {n} points")
        segs = [[tuple(pts.coords[i]), tuple(pts.coords[j])] for i, j in links]
        ax.add_collection(LineCollection(segs, colors="0.6", linewidths=0.4, alpha=0.6, zorder=1))
    langs = np.array(pts.languages)
    for lang in dict.fromkeys(pts.languages):
        sel = langs == lang
        ax.scatter(pts.coords[sel, 0], pts.coords[sel, 1], s=9, color=colors.get(lang, "0.5"),
                   label=lang, alpha=0.85, linewidths=0, zorder=2)
    _blank(ax)
    ax.set_aspect("equal", adjustable="datalim")
    if legend:
        ax.legend(title="language", markerscale=1.6, handletextpad=0.1, loc="best")
    if title is not None:
        ax.set_title(title)
    return ax


def plot_projections(
    projections: Mapping[str, Any],
    *,
    link: str | None = None,
    axes: Sequence[Axes] | None = None,
) -> np.ndarray:
    """Several projections side by side (e.g. before / after OT / after contrastive),
    one title per panel, the same colour per language, one shared legend.

    ``projections`` maps a panel title to anything :func:`plot_projection` accepts
    (with languages, and labels if ``link="label"``, inside it); ``link`` as there.
    Returns the axes, one per projection, in mapping order.
    """
    if not projections:
        raise ValueError("projections is empty: pass at least one title -> projection")
    n = len(projections)
    if axes is None:
        width = min(TEXT_WIDTH, 2.4 * n + 0.9)
        _, axes = plt.subplots(1, n, figsize=(width, (width - 0.9) / n + 0.35), squeeze=False)
    axes = np.asarray(axes, dtype=object).ravel()
    if len(axes) != n:
        raise ValueError(f"{n} projections need {n} axes, got {len(axes)}")
    colors = language_colors(lang for proj in projections.values() for lang in _points(proj, None, None).languages)
    for ax, (title, proj) in zip(axes, projections.items()):
        plot_projection(proj, ax=ax, colors=colors, legend=False, title=title, link=link)
    handles, names = axes[0].get_legend_handles_labels()
    axes[-1].legend(handles, names, title="language", markerscale=1.6, loc="center left",
                    bbox_to_anchor=(1.0, 0.5), handletextpad=0.1)
    return axes


def plot_projection_comparison(
    before: Any,
    after: Any,
    *,
    titles: tuple[str, str] = ("before distillation", "after distillation"),
    link: str | None = None,
    axes: Sequence[Axes] | None = None,
) -> np.ndarray:
    """Before / after projections side by side: :func:`plot_projections` with two panels."""
    return plot_projections({titles[0]: before, titles[1]: after}, link=link, axes=axes)


# --------------------------------------------------------------------------- training


def metrics_frame(metrics: Any) -> pd.DataFrame:
    """Training metrics as a DataFrame, one row per logged step.

    ``metrics``: the records of a run's ``metrics.jsonl`` (a list of dicts: ``step``, loss
    terms, ``lr``, ``heldout_cosine``, ``eval``), as :func:`optical_viz.rundir.read_metrics`
    reads them from a run directory, or a DataFrame (returned as it is). A nested dict
    ``key: {name: value}`` becomes columns ``key/name``; a list of evaluation rows ``eval:
    [{"lang", "direction", "recall@1", ...}, ...]`` (the records of ``retrieval.evaluate``)
    becomes ``eval/<metric>``, the mean over the rows (languages and directions). No records
    give an empty frame with a ``step`` column (a run that has not logged yet). Figures read
    no files: a path is a ValueError that says how to read it.

    >>> metrics_frame([{"step": 1, "loss": 0.5, "eval": [{"recall@1": 0.2}, {"recall@1": 0.4}]}]).columns.tolist()
    ['step', 'loss', 'eval/recall@1']
    """
    if isinstance(metrics, pd.DataFrame):
        return metrics
    if isinstance(metrics, (str, os.PathLike)):
        raise ValueError(f"metrics_frame takes records, not a path ({metrics}): read a run's metrics with "
                         "optical_viz.rundir.read_metrics(run_dir) first")
    records = list(metrics)
    rows = []
    for rec in records:
        row = {}
        for key, v in rec.items():
            if isinstance(v, dict):
                row.update({f"{key}/{k}": x for k, x in v.items() if _is_number(x)})
            elif isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
                names = dict.fromkeys(k for r in v for k, x in r.items() if _is_number(x) and k != "n")
                for name in names:
                    vals = [r[name] for r in v if _is_number(r.get(name))]
                    row[f"{key}/{name}"] = float(np.mean(vals))
            elif _is_number(v) or isinstance(v, str):
                row[key] = v
        rows.append(row)
    df = pd.DataFrame(rows) if rows else pd.DataFrame({"step": pd.Series([], dtype=int)})
    if "step" not in df:
        raise ValueError(f"metrics records need a 'step' field; fields are {sorted(df.columns)}")
    return df


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.number)) and not isinstance(x, bool) and math.isfinite(x)


def loss_columns(df: pd.DataFrame) -> list[str]:
    """Numeric loss columns; a single term equal to the total (``loss_ot`` == ``loss``) is left out."""
    cols = [c for c in df.columns if "loss" in c and "/" not in c and pd.api.types.is_numeric_dtype(df[c])]
    terms = [c for c in cols if c != "loss"]
    if "loss" in cols and len(terms) == 1:
        d = df[["loss", terms[0]]].dropna()
        if np.allclose(d["loss"], d[terms[0]]):
            return ["loss"]
    return cols


def plot_training_curves(
    metrics: Any,
    keys: Sequence[str] | None = None,
    *,
    ax: Axes | None = None,
    smooth: int = 1,
    logy: bool = False,
    title: str | None = None,
) -> Axes:
    """Loss terms against the training step.

    Parameters
    ----------
    metrics : the records of metrics.jsonl (list of dicts) or a DataFrame (see :func:`metrics_frame`)
    keys : column names to draw (default: every numeric column with ``loss`` in its name,
        but only ``loss`` when the one loss term equals it)
    smooth : int
        Width of a centred moving average (1 = raw values).

    One line per key, labelled with the key, in the order of ``keys``.
    """
    df = metrics_frame(metrics)
    keys = list(keys) if keys is not None else loss_columns(df)
    missing = [k for k in keys if k not in df]
    if missing:
        raise ValueError(f"metrics have no column {missing}; columns are {sorted(df.columns)}")
    if smooth < 1:
        raise ValueError(f"smooth must be >= 1, got {smooth}")
    ax = _new_ax(ax)
    for k in keys:
        d = df[["step", k]].dropna()
        y = d[k].rolling(smooth, center=True, min_periods=1).mean() if smooth > 1 else d[k]
        ax.plot(d["step"].to_numpy(), y.to_numpy(), label=k)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if logy:
        ax.set_yscale("log")
    ax.grid(True, axis="y")
    if len(keys) > 1:
        ax.legend()
    if title is not None:
        ax.set_title(title)
    return ax


def plot_eval_curves(
    metrics: Any,
    keys: Sequence[str] | None = None,
    *,
    ax: Axes | None = None,
    ylabel: str = "evaluation",
    title: str | None = None,
) -> Axes:
    """Evaluation metrics of metrics.jsonl against the step, with markers.

    ``keys`` are names inside ``eval`` (``"recall@1"``) or full columns
    (``"eval/recall@1"``, ``"translation_gap"``); default: the held-out signal the trainer
    logs (``heldout_cosine``, ``translation_gap``, ``dev_recall@1``:
    :data:`optical_viz.monitor.HELDOUT_KEYS`) and every ``eval/`` column. Steps without
    evaluation are skipped.
    """
    from optical_viz.monitor import HELDOUT_KEYS

    df = metrics_frame(metrics)
    cols = [c for c in HELDOUT_KEYS if c in df] + [c for c in df.columns if c.startswith("eval/")]
    if keys is not None:
        cols = [k if k in df else f"eval/{k}" for k in keys]
        missing = [c for c in cols if c not in df]
        if missing:
            raise ValueError(f"metrics have no evaluation column {missing}; columns are {sorted(df.columns)}")
    ax = _new_ax(ax)
    for c in cols:
        d = df[["step", c]].dropna()
        ax.plot(d["step"].to_numpy(), d[c].to_numpy(), marker="o", label=c.removeprefix("eval/"))
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y")
    if cols:
        ax.legend()
    if title is not None:
        ax.set_title(title)
    return ax


# --------------------------------------------------------------------------- results


def _ci_bounds(df: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(lo, hi) arrays from ``<metric>_ci`` ([lo, hi] per row) or ``ci_lo``/``ci_hi`` columns."""
    col = f"{metric}_ci"
    if col in df:
        ci = np.array([list(v) for v in df[col]], dtype=float).reshape(-1, 2)
        return ci[:, 0], ci[:, 1]
    if "ci_lo" in df and "ci_hi" in df:
        return df["ci_lo"].to_numpy(float), df["ci_hi"].to_numpy(float)
    return None


def plot_retrieval(
    results: pd.DataFrame,
    metric: str = "recall@1",
    *,
    hue: str | None = None,
    ax: Axes | None = None,
    horizontal: bool = False,
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
    order: Sequence[str] | None = None,
) -> Axes:
    """Grouped bars of a retrieval metric per language, with confidence whiskers.

    Parameters
    ----------
    results : DataFrame from ``retrieval.evaluate``
        Columns ``lang``, ``direction``, ``metric`` and (optional) ``<metric>_ci``
        holding ``[lo, hi]`` bootstrap intervals. Other columns (``model``,
        ``method``) can serve as ``hue``.
    hue : column that splits the bars within a language group
        Default: ``method`` or ``model`` when present with several values,
        else ``direction``.

    colors : hue value -> colour (e.g. one fixed colour per method in every figure);
        hue values not in it take the palette's colours in turn.
    order : the groups along the axis (values of ``lang``), in this order; default: the
        sorted languages. Values not in ``results`` leave an empty slot.

    Bar containers are in ``ax.containers`` (one per hue value, labelled); the
    bar heights are the metric values in the order of the groups (``order`` or sorted languages).
    """
    need = {"lang", metric}
    if not need <= set(results.columns):
        raise ValueError(f"results need columns {sorted(need)}, got {sorted(results.columns)}")
    if hue is None:
        hue = next((c for c in ("method", "model", "direction") if c in results and results[c].nunique() > 1), None)
    elif hue not in results:
        raise ValueError(f"hue column {hue!r} not in results columns {sorted(results.columns)}")
    langs = list(order) if order is not None else sorted(results["lang"].unique())
    missing = sorted(set(results["lang"]) - set(langs))
    if missing:
        raise ValueError(f"order= lacks the group(s) {missing} of results")
    groups = list(dict.fromkeys(results[hue])) if hue else [None]
    ax = _new_ax(ax, (min(TEXT_WIDTH, 1.0 + 0.5 * len(langs) * max(1, len(groups)) ** 0.5), 2.4))
    width = 0.8 / len(groups)
    for g, group in enumerate(groups):
        d = results if group is None else results[results[hue] == group]
        dup = d["lang"].duplicated()
        if dup.any():
            raise ValueError(
                f"several rows for language(s) {sorted(d['lang'][dup].unique())} in group {group!r}: "
                "pass hue= the column that tells them apart"
            )
        d = d.set_index("lang").reindex(langs)
        pos = np.arange(len(langs)) + (g - (len(groups) - 1) / 2) * width
        vals = d[metric].to_numpy(float)
        bounds = _ci_bounds(d.dropna(subset=[metric]), metric)
        err = None
        if bounds is not None:
            lo = np.full(len(langs), np.nan)
            hi = np.full(len(langs), np.nan)
            ok = ~np.isnan(vals)
            lo[ok], hi[ok] = bounds
            if np.any(lo[ok] > vals[ok] + 1e-9) or np.any(hi[ok] < vals[ok] - 1e-9):
                raise ValueError(f"{metric} intervals do not contain the values for group {group!r}")
            err = np.vstack([vals - lo, hi - vals])
        color = (colors or {}).get(str(group), PALETTE[g % len(PALETTE)])
        bar = ax.bar if not horizontal else ax.barh
        kw = {"yerr": err} if not horizontal else {"xerr": err}
        bar(pos, np.nan_to_num(vals), width * 0.92, color=color, label=str(group) if group is not None else metric,
            error_kw=dict(elinewidth=0.7, capsize=1.5, ecolor="0.2"), **kw)
    ticks = (ax.set_yticks if horizontal else ax.set_xticks)
    ticks(np.arange(len(langs)))
    (ax.set_yticklabels if horizontal else ax.set_xticklabels)(langs, rotation=0 if horizontal or len(langs) < 8 else 45)
    (ax.set_xlabel if horizontal else ax.set_ylabel)(metric.replace("recall@", "Recall@"))
    (ax.set_xlim if horizontal else ax.set_ylim)(0, 1.0 if results[metric].max() <= 1 else None)
    ax.grid(True, axis="x" if horizontal else "y")
    ax.set_axisbelow(True)
    if hue is not None:
        ax.legend(ncols=min(len(groups), 4), loc="lower left", bbox_to_anchor=(0, 1.0), borderaxespad=0.1)
    if title is not None:
        ax.set_title(title)
    return ax


def plot_scaling(
    results: pd.DataFrame,
    metric: str = "recall@1",
    *,
    ax: Axes | None = None,
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Axes:
    """Scaling curves: ``metric`` against the number of training languages, one line per method.

    Parameters
    ----------
    results : DataFrame
        Columns ``method``, ``n_languages``, ``metric``, ``ci_lo``, ``ci_hi``
        (or ``<metric>_ci``) and optionally ``seen`` (bool) or ``split``
        (``"seen"``/``"unseen"``): seen languages are solid lines, unseen dashed.

    colors : method -> colour; methods not in it take the palette's colours in turn.

    Each method has one colour; intervals are shaded bands. Lines are in
    ``ax.lines`` in the order (method, seen then unseen).
    """
    need = {"method", "n_languages", metric}
    if not need <= set(results.columns):
        raise ValueError(f"scaling results need columns {sorted(need)}, got {sorted(results.columns)}")
    df = results.copy()
    if "split" not in df:
        df["split"] = df["seen"].map({True: "seen", False: "unseen"}) if "seen" in df else ""
    ax = _new_ax(ax, (COLUMN_WIDTH + 1.0, 2.4))
    markers = {"seen": "o", "unseen": "s", "": "o"}
    styles = {"seen": "-", "unseen": "--", "": "-"}
    color_of = {method: (colors or {}).get(str(method), PALETTE[m % len(PALETTE)])
                for m, method in enumerate(dict.fromkeys(df["method"]))}
    for method, color in color_of.items():
        for split in ("seen", "unseen", ""):
            d = df[(df["method"] == method) & (df["split"] == split)].sort_values("n_languages")
            if d.empty:
                continue
            x = d["n_languages"].to_numpy(float)
            y = d[metric].to_numpy(float)
            label = f"{method} ({split})" if split else str(method)
            ax.plot(x, y, styles[split], marker=markers[split], color=color, label=label,
                    markerfacecolor=color if split != "unseen" else "white")
            bounds = _ci_bounds(d, metric)
            if bounds is not None:
                ax.fill_between(x, bounds[0], bounds[1], color=color, alpha=0.15, linewidth=0)
    xs = sorted(df["n_languages"].unique())
    ax.set_xticks(xs)
    if len(xs) > 2 and xs[-1] / max(xs[0], 1) >= 8:
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs)
        ax.set_xticklabels([str(int(v)) for v in xs])
        ax.minorticks_off()
    ax.set_xlabel("number of training languages")
    ax.set_ylabel(metric.replace("recall@", "Recall@"))
    ax.grid(True, axis="y")
    # colour = method, line style = seen / unseen: one legend entry per factor level
    handles = [Line2D([], [], color=color, marker="o", label=str(method)) for method, color in color_of.items()]
    splits = [sp for sp in ("seen", "unseen") if (df["split"] == sp).any()]
    if splits:
        handles += [Line2D([], [], color="0.3", linestyle=styles[sp], marker=markers[sp],
                           markerfacecolor="0.3" if sp == "seen" else "white", label=sp)
                    for sp in splits]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    if title is not None:
        ax.set_title(title)
    return ax


def plot_metric_comparison(
    metrics: pd.DataFrame | Mapping[str, Mapping[str, float]],
    *,
    axes: Sequence[Axes] | None = None,
    higher_is_better: Mapping[str, bool] | None = None,
) -> np.ndarray:
    """One small bar panel per metric, one bar per method (geometry metrics side by side).

    Parameters
    ----------
    metrics : DataFrame (index: method, columns: metric names) or dict method -> {metric: value}
    higher_is_better : metric -> bool, appended to the panel titles as an arrow.

    Returns the axes, one per metric, in column order.
    """
    df = pd.DataFrame(metrics).T if isinstance(metrics, Mapping) else metrics
    if df.empty:
        raise ValueError("metrics is empty")
    n = df.shape[1]
    if axes is None:
        _, axes = plt.subplots(1, n, figsize=(min(TEXT_WIDTH, 1.5 * n + 0.4), 1.9), squeeze=False)
    axes = np.asarray(axes, dtype=object).ravel()
    if len(axes) != n:
        raise ValueError(f"{n} metrics need {n} axes, got {len(axes)}")
    methods = [str(m) for m in df.index]
    colors = [PALETTE[k % len(PALETTE)] for k in range(len(methods))]
    for ax, col in zip(axes, df.columns):
        vals = df[col].to_numpy(float)
        ax.bar(np.arange(len(methods)), vals, color=colors, width=0.7)
        ax.set_xticks(np.arange(len(methods)))
        ax.set_xticklabels(methods, rotation=30, ha="right", rotation_mode="anchor")
        arrow = ""
        if higher_is_better and col in higher_is_better:
            arrow = " \u2191" if higher_is_better[col] else " \u2193"
        ax.set_title(f"{col}{arrow}")
        ax.grid(True, axis="y")
        ax.set_axisbelow(True)
        if (vals < 0).any():
            ax.axhline(0, color="0.3", linewidth=0.5)
    return axes


def plot_contrasts(
    contrasts: pd.DataFrame,
    *,
    margin: float | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    unit: str = "R@1 points",
) -> Axes:
    """A forest plot of paired differences: one row per contrast, its estimate and interval.

    Parameters
    ----------
    contrasts : DataFrame
        Columns ``a``, ``b``, ``estimate``, ``lo``, ``hi`` and optionally ``p_holm`` and
        ``equivalent`` (``optical_viz.experiments.statistics.contrast_table``'s frame).
    margin : the equivalence margin: a grey band over [-margin, +margin].

    Rows read top to bottom in the frame's order; a filled marker is a difference that Holm
    rejects (``p_holm < 0.05``), an open one is not; "≡" marks a TOST-equivalent contrast.
    """
    need = {"a", "b", "estimate", "lo", "hi"}
    if not need <= set(contrasts.columns):
        raise ValueError(f"contrasts need columns {sorted(need)}, got {sorted(contrasts.columns)}")
    if contrasts.empty:
        raise ValueError("no contrasts to plot")
    ax = _new_ax(ax, (COLUMN_WIDTH + 0.6, 0.35 * len(contrasts) + 0.7))
    y = np.arange(len(contrasts))[::-1]
    if margin is not None:
        ax.axvspan(-margin, margin, color="0.9", zorder=0, label=f"\u00b1{margin:g} (equivalence)")
    ax.axvline(0, color="0.3", linewidth=0.6)
    for yi, (_, r) in zip(y, contrasts.iterrows()):
        rejected = bool(r.get("p_holm", 1.0) < 0.05)
        ax.plot([r["lo"], r["hi"]], [yi, yi], color=PALETTE[0], linewidth=1.2)
        ax.plot(r["estimate"], yi, "o", color=PALETTE[0], markerfacecolor=PALETTE[0] if rejected else "white")
        if bool(r.get("equivalent", False)):
            ax.annotate("\u2261", (r["hi"], yi), xytext=(3, -3), textcoords="offset points")
    ax.set_yticks(y)
    ax.set_yticklabels([_contrast_label(r["a"], r["b"]) for _, r in contrasts.iterrows()])
    ax.set_xlabel(f"difference ({unit})")
    ax.grid(True, axis="x")
    ax.set_axisbelow(True)
    if title:
        ax.set_title(title, loc="left")
    return ax


def _contrast_label(a: str, b: str) -> str:
    """``a − b``; a difference in differences (``a`` = "DiD x - y", ``b`` = "n50 - n5 (group)")
    on two lines: the contrast, then the sizes it compares."""
    if a.startswith("DiD "):
        return f"DiD: {a[4:]}\n{b}".replace(" - ", " \u2212 ")
    return f"{a} \u2212 {b}"


def plot_estimates(
    estimates: pd.DataFrame,
    *,
    ax: Axes | None = None,
    colors: Mapping[str, str] | None = None,
    reference: str | None = None,
    title: str | None = None,
    unit: str = "R@1 (%)",
) -> Axes:
    """One row per arm: its estimate (dot) and interval (line), top to bottom in frame order.

    Parameters
    ----------
    estimates : DataFrame
        Columns ``arm``, ``estimate``, ``lo``, ``hi`` (a row of
        ``optical_viz.experiments.protocol_report``'s ``rq1_summary`` per arm).
    colors : arm -> colour (default: the palette in order).
    reference : an arm drawn as a dashed vertical line at its estimate too (e.g. zero-shot),
        so every other arm reads as above or below it.
    """
    need = {"arm", "estimate", "lo", "hi"}
    if not need <= set(estimates.columns):
        raise ValueError(f"estimates need columns {sorted(need)}, got {sorted(estimates.columns)}")
    if estimates.empty:
        raise ValueError("no estimates to plot")
    ax = _new_ax(ax, (COLUMN_WIDTH, 0.3 * len(estimates) + 0.7))
    y = np.arange(len(estimates))[::-1]
    for k, (yi, (_, r)) in enumerate(zip(y, estimates.iterrows())):
        color = (colors or {}).get(r["arm"], PALETTE[k % len(PALETTE)])
        ax.plot([r["lo"], r["hi"]], [yi, yi], color=color, linewidth=1.4)
        ax.plot(r["estimate"], yi, "o", color=color)
        if r["arm"] == reference:
            ax.axvline(r["estimate"], color=color, linestyle="--", linewidth=0.8, zorder=0)
    ax.set_yticks(y)
    ax.set_yticklabels([str(a) for a in estimates["arm"]])
    ax.set_xlabel(unit)
    ax.grid(True, axis="x")
    ax.set_axisbelow(True)
    if title:
        ax.set_title(title, loc="left")
    return ax


def plot_eps_sweep(
    sweep: pd.DataFrame,
    *,
    ax: Axes | None = None,
    mark: float | None = None,
    near_uniform: float | None = 0.95,
    title: str | None = None,
) -> Axes:
    """Plan entropy and the OT loss relative to the uniform plan, against eps (log scale).

    sweep: the DataFrame of :func:`optical_viz.geometry.eps_sweep` (columns ``eps``,
    ``plan_entropy``, ``cost_ratio``). mark: an eps to mark with a vertical line (for example
    the configured one); near_uniform: the entropy above which the trainer warns (a dotted
    line; None for none). Lines: ``ax.lines[0]`` entropy, ``ax.lines[1]`` cost ratio.
    """
    need = {"eps", "plan_entropy", "cost_ratio"}
    if not need <= set(sweep.columns):
        raise ValueError(f"an eps sweep needs columns {sorted(need)}, got {sorted(sweep.columns)}")
    d = sweep.sort_values("eps")
    ax = _new_ax(ax, (COLUMN_WIDTH, 2.2))
    ax.plot(d["eps"], d["plan_entropy"], "-o", color=PALETTE[0], label="plan entropy (1 = uniform)")
    ax.plot(d["eps"], d["cost_ratio"], "-s", color=PALETTE[1], label="<P, C> / cost of the uniform plan")
    ax.set_xscale("log")
    ax.set_xticks(d["eps"].to_numpy(float))
    ax.set_xticklabels([f"{v:g}" for v in d["eps"]])
    ax.minorticks_off()
    if near_uniform is not None:
        ax.axhline(near_uniform, color="0.5", linestyle=":", linewidth=0.8)
    if mark is not None:
        ax.axvline(mark, color="0.3", linestyle="--", linewidth=0.8)
        ax.annotate(f"eps = {mark:g}", (mark, 0.02), xycoords=("data", "axes fraction"), xytext=(3, 0),
                    textcoords="offset points", fontsize="small", color="0.3")
    ax.set_xlabel("eps (entropic regularisation)")
    ax.set_ylabel("fraction")
    ax.grid(True, axis="y")
    ax.legend(loc="upper left")
    if title is not None:
        ax.set_title(title)
    return ax


def plot_token_flow(flow, *, ax: Axes | None = None, title: str | None = None) -> Axes:
    """The free-token toy: the student cloud's spread over optimisation steps, per objective.

    flow: the :class:`optical_viz.geometry.TokenFlow` of :func:`optical_viz.geometry.free_token_flow`.
    One line per objective (``ax.lines[k]``, in the order of ``flow.spread``), the teacher's
    spread dashed: a loss whose minimiser is the teacher's cloud ends on that line.
    """
    d = flow.spread
    if not {"objective", "step", "spread"} <= set(d.columns):
        raise ValueError(f"a token flow needs columns objective, step, spread, got {sorted(d.columns)}")
    ax = _new_ax(ax, (COLUMN_WIDTH, 2.4))
    for k, (name, g) in enumerate(d.groupby("objective", sort=False)):
        ax.plot(g["step"], g["spread"], "-", color=PALETTE[k % len(PALETTE)], label=name)
    ax.axhline(flow.teacher_spread, color="0.3", linestyle="--", linewidth=0.8, label="teacher")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("mean pairwise cosine\n(higher: more collapsed)")
    ax.legend(frameon=False, fontsize="small")
    if title:
        ax.set_title(title)
    return ax



def plot_alignment_by_layer(
    rows: Sequence[Mapping] | pd.DataFrame,
    *,
    axes: Sequence[Axes] | None = None,
    pairs: Sequence[str] | None = None,
    families: Sequence[str] | None = None,
    chosen: Mapping[str, int] | None = None,
) -> list[Axes]:
    """AER (%) by layer, one line per method family (its best setting at each layer), one panel
    per gold pair: the sweep of :func:`optical_viz.experiments.alignment_sweep.sweep`.

    rows: sweep rows (``pair``, ``family``, ``layer``, ``aer``). chosen: a layer per pair to
    mark (the default's layer, chosen on the other pairs). The per-layer minimum is taken on
    the pair itself (descriptive); held-out numbers are in results/alignment/heldout.json.
    """
    df = pd.DataFrame(list(rows)) if not isinstance(rows, pd.DataFrame) else rows
    need = {"pair", "family", "layer", "aer"}
    if not need <= set(df.columns):
        raise ValueError(f"alignment sweep rows need columns {sorted(need)}, got {sorted(df.columns)}")
    df = df[df["family"].notna()]
    pairs = list(pairs) if pairs is not None else sorted(df["pair"].unique())
    families = list(families) if families is not None else list(dict.fromkeys(df["family"]))
    if axes is None:
        fig, axes = plt.subplots(1, len(pairs), figsize=(TEXT_WIDTH, 2.4), sharey=True, squeeze=False)
        axes = list(axes[0])
    if len(axes) != len(pairs):
        raise ValueError(f"{len(pairs)} pairs need as many axes, got {len(axes)}")
    best = df.groupby(["pair", "family", "layer"])["aer"].min().reset_index()  # best setting per layer
    styles = {"argmax": ("0.2", "--"), "softmax": ("0.45", ":"), "itermax": ("0.6", "-.")}
    ot = [f for f in families if f not in styles]
    for ax, pair in zip(axes, pairs):
        for fam in families:
            d = best[(best["pair"] == pair) & (best["family"] == fam)].sort_values("layer")
            if d.empty:
                continue
            color, ls = styles[fam] if fam in styles else (PALETTE[(ot.index(fam) + 1) % len(PALETTE)], "-")
            ax.plot(d["layer"], 100 * d["aer"], ls, color=color, marker="o" if fam in ot else None,
                    markersize=2.5, label=fam)
        if chosen is not None and pair in chosen:
            ax.axvline(chosen[pair], color="0.5", linewidth=0.7, linestyle=":")
        ax.set_title(pair)
        ax.set_xlabel("layer")
        ax.grid(True, axis="y")
    axes[0].set_ylabel("AER (%), best setting per layer")
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", title="family")
    return list(axes)


#: colours of the word links against gold: hits, misses, false links (Okabe-Ito, colour-blind safe)
GOLD_LINK_COLORS = {"hit": "#009E73", "miss": "#0072B2", "false": "#D55E00"}


def plot_links_vs_gold(
    predicted: Iterable[tuple[int, int]],
    sure: Iterable[tuple[int, int]],
    possible: Iterable[tuple[int, int]],
    src_words: Sequence[str],
    tgt_words: Sequence[str],
    *,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Predicted word links against gold, source words on top, target words below.

    predicted, sure, possible: sets of (i, j) word links (``possible`` may omit ``sure``).
    Three colours (``GOLD_LINK_COLORS``): hits (predicted and gold, sure or possible) solid
    green, misses (gold sure, not predicted) dashed blue, false links (predicted, not in
    gold) solid vermillion. ``ax.collections`` are [hits, misses, false links], in that order,
    one segment per link sorted by (i, j).
    """
    pred = set(predicted)
    sure = set(sure)
    gold = sure | set(possible)
    t, s = len(src_words), len(tgt_words)
    bad = [link for link in pred | gold if not (0 <= link[0] < t and 0 <= link[1] < s)]
    if bad:
        raise ValueError(f"links {sorted(bad)[:5]} are outside {t} x {s} words")
    ax = _new_ax(ax, (min(max(3.0, 0.45 * max(t, s)), TEXT_WIDTH), 1.8))
    xs = np.linspace(0, 1, t) if t > 1 else np.array([0.5])
    xt = np.linspace(0, 1, s) if s > 1 else np.array([0.5])
    groups = {"hit": sorted(pred & gold), "miss": sorted(sure - pred), "false": sorted(pred - gold)}
    styles = {"hit": ("solid", 1.6), "miss": ((0, (2.5, 1.5)), 1.2), "false": ("solid", 1.2)}
    for kind, links in groups.items():
        ls, lw = styles[kind]
        ax.add_collection(LineCollection([[(xs[i], 1.0), (xt[j], 0.0)] for i, j in links], linewidths=lw,
                                         colors=GOLD_LINK_COLORS[kind], linestyles=ls, zorder=1,
                                         label=f"{kind} ({len(links)})"))
    text_kw = dict(ha="center", fontsize=mpl.rcParams["xtick.labelsize"], zorder=3,
                   bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.9))
    rot = 45 if max(t, s) > 12 else 0
    for x, w in zip(xs, src_words):
        ax.text(x, 1.04, _display_token(w), va="bottom", rotation=rot, **text_kw)
    for x, w in zip(xt, tgt_words):
        ax.text(x, -0.04, _display_token(w), va="top", rotation=rot, **text_kw)
    handles = [Line2D([], [], color=GOLD_LINK_COLORS[k], linestyle=styles[k][0], linewidth=styles[k][1],
                      label=f"{name} ({len(groups[k])})")
               for k, name in (("hit", "hits"), ("miss", "misses (gold sure)"), ("false", "false links"))]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", frameon=False)
    ax.set_xlim(-0.06, 1.06)
    ax.set_ylim(-0.35, 1.35)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return ax
