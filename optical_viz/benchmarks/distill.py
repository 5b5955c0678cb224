"""`optical-viz bench distill`: where the time of one distillation step goes, per loss.

For each loss, a few real training steps (batch 32, max length 64 by default, the word
embedding table frozen) on FLORES bitext, timed by phase: tokenize, teacher forward,
student forward, loss forward, backward, optimizer. Separately, the OT loss alone (the
trainer's own call: cost + Sinkhorn + <P, C>, forward and backward on the hidden states of
the same batch), and the peak resident memory of each loss's steps. Targets from the
issue: the OT loss at most 10% of the step time, peak memory at most 4 GB.

The protocol's profile (``--teachers``, on by default): ``--profile-config`` (``configs/rq1.yaml``,
batch 16 x 48, the real sentences of its 11 languages) with one torch thread, for each loss
and each teacher (``e5``: the default model; ``minilm``: all-MiniLM-L6-v2 teaching an e5
student): the step time by phase, the padding (real tokens / padded tokens on the student's
and the teacher's side) and the peak resident memory. ``--side-by-side`` runs the same
profile in a second process at the same time (the protocol's layout: two runs on two cores)
and keeps its numbers too.

Then the teacher cache (``teacher_cache_mb``): a real configuration (``configs/rq1.yaml``,
11 languages of the multi-parallel FLORES train split, batch 16 x 48) trained for
as many steps as a run of it takes (``--cache-steps``) without the cache and with it, from
the same initial model and batches; the step times, the teacher-forward times and the hit rates. Prints and returns
numbers; asserts nothing. Only the public API of :mod:`optical_viz.distill` is used.
"""
from __future__ import annotations

import dataclasses
import os
import resource
import time
from pathlib import Path

#: A/B comparisons on the protocol profile's configuration: name -> (loss, old changes, new
#: changes, what it is). Both sides step in turn, from the same model, batches and dropout
#: masks, so that the ratio of their step times is measured under the same load.
COMPARISONS = {
    "checkpointing": ("mse", {"gradient_checkpointing": True}, {"gradient_checkpointing": None},
                      "MSE: activation checkpointing (the old default) vs the default (only where memory needs it)"),
    "length_buckets": ("ot", {"length_buckets": 1}, {"length_buckets": 8},
                       "OT: the sampler's order vs the pairs of 8 batches regrouped by length (changes the data order)"),
    "unpad": ("ot", {"unpad": False}, {"unpad": True},
              "OT: the models' padded forward vs the forward on real tokens only (optical_viz.unpad; same data order)"),
    "precision": ("ot", {"precision": "fp32"}, {"precision": "bf16"},
                  "OT: fp32 vs bf16 autocast (what precision auto picks on a CPU with native bf16; changes the numbers)"),
}

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
    parser.add_argument("--teachers", default="e5,minilm",
                        help="teachers of the protocol profile: e5, minilm or a model path ('' skips; default: %(default)s)")
    parser.add_argument("--profile-config", default="configs/rq1.yaml",
                        help="configuration of the protocol profile (default: %(default)s)")
    parser.add_argument("--profile-losses", default="ot,contrastive,mse", help="losses of the protocol profile")
    parser.add_argument("--profile-steps", type=int, default=5, help="timed steps per loss and teacher (after 2 warm-up steps)")
    parser.add_argument("--profile-threads", type=int, default=1, help="torch threads of the protocol profile")
    parser.add_argument("--profile-precision", default=None, choices=("auto", "fp32", "bf16"),
                        help="training precision of the protocol profile (default: the config's)")
    parser.add_argument("--side-by-side", action="store_true",
                        help="run the protocol profile in a second process at the same time (two runs on two cores)")
    parser.add_argument("--compare", default="",
                        help=f"comma-separated A/B comparisons, old path vs new in one run ({', '.join(COMPARISONS)})")
    parser.add_argument("--compare-steps", type=int, default=10, help="steps of each side of a comparison")
    parser.add_argument("--cache-config", default="configs/rq1.yaml",
                        help="configuration of the teacher-cache comparison (default: %(default)s)")
    parser.add_argument("--cache-steps", type=int, default=None,
                        help="timed steps with and without the teacher cache (0: skip; default: the config's steps)")


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

    from optical_viz.distill import DistillConfig, build_trainer, load_training_data

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
    result = {
        "batch_size": args.batch_size, "max_length": args.max_length, "steps": args.steps,
        "gradient_checkpointing": args.gradient_checkpointing, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "load_average_start": list(os.getloadavg()),
        "losses": {},
    }
    names = [n for n in args.losses.split(",") if n]
    for name in names:
        cfg = base.replace(loss=name)
        trainer = None  # the previous loss's models are freed before the next are loaded
        trainer = build_trainer(cfg, corpora=corpora)
        if "trainable_parameters" not in result:
            params = list(trainer.student.model.parameters())
            result["trainable_parameters"] = sum(p.numel() for p in params if p.requires_grad)
            result["parameters"] = sum(p.numel() for p in params)
            print(f"distill step, batch {args.batch_size}, max length {args.max_length}, {torch.get_num_threads()} threads, "
                  f"{result['trainable_parameters'] / 1e6:.1f}M of {result['parameters'] / 1e6:.1f}M parameters trained")
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
        # the OT loss alone (the trainer's call, as configured), forward and backward, on the
        # hidden states of a fresh batch of this corpus (a new batch: the teacher cache is cold)
        with torch.no_grad():
            states = trainer.batch_states(trainer.sampler.next_batch())
        reps = []
        for _ in range(args.steps):
            leaf = dataclasses.replace(states, student={l: h.detach().clone().requires_grad_(True) for l, h in states.student.items()})
            t1 = time.perf_counter()
            trainer.ot_term(leaf).loss.backward()
            reps.append(time.perf_counter() - t1)
        entry["ot_loss_fwd_bwd_s"] = sum(reps) / len(reps)
        entry["ot_loss_fraction_of_ot_step"] = entry["ot_loss_fwd_bwd_s"] / total
        entry["mean_tokens"] = {"student": float(states.student_mask.sum(1).float().mean()),
                                "teacher": float(states.teacher_mask.sum(1).float().mean())}
        result["losses"][name] = entry
        ph = "  ".join(f"{k} {v * 1000:.0f}" for k, v in per_phase.items())
        print(f"{name:12s} {total:.3f} s/step ({1 / total:.2f} steps/s)  [ms] {ph}  peak RSS {entry['peak_rss_mb']:.0f} MB  "
              f"OT loss fwd+bwd {entry['ot_loss_fwd_bwd_s'] * 1000:.1f} ms ({100 * entry['ot_loss_fraction_of_ot_step']:.1f}% of this step)")
    trainer = None
    if args.teachers:
        result["profile"] = _profile(args)
    if args.compare:
        result["compare"] = {name: _compare(args, name) for name in args.compare.split(",") if name}
    if args.cache_steps != 0:
        result["teacher_cache"] = _teacher_cache(args)
    result["load_average_end"] = list(os.getloadavg())  # other processes sharing the CPU skew the times
    return result


