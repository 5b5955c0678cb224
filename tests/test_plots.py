"""Figures: assert on the artists and the data they carry, never on pixels."""
from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402

from optical_viz import plots  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

SRC = ["<s>", "\u2581Le", "\u2581chat", "\u2581dort", "</s>"]
TGT = ["<s>", "\u2581The", "\u2581cat", "\u2581sleeps", ".", "</s>"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def plan() -> np.ndarray:
    """A (5, 6) plan with uniform marginals, padded to (7, 8) with zeros."""
    rng = np.random.default_rng(0)
    p = rng.random((5, 6))
    for _ in range(200):  # Sinkhorn scaling to uniform marginals (just test data, not the library's)
        p /= p.sum(1, keepdims=True) * 5
        p /= p.sum(0, keepdims=True) * 6
    padded = np.zeros((7, 8))
    padded[:5, :6] = p
    return padded


# --------------------------------------------------------------------------- style and saving


def test_publication_style_sets_and_restores_rcparams():
    before = dict(matplotlib.rcParams)
    with plots.publication_style(font_size=9):
        assert matplotlib.rcParams["font.size"] == 9
        assert matplotlib.rcParams["xtick.labelsize"] == 8
        assert matplotlib.rcParams["pdf.fonttype"] == 42
        cycle = [c["color"] for c in matplotlib.rcParams["axes.prop_cycle"]]
        assert cycle == list(plots.PALETTE)
        assert matplotlib.rcParams["figure.constrained_layout.use"]
    assert matplotlib.rcParams["font.size"] == before["font.size"]
    assert matplotlib.rcParams["axes.prop_cycle"] == before["axes.prop_cycle"]


def test_publication_style_keeps_interactive_mode_switched_on_inside():
    # a notebook backend turns interactive mode on at the first pyplot call, which may
    # happen inside the block; restoring the old value would stop figures from displaying
    was = matplotlib.is_interactive()
    try:
        matplotlib.interactive(False)
        with plots.publication_style():
            matplotlib.interactive(True)
        assert matplotlib.is_interactive()
        with plots.publication_style():
            pass
        assert matplotlib.is_interactive()
    finally:
        matplotlib.interactive(was)


def test_palette_is_okabe_ito_and_languages_get_stable_colours():
    assert len(set(plots.PALETTE)) == 8
    colors = plots.language_colors(["yor_Latn", "eng_Latn", "hau_Latn", "yor_Latn"])
    assert colors["eng_Latn"] == "#000000"
    assert colors["yor_Latn"] == plots.PALETTE[0] and colors["hau_Latn"] == plots.PALETTE[1]


def test_save_figure_writes_pdf_svg_png(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    written = plots.save_figure(fig, tmp_path / "sub" / "curve.png")  # suffix replaced
    assert [p.name for p in written] == ["curve.pdf", "curve.svg", "curve.png"]
    assert written[0].read_bytes()[:5] == b"%PDF-"
    assert b"<svg" in written[1].read_bytes()[:500]
    assert written[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # no timestamps: saving again gives byte-identical vector files
    again = plots.save_figure(fig, tmp_path / "again" / "curve")
    assert again[0].read_bytes() == written[0].read_bytes()
    assert again[1].read_bytes() == written[1].read_bytes()


_FIGURE_SCRIPT = """
import sys, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from optical_viz import plots
with plots.publication_style():
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1, 0, 2], label="curve")
    ax.set_title("cat / chat / बिल्ली / 猫")
    ax.legend()
    plots.save_figure(fig, sys.argv[1])
"""


def test_a_figure_rendered_twice_is_byte_identical(tmp_path):
    """Issue 25: `make demo` rewrote committed figures although nothing had changed. The same
    figure drawn by two processes, seconds apart, gives the same bytes in every format (no
    dates, fixed hash salt and software tags), so re-running the notebooks leaves `git status`
    clean; tests/test_notebooks.py compares the notebooks' figures with the committed ones."""
    import subprocess
    import sys
    import time

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", _FIGURE_SCRIPT, str(tmp_path / name / "fig")], env=env, check=True,
                       timeout=120)
        time.sleep(1.1)  # a date in the files would differ
    for ext in ("pdf", "svg", "png"):
        a, b = (tmp_path / name / f"fig.{ext}" for name in ("a", "b"))
        assert a.read_bytes() == b.read_bytes(), ext
    pdf = (tmp_path / "a" / "fig.pdf").read_bytes()
    assert b"CreationDate" not in pdf and b"ModDate" not in pdf
    assert b"<dc:date>" not in (tmp_path / "a" / "fig.svg").read_bytes()


def test_save_figure_rejects_bad_input(tmp_path):
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="formats"):
        plots.save_figure(fig, tmp_path / "x", formats=("jpg",))
    with pytest.raises(ValueError, match="Figure"):
        plots.save_figure("not a figure", tmp_path / "x")


# --------------------------------------------------------------------------- plans


def test_plot_plan_hides_padding_and_labels_axes(plan):
    ax = plots.plot_plan(plan, SRC, TGT)
    shown = np.asarray(ax.images[0].get_array())
    np.testing.assert_array_equal(shown, plan[:5, :6])  # rows = source, columns = target
    assert [t.get_text() for t in ax.get_yticklabels()] == ["<s>", "_Le", "_chat", "_dort", "</s>"]
    assert [t.get_text() for t in ax.get_xticklabels()][1:4] == ["_The", "_cat", "_sleeps"]
    assert ax.images[0].get_clim() == (0.0, pytest.approx(plan.max()))
    assert len(ax.figure.axes) == 2  # the heatmap and its colour bar


def test_plot_plan_accepts_batched_torch_tensor_and_draws_links(plan):
    batch = torch.tensor(np.stack([plan, plan[::-1].copy()]), dtype=torch.float32)
    fig, given = plt.subplots()
    ax = plots.plot_plan(batch, SRC, TGT, index=1, links={(0, 1), (3, 4)}, ax=given, colorbar=False)
    assert ax is given
    np.testing.assert_allclose(ax.images[0].get_array(), plan[::-1][:5, :6], rtol=1e-6)
    # links are drawn at (x=column j, y=row i)
    offsets = sorted(map(tuple, ax.collections[0].get_offsets().tolist()))
    assert offsets == [(1.0, 0.0), (4.0, 3.0)]
    assert len(fig.axes) == 1


def test_plot_plan_without_tokens_shows_the_whole_plan(plan):
    ax = plots.plot_plan(plan)
    assert np.asarray(ax.images[0].get_array()).shape == (7, 8)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((3,)), r"shape \(T, S\)"),
        (np.full((5, 6), np.nan), "non-finite"),
        (-np.ones((5, 6)), "negative"),
        (np.ones((4, 6)), r"5 source and 6 target tokens do not fit a plan of shape \(4, 6\)"),
    ],
)
def test_plot_plan_rejects_bad_plans(bad, match):
    with pytest.raises(ValueError, match=match):
        plots.plot_plan(bad, SRC, TGT)


