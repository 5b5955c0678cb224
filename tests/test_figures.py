"""optical_viz.experiments.figures: the grid's figures drawn from a small synthetic
``aggregate(...)`` frame (no run, no model): which files, and each method in its colour.
(protocol_figures is tested with the protocol report, tests/test_protocol_report.py.)"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from optical_viz.experiments.figures import METHOD_COLORS, make_figures

METHODS = ("zero-shot", "mse", "ot")  # contrastive is absent: its colour must not appear


def _rows(question, langset, n_languages, task, eval_langs, direction, langs, level):
    """aggregate()'s rows of one evaluation: every method, each language and ``all``, two metrics."""
    rows = []
    for k, method in enumerate(METHODS):
        for lang in [*langs, "all"]:
            for metric in ("recall@1", "mrr@10"):
                value = level + 0.1 * k + (0.05 if metric == "mrr@10" else 0.0)
                rows.append(dict(question=question, langset=langset, n_languages=n_languages, method=method,
                                 evaluation=f"{task}.{eval_langs}", task=task, scoring="dense", eval_langs=eval_langs,
                                 lang=lang, direction=direction, metric=metric, value=value, ci_lo=value - 0.03,
                                 ci_hi=value + 0.03, n=50, seeds=2, seed_sd=0.01))
    return rows


@pytest.fixture(scope="module")
def methods_frame() -> pd.DataFrame:
    """RQ1-like (one language set) and RQ2-like (two sizes, trained and unseen languages)."""
    rows = _rows("rq1", "all", 2, "xquad-r", "trained", "xx->en", ["deu_Latn", "spa_Latn"], 0.4)
    rows += _rows("rq1", "all", 2, "flores", "unseen", "xx->en", ["fra_Latn"], 0.5)
    for langset, n in (("n5", 5), ("n10", 10)):
        for direction in ("xx->en", "en->xx"):
            rows += _rows("rq2", langset, n, "flores", "trained", direction, ["yor_Latn", "hau_Latn"], 0.2 + n / 100)
            rows += _rows("rq2", langset, n, "flores", "unseen", direction, ["fra_Latn"], 0.3)
    return pd.DataFrame(rows)


def _has_colour(image: np.ndarray, hex_colour: str, tol: int = 3, min_pixels: int = 20) -> bool:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image[..., :3].astype(int) - rgb).max(axis=-1) <= tol).sum()) >= min_pixels


def test_make_figures_writes_each_questions_figures_in_pdf_and_png(methods_frame, tmp_path):
    written = make_figures(methods_frame, tmp_path, "quick", titles={"rq1": "does OT help?"})
    stems = ["rq1_by_language", "rq1_average", "rq2_scaling_seen", "rq2_scaling_unseen"]
    assert sorted(p.name for p in written) == sorted(f"{s}.{ext}" for s in stems for ext in ("pdf", "png"))
    for path in written:
        assert path.parent == tmp_path and path.stat().st_size > 5000
        if path.suffix == ".pdf":
            assert path.read_bytes()[:5] == b"%PDF-"
        else:
            with Image.open(path) as image:
                assert image.format == "PNG" and min(image.size) > 200


def test_every_method_is_drawn_in_its_colour(methods_frame, tmp_path):
    written = {p.name: p for p in make_figures(methods_frame, tmp_path, "full")}
    for name in ("rq1_by_language.png", "rq1_average.png"):
        image = np.asarray(Image.open(written[name]).convert("RGB"))
        for method in METHODS:
            assert _has_colour(image, METHOD_COLORS[method]), (name, method)
        assert not _has_colour(image, METHOD_COLORS["contrastive"], min_pixels=1), name  # not in the frame
    image = np.asarray(Image.open(written["rq2_scaling_seen.png"]).convert("RGB"))
    assert all(_has_colour(image, METHOD_COLORS[m], min_pixels=5) for m in METHODS)


def test_a_frame_without_a_dense_trained_evaluation_has_no_by_language_figure(methods_frame, tmp_path):
    rq1 = methods_frame[(methods_frame["question"] == "rq1") & (methods_frame["eval_langs"] == "unseen")]
    assert [p.name for p in make_figures(rq1, tmp_path, "quick")] == ["rq1_average.pdf", "rq1_average.png"]
