"""Interactive explorers for JupyterLab (ipywidgets).

Widgets only wire controls to library calls: :func:`optical_viz.alignment.align`,
:func:`optical_viz.geometry.project`, the figures of :mod:`optical_viz.plots` and the
``metrics.jsonl`` a distillation run writes. Each explorer is an ``ipywidgets.VBox``
(display it by making it the last expression of a cell); its figure is rendered
off-screen to a PNG shown in an ``ipywidgets.Image``, so it updates in place and
the last drawn matplotlib figure is kept as ``.figure`` (tests assert on it).

>>> from optical_viz.widgets import AlignmentExplorer
>>> AlignmentExplorer(enc, {"yor": [("Ọmọ náà sùn.", "The child slept.")]})
"""
from __future__ import annotations

import html
import io
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from optical_viz import plots
from optical_viz.options import EXTRACTIONS, AlignConfig
from optical_viz.rundir import read_metrics

__all__ = ["AlignmentExplorer", "ProjectionExplorer", "TrainingMonitor", "render_png", "show_png"]

# the aligners of the explorer's toggle (optical_viz.options.ALIGNERS but "dot", whose plan has no eps)
TOGGLE_ALIGNERS = ("similarity", "emd", "sinkhorn", "divergence", "unbalanced", "partial")
NO_EPS = ("emd", "partial")  # exact solvers: the eps slider is inactive
# CSS pixels per figure inch, and device pixels per CSS pixel the PNGs are drawn with: 2 is
# the ratio of HiDPI ("retina") screens; a plain screen downsamples, which stays sharp
DPI = 110
PIXEL_RATIO = 2.0
EPS_FORMAT = ".3g"  # the eps slider's readout and the status line print eps alike


def render_png(
    draw: Callable[[Figure], None], figsize: tuple[float, float], dpi: int = DPI, pixel_ratio: float = PIXEL_RATIO
) -> tuple[bytes, Figure]:
    """Draw on a new off-screen figure (no pyplot, no global state) in the publication style.

    The PNG has ``dpi * pixel_ratio`` pixels per inch; :func:`show_png` displays it at ``dpi``
    CSS pixels per inch, so that it is not stretched on a high-density screen.
    Returns the PNG bytes and the figure (whose artists tests can inspect).
    """
    with plots.publication_style():
        fig = Figure(figsize=figsize)
        FigureCanvasAgg(fig)
        draw(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi * pixel_ratio, metadata={"Software": "optical_viz"})
    return buf.getvalue(), fig


def show_png(image: widgets.Image, png: bytes, pixel_ratio: float = PIXEL_RATIO) -> None:
    """Put a :func:`render_png` picture in ``image`` at its CSS size (pixel width / ratio)."""
    width = int.from_bytes(png[16:20], "big")  # the PNG header's IHDR width
    image.value = png
    image.layout.width = f"{round(width / pixel_ratio)}px"
    image.layout.height = "auto"


def _error_html(exc: Exception) -> str:
    return f"<span style='color:#D55E00'>{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</span>"


# --------------------------------------------------------------------------- alignment