def test_plot_plan_rejects_links_outside_the_plan(plan):
    with pytest.raises(ValueError, match="outside"):
        plots.plot_plan(plan, SRC, TGT, links=[(5, 0)])


def test_plot_bipartite_draws_one_line_per_entry_above_threshold(plan):
    ax = plots.plot_bipartite(plan, SRC, TGT, min_mass=0.3)
    p = plan[:5, :6]
    keep = np.argwhere(p >= 0.3 * p.max())
    lines = ax.collections[0]
    segs = lines.get_segments()
    assert len(segs) == len(keep)
    xs, xt = np.linspace(0, 1, 5), np.linspace(0, 1, 6)
    for seg, (i, j) in zip(segs, keep):
        np.testing.assert_allclose(seg, [[xs[i], 1.0], [xt[j], 0.0]])
    # width grows with mass, the heaviest entry is the widest line
    widths = np.asarray(lines.get_linewidths())
    masses = p[keep[:, 0], keep[:, 1]]
    assert np.argmax(widths) == np.argmax(masses)
    assert np.all(np.diff(widths[np.argsort(masses)]) >= 0)
    texts = [t.get_text() for t in ax.texts]
    assert texts == [plots._display_token(t) for t in SRC + TGT]


def test_plot_bipartite_alpha_encoding_and_links(plan):
    ax = plots.plot_bipartite(plan, SRC, TGT, encode="alpha", min_mass=0.0, links=[(0, 0), (1, 2)])
    lines, hard = ax.collections
    assert len(lines.get_segments()) == 30
    alphas = lines.get_colors()[:, 3]
    p = plan[:5, :6].ravel()
    assert np.argmax(alphas) == np.argmax(p) and np.argmin(alphas) == np.argmin(p)
    assert len(set(np.round(lines.get_linewidths(), 6))) == 1  # width carries nothing here
    assert len(hard.get_segments()) == 2
    with pytest.raises(ValueError, match="encode"):
        plots.plot_bipartite(plan, SRC, TGT, encode="colour")