def step_in_turn(configs: dict, steps: int, corpora=None) -> dict:
    """Train one trainer per configuration ({label: DistillConfig}) for ``steps`` steps, the
    trainers stepping in turn (who goes first rotates), each with its own torch RNG state, so
    that all see the same batches and dropout masks and a change of the machine's load falls
    on all alike -> {label: {"trainer", "step_s", "phases_s", "loss", "load_average"}}.
    With the same data order, equal losses mean the same training (tests use it for that)."""
    import torch

    from optical_viz.distill import build_trainer

    trainers = {label: build_trainer(cfg, corpora=corpora) for label, cfg in configs.items()}
    rng = {label: torch.get_rng_state() for label in trainers}  # build_trainer seeded: the same state
    labels = list(trainers)
    timings: dict[str, dict] = {label: {} for label in labels}
    seconds = {label: 0.0 for label in labels}
    losses: dict[str, list] = {label: [] for label in labels}
    records: dict[str, list] = {label: [] for label in labels}
    for step in range(steps):
        for label in labels[step % len(labels):] + labels[: step % len(labels)]:
            torch.set_rng_state(rng[label])
            t0 = time.perf_counter()
            rec = trainers[label].train_step(timings[label])
            seconds[label] += time.perf_counter() - t0
            rng[label] = torch.get_rng_state()
            losses[label].append(rec["loss"])
            records[label].append(rec)
    return {label: {"trainer": trainers[label], "step_s": seconds[label] / steps, "records": records[label],
                    "phases_s": {k: timings[label].get(k, 0.0) / steps for k in PHASES}, "loss": losses[label]}
            for label in labels}