class AlignmentExplorer(widgets.VBox):
    """Soft token alignments of real sentence pairs, live.

    Controls: language (data set) and sentence pickers, an ``eps`` slider (log scale),
    a ``layer`` slider (0 = embedding output, ``encoder.num_layers`` = last layer), and
    a solver toggle (similarity / emd / sinkhorn / divergence / unbalanced / partial; eps is
    inactive for emd and partial, and is the softmax temperature of similarity; divergence
    shows the (a, b) plan and the pair's debiased Sinkhorn divergence) and an extraction
    picker. Every change calls ``align(encoder, src, tgt, method=, eps=, layer=, extraction=)``
    and redraws the token plan heatmap (hard token links as squares) above the word links.
    With gold links, the word panel shows the predicted links against gold in three colours
    (hits, misses of gold sure links, false links) and the pair's AER for this setting.

    Parameters
    ----------
    encoder : optical_viz.encoder.Encoder
    pairs : mapping name -> list of (src, tgt) sentence pairs
        Source = rows of the plan (the low-resource or non-English side), target = columns.
    gold : mapping name -> list of GoldAlignment, optional
        ``gold[name][k]`` are the gold word links of ``pairs[name][k]`` (0-indexed
        whitespace words, as :func:`optical_viz.data.load_word_alignment` returns).
    method, eps, layer, extraction : the initial setting; None: that of ``AlignConfig()``
        (:class:`optical_viz.options.AlignConfig`, the leave-one-pair-out default, the setting
        ``optical-viz align`` and ``optical-viz evaluate alignment`` start from); a default
        method outside the toggle's aligners would start on "sinkhorn"
    start : (name, index), optional
        The pair shown first (default: the first pair of the first set).
    align_fn : callable, optional
        Default :func:`optical_viz.alignment.align`; injectable for tests.
    aer_fn : callable ``(word_links, gold) -> float``, optional
        Default: the AER of :func:`optical_viz.alignment.score_alignments` on one pair.

    Attributes after each update: ``alignment`` (the Alignment drawn), ``aer`` (float
    or None), ``figure``, ``error`` (the exception of the last failed update, or None).
    """

    def __init__(
        self,
        encoder: Any,
        pairs: Mapping[str, Sequence[tuple[str, str]]],
        gold: Mapping[str, Sequence[Any]] | None = None,
        *,
        method: str | None = None,
        eps: float | None = None,
        layer: int | None = None,
        extraction: str | None = None,
        start: tuple[str, int] | None = None,
        align_fn: Callable[..., Any] | None = None,
        aer_fn: Callable[..., Any] | None = None,
    ) -> None:
        if not pairs or any(len(v) == 0 for v in pairs.values()):
            raise ValueError(f"pairs must map each name to a non-empty list, got sizes { {k: len(v) for k, v in pairs.items()} }")
        from optical_viz import alignment as _alignment

        setting = AlignConfig.with_options(eps=eps, layer=layer, extraction=extraction)  # ValueError names a bad one
        if method is None:
            method = setting.method if setting.method in TOGGLE_ALIGNERS else "sinkhorn"
        if method not in TOGGLE_ALIGNERS:
            raise ValueError(f"method must be one of {TOGGLE_ALIGNERS}, got {method!r}")
        eps, layer, extraction = setting.eps, setting.layer, setting.extraction
        start = start or (next(iter(pairs)), 0)
        if start[0] not in pairs or not 0 <= start[1] < len(pairs[start[0]]):
            raise ValueError(f"start {start} is not a (name, index) of pairs (sizes { {k: len(v) for k, v in pairs.items()} })")
        if gold is not None:
            for name, g in gold.items():
                if name in pairs and len(g) != len(pairs[name]):
                    raise ValueError(f"gold[{name!r}] has {len(g)} entries but pairs[{name!r}] has {len(pairs[name])}")
        align_fn = align_fn or _alignment.align
        aer_fn = aer_fn or (lambda links, g: _alignment.score_alignments([links], [g]).aer)
        self.encoder = encoder
        self.pairs = {k: list(v) for k, v in pairs.items()}
        self.gold = dict(gold) if gold is not None else {}
        self._align = align_fn
        self._aer = aer_fn
        self.alignment: Any = None
        self.aer: float | None = None
        self.figure: Figure | None = None
        self.error: Exception | None = None
        self.n_updates = 0
        self._suspend = False

        n_layers = int(getattr(encoder, "num_layers", 12))
        style = {"description_width": "70px"}
        self.language = widgets.Dropdown(options=list(self.pairs), value=start[0], description="pair set", style=style)
        self.sentence = widgets.Dropdown(options=self._sentence_options(), value=start[1], description="sentence",
                                         style=style, layout=widgets.Layout(width="420px"))
        self.eps = widgets.FloatLogSlider(value=eps, base=10, min=-3, max=0, step=0.05, description="eps",
                                          readout_format=EPS_FORMAT, continuous_update=False, style=style)
        self.layer = widgets.IntSlider(value=layer if layer >= 0 else n_layers + 1 + layer, min=0, max=n_layers,
                                       description="layer", continuous_update=False, style=style)
        self.solver = widgets.ToggleButtons(options=list(TOGGLE_ALIGNERS), value=method, description="solver", style=style)
        self.extraction = widgets.Dropdown(options=list(EXTRACTIONS), value=extraction,
                                           description="extraction", style=style)
        self.image = widgets.Image(format="png")
        self.info = widgets.HTML()
        self.eps.disabled = method in NO_EPS
        for control in (self.sentence, self.eps, self.layer, self.solver, self.extraction):
            control.observe(self._on_change, names="value")
        self.language.observe(self._on_language, names="value")
        super().__init__([
            widgets.HBox([self.language, self.sentence]),
            widgets.HBox([self.solver]),
            widgets.HBox([self.extraction]),
            widgets.HBox([self.eps, self.layer]),
            self.info,
            self.image,
        ])
        self.update()

    @classmethod
    def from_gold(cls, encoder: Any, gold: Mapping[str, Sequence[Any]], n: int | None = None, **kw) -> "AlignmentExplorer":
        """Explore gold word-alignment sets: ``gold`` maps a pair name ("enfr") to
        GoldAlignment items; sentences are their words joined by spaces; the first ``n`` are kept."""
        gold = {k: list(v)[:n] for k, v in gold.items()}
        pairs = {k: [(" ".join(g.src), " ".join(g.tgt)) for g in v] for k, v in gold.items()}
        return cls(encoder, pairs, gold, **kw)

    # ---- callbacks

    def _sentence_options(self) -> list[tuple[str, int]]:
        name = self.language.value if hasattr(self, "language") else next(iter(self.pairs))
        return [(f"{k}: {src[:60]}", k) for k, (src, _) in enumerate(self.pairs[name])]

    def _on_language(self, change: dict) -> None:
        self._suspend = True
        try:
            self.sentence.options = self._sentence_options()
            self.sentence.value = 0
        finally:
            self._suspend = False
        self.update()

    def _on_change(self, change: dict) -> None:
        if change["owner"] is self.solver:
            self.eps.disabled = change["new"] in NO_EPS
        if not self._suspend:
            self.update()

    # ---- the library calls

    def update(self) -> None:
        """Align the selected pair with the current controls and redraw."""
        name, k = self.language.value, self.sentence.value
        src, tgt = self.pairs[name][k]
        kw = {"method": self.solver.value, "eps": float(self.eps.value), "layer": int(self.layer.value),
              "extraction": self.extraction.value}
        try:
            al = self._align(self.encoder, src, tgt, **kw)
            gold = self.gold.get(name, [None] * (k + 1))[k]
            self.aer = float(self._aer(al.word_links, gold)) if gold is not None else None
            png, fig = render_png(lambda f: self._draw(f, al, gold, self.aer), self._figsize(al))
        except Exception as exc:  # shown in the widget; the controls stay usable
            self.error = exc
            self.info.value = _error_html(exc)
            return
        self.alignment, self.figure, self.error = al, fig, None
        show_png(self.image, png)
        self.n_updates += 1
        eps = "" if kw["method"] in NO_EPS else f", eps = {format(kw['eps'], EPS_FORMAT)}"
        aer = f" &nbsp; <b>AER = {self.aer:.3f}</b> against gold (sure + possible links)" if self.aer is not None else ""
        value = getattr(al, "value", None)
        div = (f" &nbsp; S<sub>eps</sub> = {value:.4f} (debiased: OT<sub>eps</sub>(a, b) minus the self-terms; "
               "0 when the token clouds coincide)") if value is not None else ""
        self.info.value = (f"{html.escape(kw['method'])}{eps}, layer {kw['layer']}, {html.escape(kw['extraction'])}: "
                           f"{len(al.word_links)} word links{aer}{div}")

    @staticmethod
    def _figsize(al: Any) -> tuple[float, float]:
        t, s = len(al.src_tokens), len(al.tgt_tokens)
        return (min(max(4.5, 1.6 + 0.24 * s), 11.0), min(max(3.5, 2.6 + 0.2 * t), 10.0))

    @staticmethod
    def _draw(fig: Figure, al: Any, gold: Any, aer: float | None = None) -> None:
        heat, words = fig.subplots(2, 1, height_ratios=[3.2, 1.0])
        plots.plot_plan(al.plan, al.src_tokens, al.tgt_tokens, links=al.token_links, ax=heat,
                        title="token transport plan (squares: hard token links)")
        if gold is not None:
            plots.plot_links_vs_gold(al.word_links, gold.sure, gold.possible, al.src_words, al.tgt_words, ax=words,
                                     title="word links against gold" + (f": AER {aer:.3f}" if aer is not None else ""))
            return
        word_plan = np.zeros((len(al.src_words), len(al.tgt_words)))  # (n_src_words, n_tgt_words) 0/1
        for i, j in al.word_links:
            word_plan[i, j] = 1.0
        plots.plot_bipartite(word_plan, al.src_words, al.tgt_words, ax=words, encode="width", min_mass=0.5,
                             title="word links")