def test_plot_plan_grid_uses_one_colour_scale(plan):
    sharp = np.zeros((5, 6))
    sharp[np.arange(5), np.arange(5)] = 0.2
    plans = {"EMD": sharp, "Sinkhorn eps=0.1": plan[:5, :6], "Sinkhorn eps=1": np.full((5, 6), 1 / 30)}
    axes = plots.plot_plan_grid(plans, SRC, TGT, ncols=2)
    assert len(axes) == 3
    assert [ax.get_title() for ax in axes] == list(plans)
    vmax = max(sharp.max(), plan.max())
    assert all(ax.images[0].get_clim() == (0.0, pytest.approx(vmax)) for ax in axes)
    np.testing.assert_array_equal(axes[2].images[0].get_array(), plans["Sinkhorn eps=1"])
    assert len(axes[0].figure.axes) == 4  # three panels, the unused cell removed, one colour bar


def test_plot_plan_grid_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        plots.plot_plan_grid({"a": np.ones((2, 2)), "b": np.ones((2, 3))})
    with pytest.raises(ValueError, match="empty"):
        plots.plot_plan_grid({})


def test_plot_toy_transport_draws_lines_between_the_clouds():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 2)), rng.normal(size=(3, 2)) + 3
    p = np.array([[0.25, 0, 0], [0, 0.25, 0], [0, 0, 0.25], [0.125, 0.125, 0]])
    ax = plots.plot_toy_transport(x, y, p, a=np.full(4, 0.25))
    segs = ax.collections[0].get_segments()
    keep = np.argwhere(p > 0)
    assert len(segs) == len(keep) == 5
    for seg, (i, j) in zip(segs, keep):
        np.testing.assert_allclose(seg, [x[i], y[j]])
    np.testing.assert_allclose(ax.collections[1].get_offsets(), x)
    np.testing.assert_allclose(ax.collections[2].get_offsets(), y)
    with pytest.raises(ValueError, match=r"plan must have shape \(4, 3\)"):
        plots.plot_toy_transport(x, y, p.T)
    with pytest.raises(ValueError, match=r"\(T, 2\)"):
        plots.plot_toy_transport(x[:, :1], y, p)


# --------------------------------------------------------------------------- projections


@pytest.fixture
def projection() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    n = 6
    return pd.DataFrame({
        "x": rng.normal(size=3 * n), "y": rng.normal(size=3 * n),
        "language": ["eng_Latn"] * n + ["yor_Latn"] * n + ["hau_Latn"] * n,
        "label": list(range(n)) * 3,
    })


def test_plot_projection_one_scatter_per_language(projection):
    ax = plots.plot_projection(projection)
    assert len(ax.collections) == 3
    for coll, lang in zip(ax.collections, ["eng_Latn", "yor_Latn", "hau_Latn"]):
        sel = projection["language"] == lang
        np.testing.assert_allclose(coll.get_offsets(), projection.loc[sel, ["x", "y"]].to_numpy())
        assert coll.get_label() == lang
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["eng_Latn", "yor_Latn", "hau_Latn"]


