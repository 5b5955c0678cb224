"""The README's result tables are the report CSVs, rendered; and the rendering reads right."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from optical_viz.experiments import protocol_tables as pt
from optical_viz.experiments.protocol_report import RQ1_METRICS

ROOT = Path(__file__).resolve().parents[1]
# the tables the committed protocol results must have (the README shows each)
FULL_TABLES = {"rq1_arms", "rq1_contrasts", "rq2_summary", "rq2_contrasts", "rq2_interaction", "rq2_directions"}


def test_every_table_of_results_full_stands_in_the_readme_as_rendered():
    tables = pt.readme_tables(ROOT / "results" / "full")
    assert FULL_TABLES <= set(tables), f"results/full lacks reports: {FULL_TABLES - set(tables)}"
    readme = (ROOT / "README.md").read_text()
    for name, table in tables.items():
        # a number edited by hand, or a report rebuilt without updating the README, fails here
        assert table in readme, f"README's {name} table differs from results/full (print them: python -m optical_viz.experiments.protocol_tables)"


def _contrast(a="ot", b="contrastive", estimate=-2.0, p_holm=0.01, equivalent=False):
    return {"a": a, "b": b, "estimate": estimate, "lo": estimate - 1, "hi": estimate + 1, "p_holm": p_holm,
            "tost_lo": estimate - 0.8, "tost_hi": estimate + 0.8, "equivalent": equivalent}


@pytest.mark.parametrize("row, expected", [
    (_contrast(estimate=-2.0, p_holm=0.01), "ot worse"),
    (_contrast(estimate=+2.0, p_holm=0.01), "ot better"),
    (_contrast(estimate=-2.0, p_holm=0.2), "inconclusive"),
    (_contrast(estimate=0.1, p_holm=0.9, equivalent=True), "equivalent within \u00b11"),
    (_contrast(a="DiD ot - contrastive", b="n50 - n5 (shared_5)", estimate=3.0), "ot gains with size"),
    (_contrast(a="DiD ot - contrastive", b="n50 - n5 (shared_5)", estimate=-3.0), "ot loses with size"),
])
def test_reading_follows_holm_and_tost(row, expected):
    assert pt.reading(row) == expected


def test_contrasts_table_formats_signs_p_values_and_did_labels():
    frame = pd.DataFrame([_contrast(estimate=2.6, p_holm=0.0004),
                          _contrast(a="DiD ot - contrastive", b="n50 - n5 (shared_5)", estimate=-0.04, p_holm=0.5)])
    lines = pt.contrasts_table(frame).splitlines()
    assert lines[0] == "| contrast | difference [95% CI] | p (Holm) | TOST 90% CI | reading |"
    assert lines[2] == "| ot \u2212 contrastive | +2.6 [+1.6, +3.6] | < 0.001 | [+1.8, +3.4] | ot better |"
    assert lines[3].startswith("| DiD (ot \u2212 contrastive): n50 \u2212 n5, shared_5 | -0.0 [-1.0, +1.0] | 0.500 |")
    with pytest.raises(ValueError, match="not finished"):
        pt.contrasts_table(frame.iloc[:0])


def test_rq1_arms_table_one_row_per_arm_primary_bold_aer_without_interval():
    rows = []
    for arm, setting, tried, seeds in [("zero-shot", None, 0, 1), ("ot_best", "ot-divergence-lr0.0001", 8, 3)]:
        for metric in RQ1_METRICS:
            rows.append({"arm": arm, "metric": metric, "estimate": 60.04, "lo": 58.0, "hi": 62.0, "seeds": seeds,
                         "configs_tried": tried, "setting": setting})
        rows.append({"arm": arm, "metric": "aer_roen_sinkhorn", "estimate": 70.0, "lo": 69.0, "hi": 71.0, "seeds": seeds})
    lines = pt.rq1_arms_table(pd.DataFrame(rows)).splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| zero-shot | \u2013 (\u2013) | 1 | **60.0** [58.0, 62.0] |")
    assert lines[3].startswith("| ot_best | ot-divergence-lr0.0001 (8) | 3 |")
    assert lines[3].endswith("|  | 70.0 |")  # no similarity AER row: an empty cell; Sinkhorn AER: no interval
    assert set(RQ1_METRICS) <= set(pt.RQ1_COLUMNS)  # every RQ1 metric of the report has its column


def test_rq2_table_deltas_per_group_and_zero_shot_in_parentheses():
    rows = []
    for arm, delta in [("zero-shot", None), ("ot_best", -1.25)]:
        for group, est in [("trained", 80.0), ("shared_5", 70.0), ("unseen", 60.0)]:
            d = {} if delta is None else {"delta_zero_shot": delta, "delta_lo": delta - 1, "delta_hi": delta + 1}
            rows.append({"size": 5, "group": group, "arm": arm, "estimate": est, "lo": est - 2, "hi": est + 2, **d})
    lines = pt.rq2_table(pd.DataFrame(rows)).splitlines()
    assert lines[2] == "| 5 | zero-shot | 80.0 [78.0, 82.0] | (80.0) | (70.0) | (60.0) |"
    assert lines[3] == "| 5 | ot_best | 80.0 [78.0, 82.0] | -1.2 [-2.2, -0.2] | -1.2 [-2.2, -0.2] | -1.2 [-2.2, -0.2] |"


def test_interaction_table_reads_each_row_on_its_unadjusted_p():
    base = {"group": "shared_5", "reference_size": 5, "a": "ot_best", "b": "contrastive_best"}
    rows = [{**base, "size": 10, "estimate": 0.5, "lo": -0.4, "hi": 0.9, "p_value": 0.4, "equivalent": True},
            {**base, "size": 20, "estimate": -0.3, "lo": -3.1, "hi": 2.7, "p_value": 0.8, "equivalent": False},
            {**base, "size": 50, "estimate": 2.5, "lo": 1.0, "hi": 4.0, "p_value": 0.01, "equivalent": False}]
    lines = pt.interaction_table(pd.DataFrame(rows)).splitlines()
    assert lines[0].endswith("| DiD of ot_best \u2212 contrastive_best [95% CI] | p (unadjusted) | reading |")
    assert lines[2] == "| shared 5 | 10 vs 5 | +0.5 [-0.4, +0.9] | 0.400 | equivalent within \u00b11 |"
    assert lines[3].endswith("| 0.800 | inconclusive |")
    assert lines[4].endswith("| 0.010 | ot_best gains with size |")
    with pytest.raises(ValueError, match="not finished"):
        pt.interaction_table(pd.DataFrame())


def test_directions_table_one_row_per_size_and_direction_one_column_per_pair():
    rows = [{"size": size, "direction": d, "a": a, "b": b, "estimate": est, "lo": est - 1, "hi": est + 1, "p_value": 0.5}
            for size in (5, 50) for d in ("xx->en", "en->xx")
            for a, b, est in [("ot_best", "contrastive_best", -5.0), ("ot_best", "zero-shot", 0.3)]]
    lines = pt.directions_table(pd.DataFrame(rows[:-1])).splitlines()  # the last pair of the last row missing
    assert lines[0] == ("| languages | direction | ot_best \u2212 contrastive_best [95% CI] "
                        "| ot_best \u2212 zero-shot [95% CI] |")
    assert lines[2] == "| 5 | L->eng | -5.0 [-6.0, -4.0] | +0.3 [-0.7, +1.3] |"
    assert lines[5] == "| 50 | eng->L | -5.0 [-6.0, -4.0] |  |"
    with pytest.raises(ValueError, match="not finished"):
        pt.directions_table(pd.DataFrame())
