"""`optical-viz reproduce --scale quick|full`: the RQ1 / RQ2 grid, results and figures.

    optical-viz reproduce --scale quick                 # minutes; what the tests run
    optical-viz reproduce --scale full --dry-run        # list the runs and the estimate
    optical-viz reproduce --scale full                  # ~2.5 h on 2 CPU cores (make reproduce)
    optical-viz reproduce --scale quick --out /tmp/q    # runs/, results/, figures/ under /tmp/q
    optical-viz reproduce --scale full --question rq1   # only RQ1 (run rq2 in a second process)

Runs whose result files exist are skipped, interrupted trainings resume; see
:mod:`optical_viz.experiments` for the layout of the outputs.
"""
from __future__ import annotations

from pathlib import Path

from optical_viz.commands import add_data_root


def register(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="run the RQ1 / RQ2 experiment grid (skipping finished runs), write results/ and figures/",
        description="Train and evaluate the grid of configs/grid-<scale>.yaml, then write one JSON per run "
        "and evaluation, summary CSVs, the RQ1 table and the paper figures (PDF and PNG).",
    )
    p.add_argument("--scale", choices=("quick", "full"), default="quick",
                   help="quick: minutes, a smoke test of the pipeline; full: the paper grid (~2.5 h on 2 cores)")
    p.add_argument("--grid", type=Path, default=None, metavar="YAML",
                   help="grid file (default: configs/grid-<scale>.yaml)")
    p.add_argument("--out", type=Path, default=Path("."), metavar="DIR",
                   help="root of runs/<scale>, results/<scale> and figures/<scale> (default: the current folder)")
    p.add_argument("--runs", type=Path, default=None, metavar="DIR", help="run directories (default: OUT/runs/<scale>)")
    p.add_argument("--results", type=Path, default=None, metavar="DIR", help="result files (default: OUT/results/<scale>)")
    p.add_argument("--figures", type=Path, default=None, metavar="DIR", help="figures (default: OUT/figures/<scale>)")
    add_data_root(p)
    p.add_argument("--question", action="append", default=None, metavar="NAME",
                   help="run only this question of the grid (repeatable; e.g. rq1 here and rq2 in a second "
                   "process: the runs are disjoint, summaries and figures cover every result already written)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (runs, what is left, estimate) and stop")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import os

    if args.quiet:  # before any import: libraries read it when they load (transformers' bars)
        os.environ["TQDM_DISABLE"] = "1"  # also the encoder's and trainer's bars

    from optical_viz import experiments
    grid = args.grid or experiments.default_grid_path(args.scale)
    spec = experiments.GridSpec.from_yaml(grid)
    if spec.scale != args.scale:
        raise ValueError(f"{grid} is a {spec.scale!r} grid, but --scale is {args.scale!r}")
    if args.question:
        spec = spec.only(args.question)
    out = args.out
    result = experiments.reproduce(
        spec,
        runs_dir=args.runs or out / "runs" / spec.scale,
        results_dir=args.results or out / "results" / spec.scale,
        figures_dir=args.figures or out / "figures" / spec.scale,
        root=args.data_root,
        dry_run=args.dry_run,
        progress=not args.quiet,
    )
    if result.failed:
        print(f"optical-viz reproduce: {len(result.failed)} run(s) failed: {', '.join(result.failed)}")
        return 1
    return 0