def test_plot_projection_links_translations(projection):
    xy = projection[["x", "y"]].to_numpy()
    for link in ("label", "parallel"):
        ax = plots.plot_projection(projection, link=link)
        segs = ax.collections[0].get_segments()
        assert len(segs) == 6 * 2  # each sentence: eng-yor, yor-hau
        np.testing.assert_allclose(segs[0], [xy[0], xy[6]])
        np.testing.assert_allclose(segs[1], [xy[6], xy[12]])
    shuffled = projection.iloc[[0, 1, 2, 3, 4, 5, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]]
    segs = plots.plot_projection(shuffled, link="label").collections[0].get_segments()
    np.testing.assert_allclose(segs[0], [xy[0], xy[6]])  # by label, wherever the rows are
    with pytest.raises(ValueError, match="same number of points per language"):
        plots.plot_projection(projection.iloc[:-1], link="parallel")
    with pytest.raises(ValueError, match="link must be"):
        plots.plot_projection(projection, link="pairs")
    ax = plots.plot_projection(projection[["x", "y"]].to_numpy(), projection["language"], pairs=[(0, 1)])
    assert len(ax.collections[0].get_segments()) == 1


def test_plot_projection_accepts_objects_and_validates(projection):
    from optical_viz.geometry import Projection

    proj = Projection(projection[["x", "y"]].to_numpy(), projection["label"].astype(str).tolist(),
                      projection["language"].tolist(), "pca", 0)
    ax = plots.plot_projection(proj, link="label")
    assert len(ax.collections) == 4
    with pytest.raises(ValueError, match="18 points but 2 languages"):
        plots.plot_projection(projection[["x", "y"]].to_numpy(), ["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        plots.plot_projection(projection.drop(columns="label"), link="label")


def test_plot_projection_comparison_shares_colours(projection):
    after = projection.assign(x=projection["x"] * 0.1)
    axes = plots.plot_projection_comparison(projection, after, link="parallel")
    assert [ax.get_title() for ax in axes] == ["before distillation", "after distillation"]
    for ax in axes:
        colours = [tuple(c.get_facecolor()[0][:3]) for c in ax.collections[1:]]
        assert len(set(colours)) == 3
    assert [tuple(c.get_facecolor()[0]) for c in axes[0].collections[1:]] == [
        tuple(c.get_facecolor()[0]) for c in axes[1].collections[1:]
    ]
    assert axes[1].get_legend() is not None


def test_plot_projections_one_panel_each(projection):
    panels = {"base": projection, "OT": projection.assign(x=projection["x"] * 0.5),
              "contrastive": projection.iloc[6:]}  # a panel may lack a language
    axes = plots.plot_projections(panels, link="label")
    assert [ax.get_title() for ax in axes] == ["base", "OT", "contrastive"]
    yor = [c for c in axes[2].collections[1:] if c.get_label() == "yor_Latn"][0]
    assert tuple(yor.get_facecolor()[0]) == tuple(axes[0].collections[2].get_facecolor()[0])
    np.testing.assert_allclose(axes[1].collections[1].get_offsets()[:, 0], projection["x"][:6] * 0.5)
    with pytest.raises(ValueError, match="empty"):
        plots.plot_projections({})


# --------------------------------------------------------------------------- training


@pytest.fixture
def metrics_file(tmp_path):
    lines = []
    for step in range(0, 50, 5):
        rec = {"step": step, "loss": 1.0 / (1 + step), "loss_ot": 0.5 / (1 + step), "lr": 1e-4}
        if step % 20 == 0:  # as distill logs it: the rows of retrieval.evaluate
            rec["heldout_cosine"] = 0.5 + step / 100
            rec["heldout_cosine_by_lang"] = {"yor_Latn": 0.5 + step / 100}
            rec["translation_gap"], rec["dev_recall@1"] = 0.1 + step / 1000, 0.8 + step / 500
            rec["eval"] = [
                {"lang": "yor_Latn", "direction": "xx->en", "n": 99, "recall@1": step / 100 - 0.01,
                 "recall@1_ci": [0.0, 1.0], "mrr@10": step / 80},
                {"lang": "yor_Latn", "direction": "en->xx", "n": 99, "recall@1": step / 100 + 0.01,
                 "recall@1_ci": [0.0, 1.0], "mrr@10": step / 80},
            ]
        lines.append(json.dumps(rec))
    path = tmp_path / "run" / "metrics.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    return path


def test_metrics_frame_flattens_eval(metrics_file):
    from optical_viz.rundir import read_metrics

    df = plots.metrics_frame(read_metrics(metrics_file.parent))
    assert len(df) == 10
    assert {"step", "loss", "loss_ot", "lr", "eval/recall@1", "eval/mrr@10", "heldout_cosine",
            "heldout_cosine_by_lang/yor_Latn"} <= set(df.columns)
    assert "eval/n" not in df and "eval/recall@1_ci" not in df
    assert df["eval/recall@1"].notna().sum() == 3
    np.testing.assert_allclose(df["eval/recall@1"].dropna(), [0.0, 0.2, 0.4])  # mean of the two directions
    dict_style = plots.metrics_frame([{"step": 1, "eval": {"recall@1": 0.5}}])
    assert dict_style.loc[0, "eval/recall@1"] == 0.5
    empty = plots.metrics_frame([])  # a run that has not logged yet
    assert len(empty) == 0 and list(empty.columns) == ["step"]
    assert plots.metrics_frame(df) is df
    with pytest.raises(ValueError, match="step"):
        plots.metrics_frame([{"loss": 1.0}])
    with pytest.raises(ValueError, match=r"not a path .*rundir\.read_metrics"):  # figures read no files
        plots.metrics_frame(metrics_file.parent)


def test_plots_reads_no_metrics_file():
    """One name per idea: rundir.read_metrics reads metrics.jsonl, plots.metrics_frame tabulates
    the records; plots has no reader of its own (it had one named read_metrics too)."""
    from optical_viz import rundir

    assert not hasattr(plots, "read_metrics") and "read_metrics" not in plots.__all__
    assert callable(rundir.read_metrics)


@pytest.fixture
def metrics(metrics_file):
    from optical_viz.rundir import read_metrics

    return read_metrics(metrics_file)


def test_plot_training_curves_plots_every_loss_term(metrics):
    ax = plots.plot_training_curves(metrics)
    assert [line.get_label() for line in ax.lines] == ["loss", "loss_ot"]
    steps = np.arange(0, 50, 5)
    np.testing.assert_allclose(ax.lines[0].get_xdata(), steps)
    np.testing.assert_allclose(ax.lines[1].get_ydata(), 0.5 / (1 + steps))
    smooth = plots.plot_training_curves(metrics, ["loss"], smooth=3)
    expected = pd.Series(1.0 / (1 + steps)).rolling(3, center=True, min_periods=1).mean()
    np.testing.assert_allclose(smooth.lines[0].get_ydata(), expected)
    with pytest.raises(ValueError, match="no column"):
        plots.plot_training_curves(metrics, ["loss_mse"])
    single = [{"step": k, "loss": 1.0 / (k + 1), "loss_ot": 1.0 / (k + 1)} for k in range(3)]
    assert [line.get_label() for line in plots.plot_training_curves(single).lines] == ["loss"]


def test_plot_eval_curves_skips_steps_without_evaluation(metrics):
    ax = plots.plot_eval_curves(metrics, ["recall@1"])
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_xdata(), [0, 20, 40])
    np.testing.assert_allclose(line.get_ydata(), [0.0, 0.2, 0.4])
    assert line.get_label() == "recall@1"
    ax = plots.plot_eval_curves(metrics)
    # the monitor's held-out signal (a rising cosine alone can be a collapsing space), then eval/
    assert [line.get_label() for line in ax.lines] == ["heldout_cosine", "translation_gap", "dev_recall@1",
                                                       "recall@1", "mrr@10"]


# --------------------------------------------------------------------------- results


@pytest.fixture
def retrieval() -> pd.DataFrame:
    rows = []
    for lang, base in [("yor", 0.3), ("amh", 0.5), ("hau", 0.4)]:
        for method, delta in [("base", 0.0), ("OPTICAL", 0.2)]:
            v = base + delta
            rows.append({"lang": lang, "direction": "xx->en", "method": method, "n": 100,
                         "recall@1": v, "recall@1_ci": [v - 0.05, v + 0.04], "mrr@10": v})
    return pd.DataFrame(rows)


def test_plot_retrieval_bars_and_whiskers(retrieval):
    ax = plots.plot_retrieval(retrieval)
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [c.get_label() for c in bars] == ["base", "OPTICAL"]
    heights = [[b.get_height() for b in c] for c in bars]
    np.testing.assert_allclose(heights[0], [0.5, 0.4, 0.3])  # sorted: amh, hau, yor
    np.testing.assert_allclose(heights[1], [0.7, 0.6, 0.5])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["amh", "hau", "yor"]
    # whiskers span exactly the confidence interval
    err = bars[0].errorbar.lines[2][0].get_segments()
    np.testing.assert_allclose([s[:, 1] for s in err], [[0.45, 0.54], [0.35, 0.44], [0.25, 0.34]])


def test_plot_retrieval_validates(retrieval):
    with pytest.raises(ValueError, match="several rows"):
        plots.plot_retrieval(retrieval, hue="direction")
    bad = retrieval.copy()
    bad["recall@1_ci"] = [[0.9, 1.0]] * len(bad)
    with pytest.raises(ValueError, match="do not contain"):
        plots.plot_retrieval(bad)
    with pytest.raises(ValueError, match="columns"):
        plots.plot_retrieval(retrieval.drop(columns="lang"))


def test_plot_retrieval_colors_and_order(retrieval):
    import matplotlib.colors as mcolors

    colors = {"OPTICAL": "#D55E00"}
    ax = plots.plot_retrieval(retrieval, colors=colors, order=["yor", "hau", "amh", "avg"])
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["yor", "hau", "amh", "avg"]
    np.testing.assert_allclose([b.get_height() for b in bars[1]], [0.5, 0.6, 0.7, 0.0])  # "avg": an empty slot
    assert all(mcolors.same_color(b.get_facecolor(), "#D55E00") for b in bars[1])
    assert mcolors.same_color(bars[0][0].get_facecolor(), plots.PALETTE[0])  # not in colors: the palette
    legend = {t.get_text(): h for t, h in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)}
    assert mcolors.same_color(legend["OPTICAL"].get_facecolor(), "#D55E00")
    with pytest.raises(ValueError, match=r"order= lacks the group\(s\) \['amh'\]"):
        plots.plot_retrieval(retrieval, order=["yor", "hau"])