def _teacher_cache(args) -> dict:
    """``args.cache_steps`` steps (default: the config's) of ``args.cache_config`` without the
    teacher cache and with it, stepping in turn (:func:`step_in_turn`)."""
    import torch

    from optical_viz.distill import DistillConfig

    base = DistillConfig.from_yaml(args.cache_config).replace(device="cpu", output_dir="/nonexistent")
    steps = args.cache_steps if args.cache_steps is not None else base.steps
    out = {
        "config": str(args.cache_config), "loss": base.loss.name, "languages": len(base.languages),
        "batch_size": base.batch_size, "max_length": base.max_length, "steps": steps,
        "threads": torch.get_num_threads(), "load_average_start": list(os.getloadavg()),
    }
    print(f"teacher cache: {args.cache_config} ({len(base.languages)} languages, batch {base.batch_size} x "
          f"{base.max_length}), {steps} steps each, {torch.get_num_threads()} threads")
    megabytes = {"off": 0, "on": base.teacher_cache_mb or 512}
    runs = step_in_turn({label: base.replace(teacher_cache_mb=mb) for label, mb in megabytes.items()}, steps)
    for label, run in runs.items():
        entry = {"step_s": run["step_s"], "teacher_forward_s": run["phases_s"]["teacher_forward"],
                 "phases_s": run["phases_s"], "loss": run["loss"]}
        if megabytes[label]:
            cache = run["trainer"].teacher_cache
            entry.update({"hit_rate": cache.hit_rate, "hit_by_step": [r["teacher_cache_hit"] for r in run["records"]],
                          "entries": len(cache.entries), "cache_mb": cache.bytes / 2**20})
        out[label] = entry
        print(f"  cache {label:3s} {entry['step_s']:.3f} s/step, teacher forward {entry['teacher_forward_s'] * 1000:.0f} ms/step"
              + (f", hit rate {entry['hit_rate']:.1%} ({entry['entries']} sentences, {entry['cache_mb']:.1f} MB)"
                 if megabytes[label] else ""))
    out["speedup"] = out["off"]["step_s"] / out["on"]["step_s"]
    out["teacher_forward_speedup"] = out["off"]["teacher_forward_s"] / out["on"]["teacher_forward_s"]
    out["max_loss_difference"] = max(abs(a - b) for a, b in zip(out["off"]["loss"], out["on"]["loss"]))
    out["load_average_end"] = list(os.getloadavg())
    print(f"  speed-up {out['speedup']:.2f}x (teacher forward {out['teacher_forward_speedup']:.2f}x); "
          f"largest loss difference {out['max_loss_difference']:.2e}")
    return out


def _compare(args, name: str) -> dict:
    """One of :data:`COMPARISONS`: ``args.compare_steps`` steps of each side, in turn, on
    ``args.profile_config`` with ``args.profile_threads`` threads."""
    import torch

    from optical_viz.distill import DistillConfig

    if name not in COMPARISONS:
        raise ValueError(f"unknown comparison {name!r}; choose from {', '.join(COMPARISONS)}")
    loss, old, new, what = COMPARISONS[name]
    threads = torch.get_num_threads()
    torch.set_num_threads(args.profile_threads)
    base = DistillConfig.from_yaml(args.profile_config).replace(device="cpu", output_dir="/nonexistent", loss=loss)
    out = {"what": what, "config": str(args.profile_config), "loss": loss, "old": old, "new": new,
           "batch_size": base.batch_size, "max_length": base.max_length, "steps": args.compare_steps,
           "threads": torch.get_num_threads(), "load_average_start": list(os.getloadavg())}
    try:
        runs = step_in_turn({"old": base.replace(**old), "new": base.replace(**new)}, args.compare_steps)
    finally:
        torch.set_num_threads(threads)
    for label, run in runs.items():
        out[f"{label}_step_s"] = run["step_s"]
        out[f"{label}_phases_s"] = run["phases_s"]
        out[f"{label}_loss"] = run["loss"]
    out["speedup"] = out["old_step_s"] / out["new_step_s"]
    out["max_loss_difference"] = max(abs(a - b) for a, b in zip(out["old_loss"], out["new_loss"]))
    out["load_average_end"] = list(os.getloadavg())
    print(f"compare {name}: {what}\n  old {out['old_step_s']:.3f} s/step, new {out['new_step_s']:.3f} s/step: "
          f"{out['speedup']:.2f}x; largest loss difference {out['max_loss_difference']:.2e}; "
          f"load {out['load_average_start'][0]:.1f} -> {out['load_average_end'][0]:.1f}")
    return out


