"""Widget callbacks, driven without a browser: set a control's value, check the library
call it made and the figure it drew."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from optical_viz import widgets as ow  # noqa: E402


@dataclass
class FakeAlignment:
    src_tokens: list
    tgt_tokens: list
    plan: np.ndarray
    src_words: list
    tgt_words: list
    word_links: set
    token_links: set
    method: str
    eps: float
    layer: int


@dataclass
class FakeAligner:
    """Records the calls; the plan sharpens as eps shrinks (like entropic OT)."""

    calls: list = field(default_factory=list)

    def __call__(self, encoder, src, tgt, *, method, eps, layer, **kw):
        self.calls.append(dict(src=src, tgt=tgt, method=method, eps=eps, layer=layer, **kw))
        sw, tw = src.split(), tgt.split()
        t, s = len(sw), len(tw)
        cost = np.abs(np.arange(t)[:, None] / max(t - 1, 1) - np.arange(s)[None, :] / max(s - 1, 1))
        plan = np.exp(-cost / (1e-3 if method == "emd" else eps))
        plan /= plan.sum()
        links = {(i, int(plan[i].argmax())) for i in range(t)}
        return FakeAlignment(sw, tw, plan, sw, tw, links, links, method, eps, layer)


@dataclass
class Gold:
    src: list
    tgt: list
    sure: set
    possible: set


def fake_aer(pred, gold):
    pred = set(pred)
    return 1 - (len(pred & gold.sure) + len(pred & gold.possible)) / (len(pred) + len(gold.sure))


class FakeEncoder:
    num_layers = 12


PAIRS = {
    "enfr": [("the cat sleeps", "le chat dort"), ("a b c d", "w x y z v")],
    "roen": [("un doi", "one two")],
}
GOLD = {"enfr": [Gold(["the", "cat", "sleeps"], ["le", "chat", "dort"], {(0, 0), (1, 1), (2, 2)}, {(0, 0), (1, 1), (2, 2)}),
                 Gold(list("abcd"), list("wxyzv"), {(0, 0)}, {(0, 0), (3, 4)})]}


@pytest.fixture
def explorer():
    aligner = FakeAligner()
    ex = ow.AlignmentExplorer(FakeEncoder(), PAIRS, GOLD, method="sinkhorn", eps=0.1, extraction="threshold",
                              align_fn=aligner, aer_fn=fake_aer)
    return ex, aligner


def test_alignment_explorer_draws_on_creation(explorer):
    ex, aligner = explorer
    from optical_viz.options import AlignConfig

    assert aligner.calls == [dict(src="the cat sleeps", tgt="le chat dort", method="sinkhorn", eps=0.1, layer=AlignConfig().layer,
                                  extraction="threshold")]
    assert ex.error is None and ex.n_updates == 1
    assert ex.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    heat = ex.figure.axes[0]
    np.testing.assert_allclose(heat.images[0].get_array(), ex.alignment.plan)
    assert ex.aer == pytest.approx(0.0)  # the diagonal links are the gold ones
    assert "AER = 0.000" in ex.info.value


def test_eps_slider_realigns_and_changes_the_heatmap(explorer):
    ex, aligner = explorer
    before_png, before_plan = ex.image.value, ex.alignment.plan
    ex.eps.value = 1.0
    assert aligner.calls[-1]["eps"] == pytest.approx(1.0)
    assert ex.n_updates == 2
    assert ex.image.value != before_png
    shown = np.asarray(ex.figure.axes[0].images[0].get_array())
    np.testing.assert_allclose(shown, ex.alignment.plan)
    assert shown.max() < before_plan.max()  # more entropy, flatter plan


def test_layer_and_solver_controls(explorer):
    ex, aligner = explorer
    ex.layer.value = 3
    assert aligner.calls[-1]["layer"] == 3
    ex.solver.value = "emd"
    assert aligner.calls[-1]["method"] == "emd"
    assert ex.eps.disabled
    assert "eps" not in ex.info.value
    ex.solver.value = "unbalanced"
    assert aligner.calls[-1]["method"] == "unbalanced" and not ex.eps.disabled
    ex.solver.value = "divergence"
    assert aligner.calls[-1]["method"] == "divergence" and not ex.eps.disabled


def test_language_change_resets_the_sentence_once(explorer):
    ex, aligner = explorer
    ex.sentence.value = 1
    assert aligner.calls[-1]["src"] == "a b c d"
    assert ex.aer == pytest.approx(fake_aer(ex.alignment.word_links, GOLD["enfr"][1]))
    n = len(aligner.calls)
    ex.language.value = "roen"
    assert len(aligner.calls) == n + 1  # one alignment, not one per control touched
    assert aligner.calls[-1]["src"] == "un doi"
    assert [v for _, v in ex.sentence.options] == [0]
    assert ex.aer is None and "AER" not in ex.info.value  # no gold for roen


def test_word_links_panel_shows_hits_misses_and_false_links(explorer):
    ex, aligner = explorer
    words = ex.figure.axes[1]  # [heatmap, word links, colour bar]
    hits, misses, false = words.collections
    pred, g = ex.alignment.word_links, GOLD["enfr"][0]
    assert len(hits.get_segments()) == len(pred & g.possible)
    assert len(misses.get_segments()) == len(g.sure - pred)
    assert len(false.get_segments()) == len(pred - g.possible)
    assert f"AER {ex.aer:.3f}" in words.get_title()
    # pair 1: gold sure {(0, 0)}, possible adds (3, 4); the fake aligner links each row to its argmax
    ex.sentence.value = 1
    pred, g = ex.alignment.word_links, GOLD["enfr"][1]
    hits, misses, false = ex.figure.axes[1].collections
    assert {tuple(map(tuple, seg)) for seg in hits.get_segments()}  # (0, 0) and (3, 4) are hits
    assert len(hits.get_segments()) == len(pred & g.possible) == 2
    assert len(misses.get_segments()) == 0 and len(false.get_segments()) == len(pred) - 2 == 2
    colors = [tuple(c.get_colors()[0]) for c in ex.figure.axes[1].collections if len(c.get_segments())]
    assert len(set(colors)) == 2  # hits and false links differ in colour
    assert f"AER = {ex.aer:.3f}" in ex.info.value and ex.aer == pytest.approx(fake_aer(pred, g))


def test_extraction_control_realigns(explorer):
    ex, aligner = explorer
    ex.extraction.value = "itermax"
    assert aligner.calls[-1]["extraction"] == "itermax" and "itermax" in ex.info.value
    ex.solver.value = "partial"
    assert ex.eps.disabled and aligner.calls[-1]["method"] == "partial"
    ex.solver.value = "similarity"
    assert not ex.eps.disabled


def test_links_vs_gold_by_hand():
    from optical_viz.plots import GOLD_LINK_COLORS, plot_links_vs_gold

    ax = plot_links_vs_gold({(0, 0), (1, 2), (2, 1)}, {(0, 0), (1, 1)}, {(2, 1)}, ["a", "b", "c"], ["x", "y", "z"])
    hits, misses, false = ax.collections
    # hits: (0, 0) sure and (2, 1) possible; miss: (1, 1); false: (1, 2)
    assert [len(c.get_segments()) for c in ax.collections] == [2, 1, 1]
    assert false.get_segments()[0].tolist() == [[0.5, 1.0], [1.0, 0.0]]  # source b (x=.5) -> target z (x=1)
    import matplotlib.colors as mcolors

    assert mcolors.to_hex(misses.get_colors()[0]) == GOLD_LINK_COLORS["miss"].lower()
    with pytest.raises(ValueError, match="outside 3 x 3 words"):
        plot_links_vs_gold({(3, 0)}, set(), set(), ["a", "b", "c"], ["x", "y", "z"])


def test_alignment_explorer_shows_errors_and_stays_usable():
    def failing(encoder, src, tgt, **kw):
        raise ValueError(f"eps={kw['eps']} too small")

    ex = ow.AlignmentExplorer(FakeEncoder(), PAIRS, align_fn=failing, aer_fn=fake_aer)
    assert isinstance(ex.error, ValueError)
    assert "too small" in ex.info.value and ex.n_updates == 0


def test_alignment_explorer_validates_input():
    with pytest.raises(ValueError, match="non-empty"):
        ow.AlignmentExplorer(FakeEncoder(), {"x": []}, align_fn=FakeAligner(), aer_fn=fake_aer)
    with pytest.raises(ValueError, match="method"):
        ow.AlignmentExplorer(FakeEncoder(), PAIRS, method="ot", align_fn=FakeAligner(), aer_fn=fake_aer)
    with pytest.raises(ValueError, match=r"gold\['roen'\] has 2 entries but pairs\['roen'\] has 1"):
        ow.AlignmentExplorer(FakeEncoder(), PAIRS, {"roen": GOLD["enfr"]}, align_fn=FakeAligner(), aer_fn=fake_aer)


def test_start_picks_the_first_pair_shown():
    aligner = FakeAligner()
    ex = ow.AlignmentExplorer(FakeEncoder(), PAIRS, GOLD, start=("enfr", 1), align_fn=aligner, aer_fn=fake_aer)
    assert len(aligner.calls) == 1 and aligner.calls[0]["src"] == "a b c d"
    assert (ex.language.value, ex.sentence.value) == ("enfr", 1)
    with pytest.raises(ValueError, match="start"):
        ow.AlignmentExplorer(FakeEncoder(), PAIRS, start=("roen", 5), align_fn=aligner, aer_fn=fake_aer)


def test_from_gold_builds_pairs_from_words():
    aligner = FakeAligner()
    ex = ow.AlignmentExplorer.from_gold(FakeEncoder(), GOLD, n=1, align_fn=aligner, aer_fn=fake_aer)
    assert ex.pairs == {"enfr": [("the cat sleeps", "le chat dort")]}
    assert ex.aer == pytest.approx(0.0)


# --------------------------------------------------------------------------- projections


@pytest.fixture
def embeddings():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(10, 8))
    return {
        "before": {"eng_Latn": base, "yor_Latn": base + 3.0, "hau_Latn": base - 3.0},
        "after": {"eng_Latn": base, "yor_Latn": base + 0.1, "hau_Latn": base - 0.1},
    }


def test_projection_explorer_projects_selected_languages(embeddings):
    from optical_viz.geometry import project

    calls = []

    def recording(x, **kw):
        calls.append((x.shape, kw))
        return project(x, **kw)

    ex = ow.ProjectionExplorer(embeddings, project_fn=recording)
    assert calls[-1][0] == (30, 8) and calls[-1][1]["method"] == "pca"
    assert calls[-1][1]["langs"] == ["eng_Latn"] * 10 + ["yor_Latn"] * 10 + ["hau_Latn"] * 10
    ax = ex.figure.axes[0]
    assert len(ax.collections) == 4  # translation links + one scatter per language
    assert len(ax.collections[0].get_segments()) == 20
    spread_before = np.ptp(ex.projection.coords[:, 0])

    ex.languages.value = ("eng_Latn", "yor_Latn")
    assert calls[-1][0] == (20, 8)
    assert len(ex.figure.axes[0].collections) == 3

    ex.model.value = "after"
    assert calls[-1][0] == (20, 8)
    # after distillation the translations sit together: pairs are short in the projection
    xy = ex.projection.coords
    gaps_after = np.linalg.norm(xy[:10] - xy[10:], axis=1).mean()
    assert gaps_after < 0.5 * spread_before

    n = len(calls)
    ex.model.value = "before"  # cached
    assert len(calls) == n
    ex.method.value = "tsne"
    assert calls[-1][1]["method"] == "tsne" and calls[-1][1]["seed"] == 0


def test_projection_explorer_validates(embeddings):
    with pytest.raises(ValueError, match="same languages"):
        ow.ProjectionExplorer({"a": {"x": np.ones((3, 2))}, "b": {"y": np.ones((3, 2))}})
    ex = ow.ProjectionExplorer(embeddings)
    ex.languages.value = ()
    assert "select at least one" in ex.info.value


# --------------------------------------------------------------------------- training monitor


def _log(path, step, **extra):
    with path.open("a") as f:
        f.write(json.dumps({"step": step, "loss": 1 / (1 + step), "loss_ot": 0.5 / (1 + step), **extra}) + "\n")


def test_training_monitor_refresh_draws_new_records(tmp_path):
    mon = ow.TrainingMonitor(tmp_path / "run")
    assert mon.refresh() is True and mon.figure is None  # no metrics yet
    metrics = tmp_path / "run" / "metrics.jsonl"
    _log(metrics, 0, heldout_cosine=0.5)
    _log(metrics, 1)
    assert mon.refresh() is True
    assert mon.refresh() is False  # nothing new, no redraw
    loss_ax, eval_ax = mon.figure.axes
    assert [line.get_label() for line in loss_ax.lines] == ["loss", "loss_ot"]
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), [1.0, 0.5])
    assert [line.get_label() for line in eval_ax.lines] == ["heldout_cosine"]
    assert "step 1" in mon.info.value and "loss 0.5000" in mon.info.value


def test_training_monitor_follows_a_run_in_the_background(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    with ow.TrainingMonitor(tmp_path, interval=0.05) as mon:
        for step in range(5):
            _log(metrics, step)
            if step in (1, 3):  # redrawn while the run is going, without a call from us
                n, deadline = mon.n_updates, time.monotonic() + 20
                while mon.n_updates == n and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert mon.n_updates > n
    assert mon._thread is None
    np.testing.assert_allclose(mon.figure.axes[0].lines[0].get_xdata(), np.arange(5))
    with pytest.raises(ValueError, match="interval"):
        ow.TrainingMonitor(tmp_path, interval=0)


def test_heatmap_is_drawn_for_high_density_screens_and_shown_at_css_size(explorer):
    """The PNG has PIXEL_RATIO device pixels per CSS pixel and is displayed at its CSS width
    (it was drawn at 490 px and stretched by the browser)."""
    from PIL import Image
    import io

    ex, _ = explorer
    width, _ = Image.open(io.BytesIO(ex.image.value)).size
    css = int(ex.image.layout.width.removesuffix("px"))
    assert width == pytest.approx(css * ow.PIXEL_RATIO, abs=2) and css >= 400
    assert ex.image.layout.height == "auto"


def test_eps_readout_and_status_line_agree(explorer):
    """The slider showed 0.001 while the status line said 0.00112."""
    ex, aligner = explorer
    ex.eps.value = 0.00112
    readout = format(ex.eps.value, ex.eps.readout_format)
    assert readout == "0.00112" and f"eps = {readout}," in ex.info.value
