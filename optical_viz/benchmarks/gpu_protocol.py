"""`optical-viz bench gpu_protocol`: the step time of the GPU-scale protocol, on this machine.

The prepared check for a machine with a GPU, in one call: the dev configurations of
``configs/gpu/protocol.yaml`` named by ``--configs`` (by default one per kind of loss: OT as
published, the Sinkhorn divergence, OT on a middle layer plus the MSE sentence term,
contrastive, MSE) are trained as the protocol builds them (batch 128, max length 128, bf16,
the teacher cache) for ``--steps`` steps in a temporary folder, and timed. Per configuration:
the step times and losses, the median step time after the first step, the peak GPU memory
(CUDA only) and what a run of the protocol's length would take at that median. Nothing is kept
but the numbers.

    optical-viz bench gpu_protocol --json benchmarks/gpu_protocol.json           # on the GPU
    optical-viz bench gpu_protocol --steps 2 --configs ot-published-lr0.0001     # a CPU check

Prints and returns numbers; asserts nothing.
"""
from __future__ import annotations

import dataclasses
import platform
import statistics
import tempfile
from pathlib import Path

from optical_viz.commands import add_data_root

DEFAULT_CONFIGS = ("ot-published-lr0.0001", "ot-divergence-lr0.0001", "ot-middle_layer_sentence-lr0.0001",
                   "contrastive-t0.02-lr0.0001", "mse-lr0.0001")


def add_arguments(parser) -> None:
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                        help="comma-separated dev configurations of the GPU protocol (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration (default: %(default)s)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="training device (default: CUDA when present)")
    add_data_root(parser)


def time_configs(configs: list[str], steps: int, device: str = "auto", root=None, progress: bool = True) -> dict:
    """Train each named dev configuration of the GPU protocol for ``steps`` steps; their timings.

    ValueError (one line) for a name that is not a dev configuration of the protocol."""
    import torch

    from optical_viz.distill import distill
    from optical_viz.experiments import stages as S

    if steps < 2:
        raise ValueError(f"--steps must be at least 2 (the first step is a warm-up), got {steps}")
    gpu = S.load_stage_protocol("gpu")
    cuda = torch.cuda.is_available() and device != "cpu"
    with tempfile.TemporaryDirectory(prefix="optical_viz-gpu-bench-") as tmp:
        runs = S.stage_runs(gpu, "rq1-dev", Path(tmp) / "runs", Path(tmp) / "results", root=root, probe=False)
        by_key = {f"{r.method}-{r.variant}" if r.variant else r.method: r for r in runs}
        unknown = [c for c in configs if c not in by_key]
        if unknown:
            raise ValueError(f"not a dev configuration of configs/gpu/protocol.yaml: {', '.join(unknown)}; "
                             f"choose from {', '.join(by_key)}")
        out = {"protocol_steps": int(gpu.training.steps), "timed_steps": steps, "configs": {}}
        for key in configs:
            cfg = by_key[key].config
            cfg = dataclasses.replace(cfg, steps=steps, warmup_steps=1, snapshots=[], checkpoint_every=steps,
                                      device=device, output_dir=str(Path(tmp) / key))
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            result = distill(cfg, root=root, progress=progress)
            steps_logged = [r for r in result.metrics if "step_time_s" in r]
            times = [r["step_time_s"] for r in steps_logged]
            median = statistics.median(times[1:])
            row = {"loss": cfg.loss.name, "batch_size": cfg.batch_size, "max_length": cfg.max_length,
                   "precision": cfg.precision, "step_times_s": [round(t, 4) for t in times],
                   "losses": [round(float(r["loss"]), 5) for r in steps_logged],
                   "median_step_s": round(median, 4),
                   "protocol_run_h": round(median * out["protocol_steps"] / 3600, 3),
                   "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}
            out["configs"][key] = row
            print(f"{key:40s} median step {median:7.3f} s -> {row['protocol_run_h']:.2f} h per "
                  f"{out['protocol_steps']}-step run" + (f", peak {row['peak_gpu_memory_gb']} GB" if cuda else ""))
    out["device"] = torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu"
    out["torch"] = torch.__version__
    return out


def run(args) -> dict:
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    return time_configs(configs, args.steps, device=args.device, root=args.data_root)
