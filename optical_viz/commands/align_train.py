"""`optical-viz align-train CONFIG.yaml --out DIR [--steps N]`: alignment fine-tuning on bitext."""
from __future__ import annotations

from pathlib import Path

from optical_viz.commands import add_data_root


def register(sub) -> None:
    p = sub.add_parser(
        "align-train",
        help="fine-tune a model for word alignment on bitext (self-training on the aligner's OT links)",
        description="Fine-tune for word alignment (see optical_viz.align_train): awesome-align's self-training "
        "objective with the toolkit's OT links as targets, on bitext (never gold). Writes DIR/student, a model "
        "directory that `align --model` and `evaluate alignment --model` read, and DIR/metrics.jsonl.",
    )
    p.add_argument("config", type=Path, help="YAML file of an AlignTrainConfig (e.g. configs/align-train.yaml)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="run directory (DIR/student is the model)")
    p.add_argument("--steps", type=int, default=None, metavar="N", help="override steps (default: the config's)")
    add_data_root(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from optical_viz.align_train import AlignTrainConfig, align_train

    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    config = AlignTrainConfig.from_yaml(args.config)
    res = align_train(config, args.out, steps=args.steps, root=args.data_root, progress=not args.quiet)
    first, last = res.losses[0], res.losses[-1]
    print(f"trained {len(res.losses)} steps on {res.pairs} bitext pairs: loss {first:.4f} -> {last:.4f}")
    print(f"student: {res.student_dir} (optical-viz evaluate alignment --model {res.student_dir})")
    return 0
