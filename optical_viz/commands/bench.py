"""`optical-viz bench NAME`: benchmarks that print and save numbers (they assert nothing).

Each benchmark is a module ``optical_viz.benchmarks.NAME`` exposing
``add_arguments(parser)`` and ``run(args) -> dict``; ``--json OUT`` saves the dict.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

BENCHMARKS = {
    "transport": "Sinkhorn solvers: ours vs POT (loop and batched); divergence vs GeomLoss; eps-scaling",
    "distill": "time split of one distillation step per loss",
    "encode": "encoding throughput and the 50-language FLORES evaluation",
    "large_collection": "top-10 in 1M x 384: exact chunked search vs FAISS flat and HNSW",
    "gpu_protocol": "step time of the GPU-scale protocol's configurations on this machine (the GPU check)",
}


def register(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark (prints and saves numbers)")
    bsub = p.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, help_ in BENCHMARKS.items():
        bp = bsub.add_parser(name, help=help_)
        bp.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
        bp.set_defaults(func=_run, bench_name=name)
        importlib.import_module(f"optical_viz.benchmarks.{name}").add_arguments(bp)


def _run(args) -> int:
    from optical_viz.commands import check_writable

    for option in ("json", "report"):  # before the benchmark, not after it
        if getattr(args, option, None) is not None:
            check_writable(getattr(args, option), f"--{option}")
    module = importlib.import_module(f"optical_viz.benchmarks.{args.bench_name}")
    result = module.run(args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