# --------------------------------------------------------------------------- projections


class ProjectionExplorer(widgets.VBox):
    """2-D projections of sentence embeddings: method, languages and model pickers.

    Parameters
    ----------
    embeddings : mapping model -> (mapping language -> (N, H) sentence embeddings)
        E.g. ``{"before": {...}, "after": {...}}``; row i of every array is the same
        sentence (parallel sets, e.g. FLORES dev), so translations are linked.
    project_fn : callable, optional
        Default :func:`optical_viz.geometry.project` (called with ``langs=``, ``method=``,
        ``seed=``); projections are cached per (model, method, languages).

    Attributes after each update: ``projection``, ``figure``, ``error``.
    """

    def __init__(
        self,
        embeddings: Mapping[str, Mapping[str, Any]],
        *,
        methods: Sequence[str] = ("pca", "umap", "tsne"),
        languages: Sequence[str] | None = None,
        link: bool = True,
        seed: int = 0,
        project_fn: Callable[..., Any] | None = None,
    ) -> None:
        if not embeddings or any(not v for v in embeddings.values()):
            raise ValueError("embeddings must map each model name to a non-empty mapping language -> (N, H)")
        langsets = {m: list(v) for m, v in embeddings.items()}
        first = next(iter(langsets.values()))
        if any(v != first for v in langsets.values()):
            raise ValueError(f"every model needs the same languages, got {langsets}")
        if project_fn is None:
            from optical_viz.geometry import project as project_fn
        self.embeddings = embeddings
        self.seed = seed
        self.link = link
        self._project = project_fn
        self._cache: dict[tuple, Any] = {}
        self.projection: Any = None
        self.figure: Figure | None = None
        self.error: Exception | None = None
        self.n_updates = 0
        self.method = widgets.Dropdown(options=list(methods), description="method")
        self.languages = widgets.SelectMultiple(options=first, value=tuple(languages or first), description="languages",
                                                rows=min(6, len(first)))
        self.model = widgets.ToggleButtons(options=list(embeddings), description="model")
        self.image = widgets.Image(format="png")
        self.info = widgets.HTML()
        for control in (self.method, self.languages, self.model):
            control.observe(lambda change: self.update(), names="value")
        super().__init__([widgets.HBox([widgets.VBox([self.model, self.method]), self.languages]), self.info, self.image])
        self.update()

    def update(self) -> None:
        """Project the selected model's embeddings of the selected languages and redraw."""
        langs = list(self.languages.value)
        if not langs:
            self.info.value = "select at least one language"
            return
        key = (self.model.value, self.method.value, tuple(langs))
        try:
            if key not in self._cache:
                table = self.embeddings[self.model.value]
                x = np.concatenate([plots.finite_array(table[lang], lang) for lang in langs])  # (L * N, H)
                point_langs = [lang for lang in langs for _ in range(len(table[lang]))]
                self._cache[key] = self._project(x, langs=point_langs, method=self.method.value, seed=self.seed)
            proj = self._cache[key]
            link = "parallel" if self.link and len(langs) > 1 else None
            title = f"{self.model.value}: {self.method.value.upper()}"
            png, fig = render_png(lambda f: plots.plot_projection(proj, ax=f.subplots(), link=link, title=title), (5.0, 4.2))
        except Exception as exc:
            self.error = exc
            self.info.value = _error_html(exc)
            return
        self.projection, self.figure, self.error = proj, fig, None
        show_png(self.image, png)
        self.n_updates += 1
        self.info.value = f"{len(proj.coords)} sentences in {len(langs)} languages"