def test_plot_scaling_one_colour_per_method_dashed_unseen():
    rows = []
    for method in ["OPTICAL", "contrastive"]:
        for n in [1, 2, 4, 8]:
            for seen in (True, False):
                v = 0.1 * np.log2(2 * n) - 0.05 * (not seen)
                rows.append({"method": method, "n_languages": n, "recall@1": v,
                             "ci_lo": v - 0.02, "ci_hi": v + 0.02, "seen": seen})
    df = pd.DataFrame(rows).sample(frac=1, random_state=0)  # order must not matter
    ax = plots.plot_scaling(df)
    assert [line.get_label() for line in ax.lines] == [
        "OPTICAL (seen)", "OPTICAL (unseen)", "contrastive (seen)", "contrastive (unseen)"]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [1, 2, 4, 8])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), 0.1 * np.log2(2 * np.array([1, 2, 4, 8])) - 0.05)
    assert ax.lines[0].get_linestyle() == "-" and ax.lines[1].get_linestyle() == "--"
    assert ax.lines[0].get_color() == ax.lines[1].get_color() != ax.lines[2].get_color()
    assert len(ax.collections) == 4  # one interval band per line
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(0.1 - 0.02)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["OPTICAL", "contrastive", "seen", "unseen"]
    fixed = plots.plot_scaling(df, colors={"contrastive": "#123456"})
    assert [line.get_color() for line in fixed.lines[2:]] == ["#123456", "#123456"]
    assert fixed.get_legend().legend_handles[1].get_color() == "#123456"
    with pytest.raises(ValueError, match="n_languages"):
        plots.plot_scaling(df.drop(columns="n_languages"))