def _teacher_path(name: str) -> str | None:
    """A teacher of the profile: "e5" (the default model, None in a config), "minilm" or a path."""
    if name == "e5":
        return None
    if name == "minilm":
        from optical_viz.encoder import minilm_model_dir

        return str(minilm_model_dir())
    return name


def _profile(args) -> dict:
    """The protocol's step (``args.profile_config``, ``args.profile_threads`` threads) for each
    teacher and loss: phases, padding per side, peak memory; with ``--side-by-side`` the same
    in a second process started at the same time."""
    import subprocess
    import sys
    import tempfile

    partner = None
    if args.side_by_side:
        out = Path(tempfile.mkstemp(suffix=".json")[1])
        cmd = [sys.executable, "-m", "optical_viz.cli", "bench", "distill", "--losses", "", "--cache-steps", "0",
               "--teachers", args.teachers, "--profile-config", str(args.profile_config),
               "--profile-losses", args.profile_losses, "--profile-steps", str(args.profile_steps),
               "--profile-threads", str(args.profile_threads), "--json", str(out)]
        if args.profile_precision is not None:
            cmd += ["--profile-precision", args.profile_precision]
        partner = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    result = _profile_here(args)
    if partner is not None:
        if partner.wait() != 0:
            raise RuntimeError(f"the side-by-side process failed: {' '.join(cmd)}")
        import json

        result["side_by_side_partner"] = json.loads(out.read_text())["profile"]
        out.unlink()
    return result


def _profile_here(args) -> dict:
    import torch

    from optical_viz.convert import default_model_path
    from optical_viz.distill import DistillConfig, build_trainer, load_training_data
    from optical_viz.encoder import native_bf16, resolve_precision

    threads = torch.get_num_threads()
    torch.set_num_threads(args.profile_threads)
    base = DistillConfig.from_yaml(args.profile_config).replace(device="cpu", output_dir="/nonexistent")
    if args.profile_precision is not None:
        base = base.replace(precision=args.profile_precision)
    corpora = load_training_data(base)
    out = {"config": str(args.profile_config), "languages": len(base.languages), "batch_size": base.batch_size,
           "max_length": base.max_length, "steps": args.profile_steps, "threads": torch.get_num_threads(),
           "precision": base.precision, "resolved_precision": resolve_precision(base.precision, "cpu"),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16("cpu"),
           "load_average_start": list(os.getloadavg()), "teachers": {}}
    print(f"protocol profile: {args.profile_config} (batch {base.batch_size} x {base.max_length}), "
          f"{torch.get_num_threads()} thread(s), {args.profile_steps} steps per loss")
    try:
        for teacher in [t for t in args.teachers.split(",") if t]:
            path = _teacher_path(teacher)
            rows = {}
            for name in [n for n in args.profile_losses.split(",") if n]:
                cfg = base.replace(loss=name, teacher=path, student=None if path is None else str(default_model_path()))
                trainer = None  # the previous models are freed first
                trainer = build_trainer(cfg, corpora=corpora)
                _reset_peak_rss()
                for _ in range(2):  # warm-up (the first steps also fill the teacher cache)
                    trainer.train_step()
                timings: dict[str, float] = {}
                tokens = {"student": [0, 0], "teacher": [0, 0]}
                t0 = time.perf_counter()
                for _ in range(args.profile_steps):
                    trainer.train_step(timings)
                    for side, (real, padded) in trainer.last_tokens.items():
                        tokens[side][0] += real
                        tokens[side][1] += padded
                total = (time.perf_counter() - t0) / args.profile_steps
                rows[name] = {
                    "gradient_checkpointing": cfg.checkpointing(), "step_s": total,
                    "phases_s": {k: timings.get(k, 0.0) / args.profile_steps for k in PHASES},
                    "padding_efficiency": {side: real / padded for side, (real, padded) in tokens.items()},
                    "peak_rss_mb": _peak_rss_mb(), "load_average": list(os.getloadavg()),
                }
                r = rows[name]
                ph = "  ".join(f"{k} {v * 1000:.0f}" for k, v in r["phases_s"].items())
                pad = ", ".join(f"{s} {v:.0%}" for s, v in r["padding_efficiency"].items())
                print(f"  {teacher:6s} {name:12s} {total:.3f} s/step  [ms] {ph}  real/padded tokens: {pad}  "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB  load {r['load_average'][0]:.1f}")
            out["teachers"][teacher] = rows
            trainer = None
    finally:
        torch.set_num_threads(threads)
    out["load_average_end"] = list(os.getloadavg())
    return out
