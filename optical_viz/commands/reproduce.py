"""`optical-viz reproduce`: the pre-registered RQ1 / RQ2 protocol (or any grid file), results and figures.

    optical-viz reproduce --scale quick                          # minutes; what the tests run
    optical-viz reproduce --scale full --dry-run                 # the runs of every stage that can start
    optical-viz reproduce --scale full --stage rq1-dev --shard 0/2   # one stage, half of its runs (make reproduce)
    optical-viz reproduce --scale quick --out /tmp/q             # runs/, results/, figures/ under /tmp/q
    optical-viz reproduce --grid tests/grids/three.yaml          # a grid file of your own questions
    optical-viz reproduce --protocol optical --scale full --stage rq3-dev --shard 0/2   # RQ3 (issue 26)

``--scale`` runs results/full/protocol.yaml (quick: configs/protocol-quick.yaml) stage by
stage: tuning on dev, selection into tuning.csv, then the test set (refused until tuning is
finished). Runs whose result files exist are skipped, interrupted trainings resume; see
:mod:`optical_viz.experiments` for the layout of the outputs.
"""
from __future__ import annotations

from pathlib import Path

from optical_viz.commands import add_data_root

STAGES = ("rq1-dev", "rq1-dev2", "rq2-dev", "rq1-test", "rq2-test")  # optical_viz.experiments.stages.STAGES (no import: --help stays fast)
OPTICAL_STAGES = ("rq3-dev", "rq3-test", "rq3-scale")  # optical_viz.experiments.optical_stages.STAGES


def register(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="run the pre-registered RQ1 / RQ2 protocol (or a grid file), skipping finished runs; write results/ and figures/",
        description="Tune on dev, then evaluate on test, as results/full/protocol.yaml says (configs/protocol-quick.yaml "
        "at --scale quick); or train and evaluate the questions of a --grid file. Writes one JSON per run and "
        "evaluation, tuning.csv, summary CSVs, tables and figures (PDF and PNG).",
    )
    p.add_argument("--scale", choices=("quick", "full", "gpu"), default="quick",
                   help="quick: minutes, a smoke test of every stage; full: the protocol (~6 h on 2 cores); "
                   "gpu: the protocol at GPU scale (configs/gpu/protocol.yaml: 3000 steps, batch 128, 5 seeds)")
    p.add_argument("--protocol", choices=("rq", "optical"), default="rq",
                   help="rq: results/full/protocol.yaml (RQ1 / RQ2); optical: results/optical/protocol.yaml (RQ3, "
                   "MiniLM teaches e5-small; --scale quick: configs/optical-quick.yaml; results under OUT/results/optical)")
    p.add_argument("--stage", action="append", default=None, choices=STAGES + OPTICAL_STAGES, metavar="STAGE",
                   help=f"run only this stage (repeatable; in order: {', '.join(STAGES)}; with --protocol optical: "
                   f"{', '.join(OPTICAL_STAGES)}; default: all)")
    p.add_argument("--shard", default="0/1", metavar="I/N",
                   help="this process runs part I of N of each stage (e.g. 0/2 and 1/2 on two cores; default 0/1)")
    p.add_argument("--grid", type=Path, default=None, metavar="YAML",
                   help="a grid file of questions instead of the protocol (its own scale; see configs/grid-quick.yaml)")
    p.add_argument("--out", type=Path, default=Path("."), metavar="DIR",
                   help="root of runs/<scale>, results/<scale> and figures/<scale> (default: the current folder)")
    p.add_argument("--runs", type=Path, default=None, metavar="DIR", help="run directories (default: OUT/runs/<scale>)")
    p.add_argument("--results", type=Path, default=None, metavar="DIR", help="result files (default: OUT/results/<scale>)")
    p.add_argument("--figures", type=Path, default=None, metavar="DIR", help="figures (default: OUT/figures/<scale>)")
    add_data_root(p)
    p.add_argument("--question", action="append", default=None, metavar="NAME",
                   help="with --grid: run only this question (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (runs, what is left, estimate) and stop")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import os

    if args.quiet:  # before any import: libraries read it when they load (transformers' bars)
        os.environ["TQDM_DISABLE"] = "1"  # also the encoder's and trainer's bars

    from optical_viz import experiments

    if args.grid is None and args.protocol == "optical":
        return _run_optical(args)
    if args.grid is None:
        return _run_protocol(args)
    spec = experiments.GridSpec.from_yaml(args.grid)
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


def _shard(args) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in args.shard.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like 0/2, got {args.shard!r}") from None
    return i, n


def _run_optical(args) -> int:
    from optical_viz.experiments import optical_stages

    if args.scale == "gpu":
        raise ValueError("--protocol optical has the scales full and quick")
    bad = [s for s in args.stage or () if s not in OPTICAL_STAGES]
    if bad:
        raise ValueError(f"--stage {bad[0]} is not a stage of --protocol optical ({', '.join(OPTICAL_STAGES)})")
    plan = optical_stages.load_plan(args.scale)
    name = "optical" if args.scale == "full" else f"optical-{args.scale}"
    result = optical_stages.reproduce_optical(
        plan, stages=args.stage, shard=_shard(args), runs_dir=args.runs or args.out / "runs" / name,
        results_dir=args.results or args.out / "results" / name, figures_dir=args.figures or args.out / "figures" / name,
        root=args.data_root, dry_run=args.dry_run,
        progress=not args.quiet)
    if result.failed:
        print(f"optical-viz reproduce: {len(result.failed)} run(s) failed: {', '.join(result.failed)}")
        return 1
    return 0


def _run_protocol(args) -> int:
    from optical_viz.experiments import stages
    from optical_viz.protocol import load_stage_protocol

    i, n = _shard(args)
    bad = [s for s in args.stage or () if s not in STAGES]
    if bad:
        raise ValueError(f"--stage {bad[0]} is a stage of --protocol optical")
    if args.question:
        raise ValueError("--question selects questions of a --grid file; the protocol runs by --stage")
    p = load_stage_protocol(args.scale)
    out = args.out
    result = stages.reproduce_protocol(
        p, stages=args.stage, shard=(i, n),
        runs_dir=args.runs or out / "runs" / p.scale,
        results_dir=args.results or out / "results" / p.scale,
        figures_dir=args.figures or out / "figures" / p.scale,
        root=args.data_root, dry_run=args.dry_run, progress=not args.quiet,
    )
    if result.failed:
        print(f"optical-viz reproduce: {len(result.failed)} run(s) failed: {', '.join(result.failed)}")
        return 1
    return 0
