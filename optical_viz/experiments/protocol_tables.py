"""The protocol reports as the Markdown tables of the README's Results section.

The README's numbers are not typed by hand: each table is rendered from a report CSV of
:mod:`optical_viz.experiments.protocol_report` by a function here, and
``tests/test_protocol_tables.py`` checks that every rendered table of ``results/full`` stands
in the README as rendered. ``python -m optical_viz.experiments.protocol_tables results/full``
prints them all.

Formats: an estimate with its 95% interval reads ``62.4 [58.7, 66.4]``; a difference is signed
(``+2.6 [+1.3, +3.8]``); a p value under 0.001 reads ``< 0.001``. A contrast reads
"equivalent within ±m" when TOST holds, "a better" / "a worse" when Holm rejects,
"inconclusive" otherwise.
"""
from __future__ import annotations

import sys

import pandas as pd

from optical_viz.experiments.protocol_report import load_protocol_reports

# rq1_summary metric -> column title, in table order (the primary metric bold); every
# protocol_report.RQ1_METRICS name has one (tests/test_protocol_tables.py checks)
RQ1_COLUMNS = {
    "recall@1": "R@1 (primary)",
    "mrr@10": "MRR@10",
    "xquad_paragraphs_recall@1": "XQuAD para. R@1",
    "maxsim_recall@1": "MaxSim R@1",
    "english_control_recall@1": "en->en R@1",
    "aer_roen_similarity": "AER sim.",
    "aer_roen_sinkhorn": "AER Sinkhorn",
}
RQ2_GROUPS = {"trained": "trained", "shared_5": "shared 5", "unseen": "unseen"}
DIRECTIONS = {"xx->en": "L->eng", "en->xx": "eng->L"}
MINUS = "\u2212"


def interval_text(est: float, lo: float, hi: float, signed: bool = False) -> str:
    f = "{:+.1f}" if signed else "{:.1f}"
    return f"{f.format(est)} [{f.format(lo)}, {f.format(hi)}]"


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join([_row(header), "|" + "---|" * len(header), *map(_row, rows)])


def contrast_label(a: str, b: str) -> str:
    """``a − b``; the difference in differences of ``rq2_contrasts`` ("DiD x - y",
    "n50 - n5 (shared_5)") as ``DiD (x − y): n50 − n5, shared_5``."""
    if a.startswith("DiD "):
        return f"DiD ({a[4:]}): {b}".replace(" - ", f" {MINUS} ").replace(" (shared", ", shared").rstrip(")")
    return f"{a} {MINUS} {b}"


def reading(row, margin: float = 1.0, alpha: float = 0.05) -> str:
    """What a contrast row says: equivalent (TOST), better / worse (Holm), or inconclusive.
    A difference in differences "DiD a - b" that Holm rejects reads "a gains (loses) with size"."""
    if bool(row["equivalent"]):
        return f"equivalent within \u00b1{margin:g}"
    if not row["p_holm"] < alpha:
        return "inconclusive"
    a = str(row["a"])
    if a.startswith("DiD "):
        return f"{a[4:].split(' - ')[0]} {'gains' if row['estimate'] > 0 else 'loses'} with size"
    return f"{a} {'better' if row['estimate'] > 0 else 'worse'}"


def rq1_arms_table(summary: pd.DataFrame) -> str:
    """One row per arm: its setting and dev budget, then every RQ1 metric with its interval
    (AER: the mean over seeds only)."""
    if summary.empty:
        raise ValueError("rq1_summary is empty: the RQ1 test stage has not run")
    rows = []
    for arm, g in summary.groupby("arm", sort=False):
        by = g.set_index("metric")
        head = by.loc["recall@1"]
        tried = head["configs_tried"]
        setting = head["setting"] if isinstance(head["setting"], str) else "\u2013"
        tried = "\u2013" if pd.isna(tried) or int(tried) == 0 else str(int(tried))
        cells = [arm, f"{setting} ({tried})", str(int(head["seeds"]))]
        for metric in RQ1_COLUMNS:
            if metric not in by.index:
                cells.append("")
                continue
            r = by.loc[metric]
            if metric.startswith("aer"):
                cells.append(f"{r['estimate']:.1f}")
            else:
                text = interval_text(r["estimate"], r["lo"], r["hi"])
                cells.append(f"**{text.split(' ', 1)[0]}** {text.split(' ', 1)[1]}" if metric == "recall@1" else text)
        rows.append(cells)
    return markdown_table(["arm", "setting (configs tried)", "seeds", *RQ1_COLUMNS.values()], rows)


