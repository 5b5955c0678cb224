"""`optical-viz bench distill`: where the time of one distillation step goes, per loss.

For each loss, a few real training steps (batch 32, max length 64 by default, the word
embedding table frozen) on FLORES bitext, timed by phase: tokenize, teacher forward,
student forward, loss forward, backward, optimizer. Separately, the OT loss alone (cost +
Sinkhorn + <P, C>, forward and backward on the hidden states of the same batch), and
the peak resident memory of each loss's steps. Targets from the issue: the OT loss at
most 10% of the step time, peak memory at most 4 GB. Prints and returns numbers; asserts
nothing.
"""
from __future__ import annotations

import dataclasses
import os
import resource
import time
from pathlib import Path

PHASES = ("tokenize", "teacher_forward", "student_forward", "loss_forward", "backward", "optimizer")


def add_arguments(parser) -> None:
    parser.add_argument("--losses", default="ot,contrastive,mse", help="comma-separated losses (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per loss (after one warm-up step)")
    parser.add_argument("--lang", default="yor_Latn", help="language of the FLORES train bitext")
    ck = parser.add_mutually_exclusive_group()
    ck.add_argument("--gradient-checkpointing", dest="gradient_checkpointing", action="store_const", const=True,
                    default=None, help="recompute activations for every loss (default: only for mse, as in training)")
    ck.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_const", const=False,
                    help="never recompute activations")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def _peak_rss_mb() -> float:
    """Peak resident set size since the last reset (VmHWM), in MB."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS
    except OSError:
        pass


def run(args) -> dict:
    import torch
    from accelerate import Accelerator

    from optical_viz import losses
    from optical_viz.distill import DistillConfig, _load_models, _tokenize, _Trainer, load_training_data

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    base = DistillConfig(
        languages=[args.lang], bitext_sources=["flores"], batch_size=args.batch_size, max_length=args.max_length,
        steps=1000, warmup_steps=0, device="cpu", output_dir="/nonexistent",
        gradient_checkpointing=args.gradient_checkpointing,  # None: the config's default (on for mse)
    )
    corpora = load_training_data(base)
    # long inputs: join consecutive pairs so that most sequences reach max_length
    c = corpora[0]
    c.src = [a + " " + b for a, b in zip(c.src[::2], c.src[1::2])]
    c.tgt = [a + " " + b for a, b in zip(c.tgt[::2], c.tgt[1::2])]
    acc = Accelerator(cpu=True)
    models = _load_models(base, acc.device)
    n_train = sum(p.numel() for p in models.student.model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in models.student.model.parameters())
    result = {
        "batch_size": args.batch_size, "max_length": args.max_length, "steps": args.steps,
        "gradient_checkpointing": args.gradient_checkpointing, "threads": torch.get_num_threads(), "trainable_parameters": n_train, "parameters": n_all,
        "cpu_count": os.cpu_count(), "load_average_start": list(os.getloadavg()),
        "losses": {},
    }
    print(f"distill step, batch {args.batch_size}, max length {args.max_length}, {torch.get_num_threads()} threads, "
          f"{n_train / 1e6:.1f}M of {n_all / 1e6:.1f}M parameters trained")
    for name in args.losses.split(","):
        cfg = dataclasses.replace(base, loss=dataclasses.replace(base.loss, name=name))
        cfg.validate()
        trainer = _Trainer(cfg, Path("/nonexistent"), corpora, models, acc)
        _reset_peak_rss()
        trainer.train_step()  # warm-up
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step(timings)
        total = (time.perf_counter() - t0) / args.steps
        per_phase = {k: timings.get(k, 0.0) / args.steps for k in PHASES}
        entry = {
            "gradient_checkpointing": cfg.checkpointing(),
            "step_s": total,
            "steps_per_s": 1 / total,
            "phases_s": per_phase,
            "phases_fraction": {k: v / total for k, v in per_phase.items()},
            "peak_rss_mb": _peak_rss_mb(),
        }
        # the OT loss alone (cost + Sinkhorn + <P, C>, forward and backward) on this batch
        pairs = trainer.sampler.next_batch()
        s_ids, s_mask = _tokenize(models.student, [p[1] for p in pairs], cfg.max_length, acc.device)
        t_ids, t_mask = _tokenize(models.teacher, [p[2] for p in pairs], cfg.max_length, acc.device)
        with torch.no_grad():
            hs = models.student.model(input_ids=s_ids, attention_mask=s_mask).last_hidden_state  # (B, T, H)
            ht = models.teacher.model(input_ids=t_ids, attention_mask=t_mask).last_hidden_state  # (B, S, H)
        o = cfg.loss.ot
        reps = []
        for _ in range(args.steps):
            x = hs.clone().requires_grad_(True)
            t1 = time.perf_counter()
            out = losses.ot_loss(x, ht, s_mask.bool(), t_mask.bool(), eps=o.eps, metric=o.metric, grad=o.grad, max_iter=o.max_iter, tol=o.tol)
            out.loss.backward()
            reps.append(time.perf_counter() - t1)
        entry["ot_loss_fwd_bwd_s"] = sum(reps) / len(reps)
        entry["ot_loss_fraction_of_ot_step"] = entry["ot_loss_fwd_bwd_s"] / total
        entry["mean_tokens"] = {"student": float(s_mask.sum(1).float().mean()), "teacher": float(t_mask.sum(1).float().mean())}
        result["losses"][name] = entry
        ph = "  ".join(f"{k} {v * 1000:.0f}" for k, v in per_phase.items())
        print(f"{name:12s} {total:.3f} s/step ({1 / total:.2f} steps/s)  [ms] {ph}  peak RSS {entry['peak_rss_mb']:.0f} MB  "
              f"OT loss fwd+bwd {entry['ot_loss_fwd_bwd_s'] * 1000:.1f} ms ({100 * entry['ot_loss_fraction_of_ot_step']:.1f}% of this step)")
    result["load_average_end"] = list(os.getloadavg())  # other processes sharing the CPU skew the times
    return result