def test_plot_metric_comparison_one_panel_per_metric():
    metrics = {"base": {"alignment": 0.8, "uniformity": -2.0}, "OT": {"alignment": 0.4, "uniformity": -2.5}}
    axes = plots.plot_metric_comparison(metrics, higher_is_better={"alignment": False})
    assert [ax.get_title() for ax in axes] == ["alignment \u2193", "uniformity"]
    np.testing.assert_allclose([b.get_height() for b in axes[1].patches], [-2.0, -2.5])


def test_plot_contrasts_and_estimates_draw_each_row_with_its_interval():
    contrasts = pd.DataFrame({"a": ["ot", "ot"], "b": ["contrastive", "mse"], "estimate": [-2.0, 0.1],
                              "lo": [-3.0, -0.5], "hi": [-1.0, 0.6], "p_holm": [0.001, 0.8],
                              "equivalent": [False, True]})
    ax = plots.plot_contrasts(contrasts, margin=1.0)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ot \u2212 contrastive", "ot \u2212 mse"]
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    assert [float(d.get_xdata()[0]) for d in dots] == [-2.0, 0.1]
    assert dots[0].get_markerfacecolor() != "white" and dots[1].get_markerfacecolor() == "white"  # Holm rejects only the first
    assert [t.get_text() for t in ax.texts] == ["\u2261"]  # only the equivalent one
    plt.close(ax.figure)
    did = contrasts.iloc[:1].assign(a="DiD ot - contrastive", b="n50 - n5 (shared_5)")
    ax = plots.plot_contrasts(did)  # a difference in differences reads on two lines, not as "a - b - c - d"
    assert ax.get_yticklabels()[0].get_text() == "DiD: ot \u2212 contrastive\nn50 \u2212 n5 (shared_5)"
    plt.close(ax.figure)

    est = pd.DataFrame({"arm": ["zero-shot", "ot_best", "missing"], "estimate": [60.0, 58.0, np.nan],
                        "lo": [59.0, 56.5, np.nan], "hi": [61.0, 59.5, np.nan]})
    ax = plots.plot_estimates(est, colors={"ot_best": "#D55E00"}, reference="zero-shot")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["zero-shot", "ot_best", "missing"]  # top to bottom
    intervals = [tuple(line.get_xdata()) for line in ax.lines if line.get_marker() in ("None", "", None)
                 and line.get_linestyle() == "-"]
    assert intervals[:2] == [(59.0, 61.0), (56.5, 59.5)]
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and tuple(dashed[0].get_xdata()) == (60.0, 60.0)  # the reference arm
    assert [line.get_color() for line in ax.lines if line.get_marker() == "o"][1] == "#D55E00"
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="need columns"):
        plots.plot_estimates(est.drop(columns="lo"))
    with pytest.raises(ValueError, match="no estimates"):
        plots.plot_estimates(est.iloc[:0])


