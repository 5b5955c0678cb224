"""The RQ3 reports as the Markdown tables of the README's "RQ3: OPTICAL's regime" section.

As for RQ1 and RQ2 (:mod:`.protocol_tables`, whose formats these share), the README's RQ3
numbers are rendered, not typed: ``tests/test_optical_tables.py`` checks that every table
:func:`readme_tables` renders from ``results/optical`` stands in the README as rendered.
``python -m optical_viz.experiments.optical_tables`` prints them; ``--write README.md``
replaces each table that follows its ``<!-- name -->`` marker in the README (the first time,
put the marker and the printed table there by hand).

- ``rq3_dev``: ``tuning.csv``, one row per configuration, the dev score at each checkpoint
  (blank until scored) and the selected winner of each method whose tuning is complete.
- ``rq3_arms``: ``rq3_summary.csv``, one row per arm, Recall@1 [95% CI] per test set (the two
  primary sets first, estimates bold), AER of student against teacher tokens (mean over seeds).
- ``rq3_contrasts``: ``rq3_contrasts.csv``, the Holm family (:func:`.protocol_tables.contrasts_table`).
- ``rq3_scaling``: ``rq3_scaling.csv``, Recall@1 per arm and size in each language group, and
  each arm's difference from MSE pooled over the sizes (languages resampled as clusters).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from optical_viz.experiments.protocol_tables import MINUS, RQ2_GROUPS, contrasts_table, interval_text, markdown_table

# rq3_summary test set -> column title, in table order (the two primary sets first)
RQ3_SETS = {
    "xquad-r.test": "XQuAD-R L->en (P1)",
    "flores.test.low_resource": "FLORES L->eng, low-resource (P2)",
    "xquad.test": "XQuAD question->paragraph",
    "flores.test.unseen": "FLORES L->eng, unseen",
    "xquad-r.test.english": "en->en control",
    "aer.roen": "AER ro-en",
}
PRIMARY = ("xquad-r.test", "flores.test.low_resource")


def dev_table(tuning: pd.DataFrame, checkpoints: list[int], selected: dict[str, str]) -> str:
    """One row per configuration of ``tuning.csv``: method, configuration (``**(selected)**``
    for ``selected[method]``, a variant name), dev score at each checkpoint, blank until scored."""
    if tuning.empty:
        raise ValueError("tuning.csv is empty: the RQ3 dev stage has not started")
    rows = []
    for _, r in tuning.iterrows():
        name = r["variant"].removeprefix(f"{r['method']}-")
        if selected.get(r["method"]) == r["variant"]:
            name += " **(selected)**"
        cells = [r["method"], name]
        for c in checkpoints:
            v = r.get(f"dev@{c}")
            cells.append("" if v is None or pd.isna(v) else f"{v:.1f}")
        rows.append(cells)
    header = ["method", "configuration", f"dev @{checkpoints[0]}", *(f"@{c}" for c in checkpoints[1:])]
    return markdown_table(header, rows)


def arms_table(summary: pd.DataFrame) -> str:
    """One row per arm: Recall@1 [95% CI] on each test set it has, AER (mean over seeds), seeds."""
    if summary.empty:
        raise ValueError("rq3_summary is empty: the RQ3 test stage has not run")
    rows = []
    for arm, g in summary.groupby("arm", sort=False):
        by = g.set_index("set")
        cells = [arm, str(int(by["seeds"].max()))]
        for name in RQ3_SETS:
            if name not in by.index:
                cells.append("")
            elif name == "aer.roen":
                cells.append(f"{by.loc[name, 'estimate']:.1f}")
            else:
                est, rest = interval_text(*by.loc[name, ["estimate", "lo", "hi"]]).split(" ", 1)
                cells.append(f"**{est}** {rest}" if name in PRIMARY else f"{est} {rest}")
        rows.append(cells)
    return markdown_table(["arm", "seeds", *RQ3_SETS.values()], rows)


def scaling_table(scaling: pd.DataFrame) -> str:
    """Per language group and arm: Recall@1 [95% CI] at each size, and the arm's difference from
    MSE pooled over the sizes (languages resampled as clusters; blank for MSE itself)."""
    if scaling.empty:
        raise ValueError("rq3_scaling is empty: the RQ3 scaling stage has not run")
    per_size = scaling[scaling["size"].notna()]
    sizes = sorted(int(s) for s in per_size["size"].unique())
    pooled = {(r["group"], r["arm"].split(" - mse")[0]): r for _, r in scaling[scaling["size"].isna()].iterrows()}
    rows = []
    for (group, arm), a in per_size.groupby(["group", "arm"], sort=False):
        by = a.set_index(a["size"].astype(int))
        cells = [RQ2_GROUPS.get(group, group), arm]
        cells += [interval_text(*by.loc[z, ["estimate", "lo", "hi"]]) if z in by.index else "" for z in sizes]
        p = pooled.get((group, arm))
        cells.append("" if p is None else interval_text(p["estimate"], p["lo"], p["hi"], signed=True))
        rows.append(cells)
    return markdown_table(["group", "arm", *(f"{z} languages" for z in sizes), f"{MINUS} mse, pooled over sizes"], rows)


def readme_tables(results_dir, plan=None) -> dict[str, str]:
    """Every RQ3 table whose report exists under ``results_dir``, by name. ``plan``
    (:func:`.optical_stages.load_plan`, default the full one) gives the checkpoints and the
    selection rule of the dev table."""
    from optical_viz.experiments import optical_stages as O

    results_dir = Path(results_dir)
    plan = plan or O.load_plan("full")
    out = {}
    tuning = results_dir / "tuning.csv"
    if tuning.is_file():
        table = pd.read_csv(tuning)
        selected = {m: s.run_key for m, s in O.winners(plan, table).items()}
        out["rq3_dev"] = dev_table(table, list(plan.checkpoints), selected)
    for name, render in (("rq3_summary", arms_table), ("rq3_contrasts", contrasts_table),
                         ("rq3_scaling", scaling_table)):
        path = results_dir / f"{name}.csv"
        if path.is_file():
            out[name.replace("summary", "arms")] = render(pd.read_csv(path))
    return out


def write_into(readme: str | Path, tables: dict[str, str]) -> list[str]:
    """Replace the Markdown table after each ``<!-- name -->`` line of ``readme`` with
    ``tables[name]``; returns the names replaced. ValueError naming a table without a marker."""
    path = Path(readme)
    lines = path.read_text().split("\n")
    done = []
    for name, table in tables.items():
        try:
            at = lines.index(f"<!-- {name} -->") + 1
        except ValueError:
            raise ValueError(f"{path}: no '<!-- {name} -->' line to put the {name} table after") from None
        end = at
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        lines[at:end] = table.split("\n")
        done.append(name)
    path.write_text("\n".join(lines))
    return done


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="the RQ3 README tables, rendered from the reports")
    ap.add_argument("results", nargs="?", default="results/optical")
    ap.add_argument("--write", metavar="README", help="replace the tables in this file instead of printing them")
    args = ap.parse_args()
    rendered = readme_tables(args.results)
    if args.write:
        print("replaced:", ", ".join(write_into(args.write, rendered)))
    else:
        for name, text in rendered.items():
            print(f"<!-- {name} -->\n{text}\n")
