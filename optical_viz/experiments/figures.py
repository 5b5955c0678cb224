"""The grid's figures (PDF and PNG), drawn with :mod:`optical_viz.plots` from ``aggregate(...)``.

Per question, from whatever its results hold:

- several language sets (a scaling question such as RQ2): ``<q>_scaling_seen`` and
  ``<q>_scaling_unseen``, Recall@1 against the number of training languages;
- one language set (such as RQ1): ``<q>_by_language`` (dense headline metric per language,
  one panel per evaluation) and ``<q>_average`` (every evaluation, languages averaged).

Every method has the same colour in every figure (:data:`METHOD_COLORS`).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from optical_viz.experiments.report import METHOD_ORDER, METRIC_NAMES, eval_label, headline_columns, headline_metric

# one colour per method in every figure (Okabe-Ito; the zero-shot baseline in grey)
METHOD_COLORS = {
    "zero-shot": "#8C8C8C",
    "mse": "#E69F00",
    "contrastive": "#0072B2",
    "ot": "#D55E00",
    "ot+contrastive": "#CC79A7",
    # the protocol's test arms (results/full/protocol.yaml: test.*.arms)
    "contrastive_best": "#0072B2",
    "ot_published": "#E6A07A",
    "ot_best": "#D55E00",
    "ot_best+contrastive": "#CC79A7",
}
TASK_NAMES = {"xquad-r": "XQuAD-R", "xquad": "XQuAD", "flores": "FLORES", "tatoeba": "Tatoeba"}
# the average bars' group labels (two lines under each group)
_SHORT_LABELS = {("xquad", "xx->en"): "XQuAD para."}


def make_figures(methods_frame, figures_dir: str | os.PathLike, scale: str,
                 titles: dict[str, str] | None = None) -> list[Path]:
    """The figures of every question in ``methods_frame`` (``aggregate(...)``'s frame).

    titles: question -> the question in words (the grid file's ``title``), for figure titles.
    """
    import matplotlib

    matplotlib.use("Agg", force=False) if "matplotlib.pyplot" not in sys.modules else None

    from optical_viz import plots

    figures_dir = Path(figures_dir)
    written: list[Path] = []
    tag = "" if scale == "full" else f" [{scale} scale]"
    titles = titles or {}
    with plots.publication_style():
        for question in methods_frame["question"].unique():
            d = methods_frame[methods_frame["question"] == question]
            name = question.upper()
            if d["langset"].nunique() > 1:
                written += _scaling(d, figures_dir, question, name, tag)
            else:
                written += _by_language(d, figures_dir, question, tag)
                written += _average(d, figures_dir, question, f"{name}: {titles.get(question, 'methods compared')}", tag)
    return written


def _method_sorted(frame):
    return frame.assign(_o=frame["method"].map(lambda m: METHOD_ORDER.get(m, 99))).sort_values(["_o", "lang"]).drop(columns="_o")


def _with_ci(frame, metric: str):
    """Rows of one metric, renamed for optical_viz.plots: ``metric`` and ``<metric>_ci``."""
    f = frame[frame["metric"] == metric].copy()
    f[metric] = f["value"]
    f[f"{metric}_ci"] = [[lo, hi] for lo, hi in zip(f["ci_lo"], f["ci_hi"])]
    return f


def _legend_above(ax, n: int, y: float) -> None:
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, ncols=n, loc="lower left", bbox_to_anchor=(0, y), borderaxespad=0.1)


def _short(lang: str) -> str:
    """``deu_Latn`` -> ``de`` (the XQuAD code) where there is one, else ``deu``."""
    from optical_viz.data import XQUAD_LANGUAGES

    inverse = {v: k for k, v in XQUAD_LANGUAGES.items()}
    return inverse.get(lang, lang.split("_")[0])


def _by_language(d, figures_dir, question, tag) -> list[Path]:
    """One panel per dense evaluation of the trained languages: the headline metric per language
    and the average (shaded)."""
    import matplotlib.pyplot as plt

    from optical_viz import plots

    panels = [(t, di) for t, el, di, sc in headline_columns(d) if el == "trained" and sc == "dense"]
    if not panels:
        return []
    fig, axes = plt.subplots(len(panels), 1, figsize=(plots.TEXT_WIDTH, 1.85 * len(panels) + 0.3), squeeze=False)
    for k, (ax, (task, direction)) in enumerate(zip(axes[:, 0], panels)):
        metric = headline_metric(direction)
        f = d[(d["task"] == task) & (d["direction"] == direction) & (d["scoring"] == "dense") & (d["eval_langs"] == "trained")]
        f = _method_sorted(_with_ci(f, metric))
        f["lang"] = f["lang"].map(lambda l: "average" if l == "all" else _short(l))
        order = sorted(set(f["lang"]) - {"average"}) + ["average"]
        plots.plot_retrieval(f, metric, hue="method", ax=ax, colors=METHOD_COLORS, order=order)
        ax.set_title(f"{eval_label(task, direction)}, dense scoring{tag}", loc="left")
        ax.set_ylabel(METRIC_NAMES[metric].replace("R@", "Recall@"))
        if k == 0:
            _legend_above(ax, f["method"].nunique(), 1.12)
        else:
            ax.get_legend().remove()
        ax.axvspan(len(order) - 1.5, len(order) - 0.5, color="0.92", zorder=-1, linewidth=0)
    return plots.save_figure(fig, figures_dir / f"{question}_by_language", formats=("pdf", "png"))


def _average(d, figures_dir, question, title, tag) -> list[Path]:
    """Language-averaged headline metric per evaluation and method, dense and MaxSim."""
    import matplotlib.pyplot as plt

    from optical_viz import plots

    f = d[d["lang"] == "all"]
    f = f[f["metric"] == f["direction"].map(headline_metric)]
    if f.empty:
        return []
    cols = headline_columns(f)
    names = {}
    for i, (t, el, di, sc) in enumerate(cols):
        label = _SHORT_LABELS.get((t, di), eval_label(t, di)) + (" unseen" if el == "unseen" else "")
        names[f"{i:02d}"] = f"{label}\n{METRIC_NAMES[headline_metric(di)]} {'MaxSim' if sc == 'maxsim' else sc}"
    f = f.copy()
    key = {c: f"{i:02d}" for i, c in enumerate(cols)}
    # plot_retrieval groups by "lang": a sortable key per evaluation, relabelled below
    f["lang"] = [key[c] for c in zip(f["task"], f["eval_langs"], f["direction"], f["scoring"])]
    f["score"] = f["value"]
    f["score_ci"] = [[lo, hi] for lo, hi in zip(f["ci_lo"], f["ci_hi"])]
    f = _method_sorted(f)
    fig, ax = plt.subplots(figsize=(plots.TEXT_WIDTH, 2.4))
    plots.plot_retrieval(f, "score", hue="method", ax=ax, colors=METHOD_COLORS, order=list(names))
    ax.set_xticklabels(list(names.values()), rotation=0)
    ax.set_ylabel("score (avg. over languages)")
    ax.set_title(f"{title}{tag}", loc="left", pad=18)
    _legend_above(ax, f["method"].nunique(), 1.0)
    return plots.save_figure(fig, figures_dir / f"{question}_average", formats=("pdf", "png"))


def _scaling(d, figures_dir, question, name, tag) -> list[Path]:
    """Recall@1 against the number of training languages, per task and language kind."""
    import matplotlib.pyplot as plt

    from optical_viz import plots

    written = []
    f = _method_sorted(_with_ci(d[d["lang"] == "all"], "recall@1"))
    tasks = list(dict.fromkeys(t for t, _, _, _ in headline_columns(f)))
    for i, task in enumerate(tasks):
        for which, label in (("trained", "seen"), ("unseen", "unseen")):
            g = f[(f["eval_langs"] == which) & (f["task"] == task) & (f["scoring"] == "dense")]
            if g.empty:
                continue
            directions = list(dict.fromkeys(di for t, el, di, sc in headline_columns(g)))
            directions.sort(key=lambda di: (di.startswith("en->"), di))  # L->en first
            fig, axes = plt.subplots(1, len(directions), figsize=(plots.TEXT_WIDTH, 2.5), squeeze=False, sharey=True)
            for k, (ax, direction) in enumerate(zip(axes[0], directions)):
                plots.plot_scaling(g[g["direction"] == direction], "recall@1", ax=ax, colors=METHOD_COLORS)
                ax.set_title(eval_label(task, direction), loc="left")
                if k < len(directions) - 1:
                    ax.get_legend().remove()
                if k > 0:
                    ax.set_ylabel("")
            per_lang = d[(d["eval_langs"] == which) & (d["lang"] != "all") & (d["task"] == task)]
            n_langs = per_lang.groupby("langset")["lang"].nunique().max()
            what = ("the trained languages (average)" if which == "trained"
                    else f"{n_langs} unseen languages (average)")
            fig.suptitle(f"{name}: {TASK_NAMES.get(task, task)} Recall@1 on {what}{tag}", x=0.01, ha="left", fontsize=9)
            stem = f"{question}_scaling_{label}" if i == 0 else f"{question}_scaling_{task}_{label}"
            written += plots.save_figure(fig, figures_dir / stem, formats=("pdf", "png"))
    return written


def protocol_figures(frames: dict, figures_dir: str | os.PathLike, scale: str) -> list[Path]:
    """The protocol report's figures from :func:`~optical_viz.experiments.protocol_report`'s frames:
    ``rq1_contrasts`` (forest plot of the Holm family, the +-1 point equivalence band) and
    ``rq2_delta`` (Recall@1 minus zero-shot against the number of training languages, one panel
    per group: trained, shared 5, unseen) and ``rq1_arms`` (every arm on every RQ1 metric)."""
    import matplotlib

    matplotlib.use("Agg", force=False) if "matplotlib.pyplot" not in sys.modules else None
    import matplotlib.pyplot as plt

    from optical_viz import plots

    figures_dir = Path(figures_dir)
    tag = "" if scale == "full" else f" [{scale} scale]"
    written: list[Path] = []
    with plots.publication_style():
        s = frames.get("rq1_summary")
        if s is not None and not s.empty:
            written += _rq1_arms(s, figures_dir, tag)
        for q in ("rq1", "rq2"):
            c = frames.get(f"{q}_contrasts")
            if c is None or c.empty:
                continue
            ax = plots.plot_contrasts(c, margin=1.0, title=f"{q.upper()}: paired differences, test split{tag}")
            written += plots.save_figure(ax.figure, figures_dir / f"{q}_contrasts", formats=("pdf", "png"))
            plt.close(ax.figure)
        s = frames.get("rq2_summary")
        if s is not None and not s.empty and "delta_zero_shot" in s:
            d = s.dropna(subset=["delta_zero_shot"]).rename(columns={
                "arm": "method", "size": "n_languages", "delta_lo": "ci_lo", "delta_hi": "ci_hi"})
            groups = [g for g in ("trained", "shared_5", "unseen") if (d["group"] == g).any()]
            names = {"trained": "trained languages", "shared_5": "shared (every size)", "unseen": "unseen languages"}
            fig, axes = plt.subplots(1, len(groups), figsize=(plots.TEXT_WIDTH, 2.4), squeeze=False, sharey=True)
            for k, (ax, g) in enumerate(zip(axes[0], groups)):
                plots.plot_scaling(d[d["group"] == g], "delta_zero_shot", ax=ax, colors=METHOD_COLORS)
                ax.axhline(0, color="0.3", linewidth=0.6)
                ax.set_title(names[g], loc="left")
                ax.set_ylabel("R@1 \u2212 zero-shot (points)" if k == 0 else "")
                if k < len(groups) - 1 and ax.get_legend() is not None:
                    ax.get_legend().remove()
            fig.suptitle(f"RQ2: FLORES test, both directions{tag}", x=0.01, ha="left")
            written += plots.save_figure(fig, figures_dir / "rq2_delta", formats=("pdf", "png"))
            plt.close(fig)
    return written


# rq1_summary's metric -> panel title (the primary first; AER: lower is better)
RQ1_PANELS = {
    "recall@1": "XQuAD-R R@1 \u2191",
    "mrr@10": "XQuAD-R MRR@10 \u2191",
    "xquad_paragraphs_recall@1": "XQuAD para. R@1 \u2191",
    "maxsim_recall@1": "MaxSim R@1 \u2191",
    "english_control_recall@1": "en\u2192en R@1 \u2191",
    "aer_roen_similarity": "AER, similarity \u2193",
    "aer_roen_sinkhorn": "AER, Sinkhorn \u2193",
}


def _rq1_arms(summary, figures_dir: Path, tag: str) -> list[Path]:
    """``rq1_arms``: one panel per metric of ``rq1_summary``, every arm with its interval and
    zero-shot as a dashed line (AER intervals: the lowest and highest seed)."""
    import matplotlib.pyplot as plt

    from optical_viz import plots

    metrics = [m for m in RQ1_PANELS if (summary["metric"] == m).any()]
    ncols = min(4, len(metrics))
    nrows = -(-len(metrics) // ncols)
    arms = list(dict.fromkeys(summary["arm"]))
    fig, axes = plt.subplots(nrows, ncols, figsize=(plots.TEXT_WIDTH, (0.22 * len(arms) + 0.8) * nrows),
                             squeeze=False, sharey=True)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(metrics):
            ax.set_visible(False)
            continue
        d = summary[summary["metric"] == metrics[k]].set_index("arm").reindex(arms)  # every arm on every row
        plots.plot_estimates(d.reset_index(), ax=ax, colors=METHOD_COLORS, reference="zero-shot",
                             title=RQ1_PANELS[metrics[k]], unit="%")
    fig.suptitle(f"RQ1: every arm on the test split (XQuAD-R, XQuAD: L\u2192en; AER: roen words; 95% intervals){tag}",
                 x=0.01, ha="left")
    written = plots.save_figure(fig, figures_dir / "rq1_arms", formats=("pdf", "png"))
    plt.close(fig)
    return written


# RQ3's test arms (results/optical/protocol.yaml: test.arms) in the colours of their methods
RQ3_COLORS = {**METHOD_COLORS, "teacher_only": "#000000", "e5_untrained": "#8C8C8C", "ot_best+mse": "#009E73"}
RQ3_SETS = {
    "xquad-r.test": "XQuAD-R L\u2192en R@1 \u2191 (P1)",
    "flores.test.low_resource": "FLORES L\u2192en R@1 \u2191 (P2)",
    "flores.test.unseen": "FLORES unseen R@1 \u2191",
    "xquad.test": "XQuAD para. R@1 \u2191",
    "xquad-r.test.english": "en\u2192en R@1 \u2191",
    "aer.roen": "AER ro-en \u2193",
}


def optical_figures(tables: dict, figures_dir: str | os.PathLike, checkpoints: list[int], scale: str) -> list[Path]:
    """RQ3's figures from its report frames (``rq3_summary``, ``rq3_contrasts``,
    ``rq3_scaling``, ``tuning``; any may be missing or empty): ``rq3_dev_curves`` (every dev
    configuration's score at each checkpoint, one panel per method), ``rq3_arms`` (every arm on
    every test set with its interval, the teacher alone as the dashed line), ``rq3_contrasts``
    (the Holm family as a forest plot) and ``rq3_scaling`` (Recall@1 against the number of
    training languages, one panel per language group)."""
    import matplotlib

    matplotlib.use("Agg", force=False) if "matplotlib.pyplot" not in sys.modules else None
    import matplotlib.pyplot as plt

    from optical_viz import plots

    figures_dir = Path(figures_dir)
    tag = "" if scale == "full" else f" [{scale} scale]"
    written: list[Path] = []

    def save(fig, name):
        written.extend(plots.save_figure(fig, figures_dir / name, formats=("pdf", "png")))
        plt.close(fig)

    with plots.publication_style():
        tuning = tables.get("tuning")
        if tuning is not None and not tuning.empty:
            save(_dev_curves(tuning, checkpoints, tag), "rq3_dev_curves")
        summary = tables.get("rq3_summary")
        if summary is not None and not summary.empty:
            sets = [s for s in RQ3_SETS if (summary["set"] == s).any()]
            fig, axes = plt.subplots(2, 3, figsize=(plots.TEXT_WIDTH, 3.6), squeeze=False, sharey=True)
            for ax, name in zip(axes.ravel(), sets + [None] * (6 - len(sets))):
                if name is None:
                    ax.set_visible(False)
                    continue
                plots.plot_estimates(summary[summary["set"] == name], ax=ax, colors=RQ3_COLORS,
                                     reference="teacher_only", title=RQ3_SETS[name], unit="%")
            fig.suptitle(f"RQ3: every arm on the test sets (95% intervals; dashed: the teacher alone){tag}",
                         x=0.01, ha="left")
            save(fig, "rq3_arms")
        contrasts = tables.get("rq3_contrasts")
        if contrasts is not None and not contrasts.empty:
            ax = plots.plot_contrasts(contrasts, margin=1.0, title=f"RQ3: paired differences, test sets{tag}")
            save(ax.figure, "rq3_contrasts")
        scaling = tables.get("rq3_scaling")
        if scaling is not None and not scaling.empty and scaling["size"].notna().any():
            d = scaling.dropna(subset=["size"]).rename(columns={
                "arm": "method", "size": "n_languages", "estimate": "recall@1", "lo": "ci_lo", "hi": "ci_hi"})
            groups = [g for g in ("trained", "shared_5", "unseen") if (d["group"] == g).any()]
            fig, axes = plt.subplots(1, len(groups), figsize=(plots.TEXT_WIDTH, 2.4), squeeze=False, sharey=True)
            for k, (ax, g) in enumerate(zip(axes[0], groups)):
                plots.plot_scaling(d[d["group"] == g], "recall@1", ax=ax, colors=RQ3_COLORS)
                ax.set_title(g.replace("_", " "), loc="left")
                if k < len(groups) - 1 and ax.get_legend() is not None:
                    ax.get_legend().remove()
            fig.suptitle(f"RQ3 scaling: FLORES test L\u2192en R@1 (%){tag}", x=0.01, ha="left")
            save(fig, "rq3_scaling")
    return written


def _dev_curves(tuning, checkpoints: list[int], tag: str):
    """One panel per method: each dev configuration's dev score (mean R@1 of the two dev sets)
    at every checkpoint it has; in bold the method's selected configuration, once all its
    configurations are scored (the stage's rule: the highest final score, ties within
    ``optical_protocol.TIE`` to the first listed), never a leader of an unfinished tuning."""
    import matplotlib.pyplot as plt

    from optical_viz import plots
    from optical_viz.optical_protocol import TIE

    cols = [c for c in checkpoints if f"dev@{c}" in tuning]
    scored = tuning[[f"dev@{c}" for c in cols]].notna().any(axis=1) if cols else tuning["method"].isna()
    methods = [m for m in ("ot", "contrastive", "mse") if (scored & (tuning["method"] == m)).any()]  # a panel once a curve exists
    fig, axes = plt.subplots(1, max(len(methods), 1), figsize=(plots.TEXT_WIDTH, 2.5), squeeze=False, sharey=True)
    for k, (ax, method) in enumerate(zip(axes[0], methods)):
        rows = tuning[tuning["method"] == method]
        final = rows[f"dev@{cols[-1]}"] if cols else None
        best = None
        if final is not None and final.notna().all():
            best = final.index[final >= final.max() - TIE][0]
        for i, row in rows.iterrows():
            steps = [c for c in cols if row[f"dev@{c}"] == row[f"dev@{c}"]]  # not NaN
            if not steps:
                continue
            ax.plot(steps, [row[f"dev@{c}"] for c in steps], marker="o", markersize=2.5,
                    linewidth=1.6 if i == best else 0.8, label=row["variant"].split(f"{method}-", 1)[-1])
        ax.set_title(method, loc="left")
        ax.set_xlabel("step")
        ax.set_xticks(cols)
        ax.set_ylabel("dev score (R@1 %)" if k == 0 else "")
        ax.legend(fontsize=5, frameon=False)
    fig.suptitle(f"RQ3 tuning: dev learning curves (seed 0; bold: a method's selection, once all its configurations are scored){tag}", x=0.01, ha="left")
    return fig
