"""`optical-viz distill CONFIG.yaml [--resume] [--max-steps N] [--out DIR] [--loss NAME]`."""
from __future__ import annotations

import contextlib
import shlex
import sys
import warnings
from pathlib import Path

from optical_viz.commands import add_data_root, check_writable


def register(sub) -> None:
    p = sub.add_parser(
        "distill",
        help="train a student encoder against a frozen teacher on bitext (OT, contrastive or MSE loss)",
        description="Train a student encoder (see optical_viz.distill). The run directory holds "
        "config.yaml, metrics.jsonl, checkpoints/ and the final student/ model directory.",
    )
    p.add_argument("config", type=Path, help="YAML file of a DistillConfig (see configs/)")
    p.add_argument("--resume", action="store_true", help="continue the run directory from its last checkpoint")
    p.add_argument("--max-steps", type=int, default=None, metavar="N", help="stop after N steps in total (a checkpoint is written)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="run directory (default: output_dir of the config)")
    p.add_argument("--loss", default=None, metavar="NAME", help="override loss.name: ot, contrastive, mse or a sum like ot+contrastive")
    p.add_argument("--steps", type=int, default=None, metavar="N", help="override steps (the length of the schedule)")
    add_data_root(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from optical_viz.distill import DistillConfig, distill

    config = DistillConfig.from_yaml(args.config)
    changes = {k: v for k, v in (("loss", args.loss), ("steps", args.steps)) if v is not None}
    if changes:
        config = config.replace(**changes)
    out = Path(args.out if args.out is not None else config.output_dir)
    check_writable(out, "--out" if args.out is not None else "output_dir", directory=True)
    if args.resume:
        _refuse_a_finished_run(out)
    try:
        with _one_line_warnings():
            result = distill(config, resume=args.resume, max_steps=args.max_steps, output_dir=args.out,
                             root=args.data_root, progress=not args.quiet)
    except FileExistsError as exc:  # a user error (also a run directory in use): exit code 2, no traceback
        raise ValueError(str(exc)) from None
    except KeyboardInterrupt:
        print(f"\noptical-viz distill: interrupted; continue with: {resume_command(args, out)}", file=sys.stderr)
        return 130
    last = next((m for m in reversed(result.metrics) if "heldout_cosine" in m), None)
    print(f"run directory: {result.run_dir} ({result.steps} steps)")
    if last is not None:
        print(f"held-out FLORES dev at step {last['step']}: cosine (student vs teacher) {last['heldout_cosine']:.4f}, "
              f"translation gap {last.get('translation_gap', float('nan')):.4f}, "
              f"L->en R@1 {last.get('dev_recall@1', float('nan')):.3f}")
    if result.student_dir is not None:
        print(f"student model: {result.student_dir}")
    else:
        print(f"stopped before the end of the schedule: continue with: {resume_command(args, out)}")
    return 0


def resume_command(args, out: Path) -> str:
    """The command that continues this run, ready to paste into a shell: every option that
    changes the config (--loss, --steps), the run directory, the data root, shell-quoted."""
    words = ["optical-viz", "distill", str(args.config)]
    for option, value in (("--loss", args.loss), ("--steps", args.steps)):
        if value is not None:
            words += [option, str(value)]
    words += ["--out", str(out)]
    if args.data_root is not None:
        words += ["--data-root", str(args.data_root)]
    return shlex.join([*words, "--resume"])


def _refuse_a_finished_run(out: Path) -> None:
    """--resume on a finished run would rewrite its student: refused. (On a run with no
    checkpoint, distill warns that training starts at step 0.)"""
    if (out / "student" / "config.json").is_file():
        raise ValueError(f"cannot resume {out}: the run is finished (its model is {out / 'student'}); "
                         "to train again choose another --out")


@contextlib.contextmanager
def _one_line_warnings():
    """Library warnings (a damaged checkpoint, a stale lock) as 'optical-viz distill: warning: ...'."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"optical-viz distill: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