def test_plot_eps_sweep_lines_marks_and_errors():
    sweep = pd.DataFrame({"eps": [0.1, 0.01, 1.0], "plan_entropy": [0.9, 0.6, 0.99],
                          "cost_ratio": [0.8, 0.5, 0.98]})  # unsorted on purpose
    ax = plots.plot_eps_sweep(sweep, mark=0.02)
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0.01, 0.1, 1.0])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.6, 0.9, 0.99])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.5, 0.8, 0.98])
    assert ax.get_xscale() == "log"
    # the near-uniform threshold (horizontal) and the marked eps (vertical)
    assert [tuple(line.get_ydata()) for line in ax.lines[2:3]] == [(0.95, 0.95)]
    assert tuple(ax.lines[3].get_xdata()) == (0.02, 0.02)
    assert "eps = 0.02" in [t.get_text() for t in ax.texts]
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="cost_ratio"):
        plots.plot_eps_sweep(sweep.drop(columns="cost_ratio"))


# --------------------------------------------------------------------------- scripts (issue 14, bug 7)

SCRIPTS = {"hin_Deva": "Noto Sans Devanagari", "zho_Hans": "Noto Sans CJK SC", "arb_Arab": "Noto Sans Arabic",
           "amh_Ethi": "Noto Sans Ethiopic", "tha_Thai": "Noto Sans Thai"}