# --------------------------------------------------------------------------- training


class TrainingMonitor(widgets.VBox):
    """Live loss and evaluation curves of a distillation run, read from ``RUN/metrics.jsonl``.

    Use it as a context manager around :func:`optical_viz.distill.distill` in a notebook:
    a background thread re-reads the metrics every ``interval`` seconds and redraws when
    new lines arrived; leaving the block draws the final state::

        monitor = TrainingMonitor("runs/quick")
        display(monitor)
        with monitor:
            distill(config, output_dir="runs/quick")

    ``refresh()`` redraws once (returns True when there was something new).
    Attributes: ``metrics`` (DataFrame), ``figure``, ``error``.
    """

    def __init__(self, run_dir: str | os.PathLike, *, interval: float = 1.0,
                 loss_keys: Sequence[str] | None = None, eval_keys: Sequence[str] | None = None) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval}")
        self.run_dir = Path(run_dir)
        self.interval = interval
        self.loss_keys = loss_keys
        self.eval_keys = eval_keys
        self.metrics = None
        self.figure: Figure | None = None
        self.error: Exception | None = None
        self.n_updates = 0
        self._seen = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.image = widgets.Image(format="png")
        self.info = widgets.HTML("waiting for metrics ...")
        super().__init__([self.info, self.image])

    def refresh(self) -> bool:
        """Re-read the metrics; redraw and return True if new records arrived."""
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            df = plots.metrics_frame(read_metrics(self.run_dir))
            if len(df) == self._seen:
                return False
            self._seen = len(df)
            self.metrics = df
            if len(df) == 0:
                self.info.value = "waiting for metrics ..."
                return True
            png, fig = render_png(self._draw, (8.0, 2.8))
        except Exception as exc:
            self.error = exc
            self.info.value = _error_html(exc)
            return False
        self.figure, self.error = fig, None
        show_png(self.image, png)
        self.n_updates += 1
        last = df.iloc[-1]
        loss = f", loss {last['loss']:.4f}" if "loss" in df and last.notna().get("loss", False) else ""
        self.info.value = f"{html.escape(str(self.run_dir))}: step {int(last['step'])}{loss}"
        return True

    def _draw(self, fig: Figure) -> None:
        left, right = fig.subplots(1, 2)
        df = self.metrics
        keys = self.loss_keys if self.loss_keys is not None else plots.loss_columns(df)
        plots.plot_training_curves(df, keys, ax=left, title="training loss")
        plots.plot_eval_curves(df, self.eval_keys, ax=right, title="evaluation")

    def start(self) -> None:
        """Start polling in a background thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="optical_viz-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and draw the final state."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10 * self.interval + 5)
            self._thread = None
        self.refresh()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.interval)

    def __enter__(self) -> "TrainingMonitor":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