def contrasts_table(contrasts: pd.DataFrame, margin: float = 1.0) -> str:
    """A Holm family (``rq1_contrasts`` or ``rq2_contrasts``): difference, p, TOST interval, reading."""
    if contrasts.empty:
        raise ValueError("no contrasts: the test stage of this question has not finished")
    rows = [[contrast_label(r["a"], r["b"]), interval_text(r["estimate"], r["lo"], r["hi"], signed=True), _p(r["p_holm"]),
             f"[{r['tost_lo']:+.1f}, {r['tost_hi']:+.1f}]", reading(r, margin)]
            for _, r in contrasts.iterrows()]
    return markdown_table(["contrast", "difference [95% CI]", "p (Holm)", "TOST 90% CI", "reading"], rows)


def rq2_table(summary: pd.DataFrame) -> str:
    """Size x arm: R@1 on the trained languages, then the difference to zero-shot on the
    trained, the shared-5 and the unseen languages (the zero-shot row: its R@1 in each group)."""
    if summary.empty:
        raise ValueError("rq2_summary is empty: the RQ2 test stage has not run")
    rows = []
    for (size, arm), g in summary.groupby(["size", "arm"], sort=False):
        by = g.set_index("group")
        cells = [str(size), arm, interval_text(*by.loc["trained", ["estimate", "lo", "hi"]])]
        for group in RQ2_GROUPS:
            r = by.loc[group] if group in by.index else None
            if r is None:
                cells.append("")
            elif arm == "zero-shot":
                cells.append(f"({r['estimate']:.1f})")
            elif pd.isna(r["delta_zero_shot"]):
                cells.append("")
            else:
                cells.append(interval_text(r["delta_zero_shot"], r["delta_lo"], r["delta_hi"], signed=True))
        rows.append(cells)
    header = ["languages", "arm", "R@1 trained", *(f"\u0394 zero-shot, {t}" for t in RQ2_GROUPS.values())]
    return markdown_table(header, rows)


def interaction_table(interaction: pd.DataFrame) -> str:
    """The method x size interaction: (a − b at size N) − (a − b at the reference size), per group.
    Its reading is :func:`reading` on the unadjusted p (these rows are descriptive; the Holm
    family holds only the n50 − n5 shared-5 row, in ``rq2_contrasts``)."""
    if interaction.empty:
        raise ValueError("rq2_interaction is empty: the RQ2 test stage has not finished")
    rows = [[RQ2_GROUPS.get(r["group"], r["group"]), f"{r['size']} vs {r['reference_size']}",
             interval_text(r["estimate"], r["lo"], r["hi"], signed=True), _p(r["p_value"]),
             reading({**r, "a": f"DiD {r['a']} - {r['b']}", "p_holm": r["p_value"]})]
            for _, r in interaction.iterrows()]
    a, b = interaction["a"].iloc[0], interaction["b"].iloc[0]
    return markdown_table(["languages", "sizes", f"DiD of {a} {MINUS} {b} [95% CI]", "p (unadjusted)", "reading"], rows)


def directions_table(directions: pd.DataFrame) -> str:
    """Size x direction (descriptive): each pair's paired difference on the trained languages,
    one column per pair, in the frame's order."""
    if directions.empty:
        raise ValueError("rq2_directions is empty: the RQ2 test stage has not finished")
    pairs = list(dict.fromkeys(zip(directions["a"], directions["b"])))
    rows = []
    for (size, direction), g in directions.groupby(["size", "direction"], sort=False):
        by = {(r["a"], r["b"]): r for _, r in g.iterrows()}
        cells = [str(size), DIRECTIONS.get(direction, direction)]
        cells += [interval_text(by[k]["estimate"], by[k]["lo"], by[k]["hi"], signed=True) if k in by else "" for k in pairs]
        rows.append(cells)
    return markdown_table(["languages", "direction", *(f"{a} {MINUS} {b} [95% CI]" for a, b in pairs)], rows)


def readme_tables(results_dir) -> dict[str, str]:
    """Every table whose report exists under ``results_dir``, by name."""
    r = load_protocol_reports(results_dir)
    out = {}
    if not r.rq1_summary.empty:
        out["rq1_arms"] = rq1_arms_table(r.rq1_summary)
    if not r.rq1_contrasts.empty:
        out["rq1_contrasts"] = contrasts_table(r.rq1_contrasts)
    if not r.rq2_summary.empty:
        out["rq2_summary"] = rq2_table(r.rq2_summary)
    if not r.rq2_contrasts.empty:
        out["rq2_contrasts"] = contrasts_table(r.rq2_contrasts)
    if not r.rq2_interaction.empty:
        out["rq2_interaction"] = interaction_table(r.rq2_interaction)
    if not r.rq2_directions.empty:
        out["rq2_directions"] = directions_table(r.rq2_directions)
    return out


if __name__ == "__main__":
    for name, table in readme_tables(sys.argv[1] if len(sys.argv) > 1 else "results/full").items():
        print(f"<!-- {name} -->\n{table}\n")