def _missing_glyphs(draw) -> list[str]:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        draw()
    return sorted({str(w.message) for w in caught if "missing from font" in str(w.message)})


@pytest.mark.slow  # ~13 s
def test_plans_with_non_latin_tokens_have_every_glyph(tmp_path, data_root, default_model_dir):
    """Bug 7: Hindi, Chinese, Arabic, Amharic and Thai tokens (the model's own sub-words of a
    FLORES sentence) are drawn with real glyphs in PNG, PDF and SVG, not empty boxes."""
    from transformers import AutoTokenizer

    from optical_viz import data

    tok = AutoTokenizer.from_pretrained(default_model_dir)
    en = tok.tokenize(data.load_flores("eng_Latn", split="dev", root=data_root).texts[0])[:12]
    rng = np.random.default_rng(0)

    def draw():
        with plots.publication_style():
            for lang in SCRIPTS:
                tokens = tok.tokenize(data.load_flores(lang, split="dev", root=data_root).texts[0])[:12]
                ax = plots.plot_plan(rng.dirichlet(np.ones(len(en)), size=len(tokens)), tokens, en, title=lang)
                plots.save_figure(ax.figure, tmp_path / lang)

    missing = _missing_glyphs(draw)
    assert missing == [], f"{missing[:3]}...: run `make setup` (Debian: apt-get install fonts-noto-core fonts-noto-cjk)"
    assert len(list(tmp_path.glob("*.svg"))) == len(SCRIPTS)
    assert set(SCRIPTS.values()) <= set(plots.font_families())


def test_arabic_is_shaped():
    """Lam followed by alef is drawn as the one lam-alef ligature (libraqm shaping, bundled with
    matplotlib >= 3.11), narrower than the two isolated letters side by side; unshaped text
    would be exactly as wide."""
    with plots.publication_style(font_size=40):
        fig = plt.figure()
        r = fig.canvas.get_renderer()
        width = lambda s: fig.text(0, 0, s).get_window_extent(r).width
        assert width("\u0644\u0627") < 0.9 * (width("\u0644") + width("\u0627"))


def test_plot_token_flow_draws_one_line_per_objective_and_the_teacher():
    from optical_viz.geometry import TokenFlow

    spread = pd.DataFrame({"objective": ["entropic"] * 3 + ["divergence"] * 3, "step": [0, 5, 10] * 2,
                           "spread": [0.5, 0.7, 0.8, 0.5, 0.45, 0.4], "loss": [0.0] * 6})
    ax = plots.plot_token_flow(TokenFlow(spread, teacher_spread=0.4))
    assert [l.get_label() for l in ax.lines] == ["entropic", "divergence", "teacher"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.5, 0.7, 0.8])
    assert ax.lines[2].get_ydata()[0] == 0.4
    with pytest.raises(ValueError, match="objective, step, spread"):
        plots.plot_token_flow(TokenFlow(spread.drop(columns="spread"), 0.4))


def test_missing_glyphs_become_one_list_not_a_warning_per_draw(recwarn):
    """Issue 25: an emoji in `align` gave a long "Glyph ... missing from font(s) <32 fonts>"
    warning per draw; the characters are collected for one short note."""
    import io
    import warnings

    robot = "\N{ROBOT FACE}"  # in no font the project installs
    with plots.publication_style(), plots.missing_glyphs() as missing:
        fig, ax = plt.subplots()
        ax.set_title(f"I {robot} cats {robot}")
        fig.savefig(io.BytesIO(), format="png")
        fig.savefig(io.BytesIO(), format="png")
        warnings.warn("another warning")  # passes through
    plt.close(fig)
    assert missing == [robot]
    assert [str(w.message) for w in recwarn] == ["another warning"]
