"""Compute estimate of the full RQ3 protocol (issue 26) before it runs: time ``--steps`` training
steps of the first rq3-dev configuration (real all-MiniLM-L6-v2 teacher, real e5-small student,
the protocol's batch and length, one torch thread), count the trainings and evaluations of
every stage, and write ``results/optical/compute.json``.

    OMP_NUM_THREADS=1 python tools/rq3_compute.py --steps 3 --out results/optical/compute.json

Only the first configuration (OT, divergence + content marginals) is timed; a step with an MSE
term is scaled by the heavy/light ratio of the protocol's pilots (budget.seconds_per_step).
Evaluation seconds are the protocol's budget numbers (measured on the dev pilots)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from optical_viz.experiments import optical_stages as O
from optical_viz.experiments.run import code_version


def counts(plan: O.Plan) -> dict:
    """Trainings and evaluations of each stage from the protocol alone (winners unknown: a test
    arm's seed-0 run reuses its dev student unless the extension rule fires)."""
    p = plan.p
    n_dev = len(O.dev_settings(p))
    dev_evals = n_dev * len(plan.checkpoints) * 2  # XQuAD-R dev + FLORES dev per checkpoint
    trained_arms = [a for a in p.test.arms.values() if a.method not in ("teacher_only", "zero-shot")]
    seeds = p.test.seeds
    test_models = len(trained_arms) * len(seeds) + (len(p.test.arms) - len(trained_arms))
    reused = sum(a.method in ("mse", "contrastive", "ot") for a in trained_arms)  # seed 0 = the dev winner
    test_trainings = len(trained_arms) * len(seeds) - reused
    scale_runs = len(p.scaling.sizes) * len(p.scaling.arms) * len(p.scaling.seeds)
    return {
        "rq3-dev": {"trainings": n_dev, "models": n_dev, "evaluations": dev_evals,
                    "heavy_trainings": sum("mse" in s.p["loss"] for s in O.dev_settings(p))},
        "rq3-test": {"trainings": test_trainings, "trainings_if_extended": len(trained_arms) * len(seeds),
                     "models": test_models, "evaluations": test_models * len(p.test.sets),
                     "heavy_trainings": 2 * len(seeds) - 1},  # mse and ot_best+mse; mse seed 0 reused
        "rq3-scale": {"trainings": scale_runs, "models": scale_runs, "evaluations": 2 * scale_runs,
                      "heavy_trainings": len(p.scaling.sizes) * len(p.scaling.seeds)},  # the mse arm
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("results/optical/compute.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    from optical_viz.distill import build_trainer

    plan = O.load_plan("full")
    with tempfile.TemporaryDirectory() as tmp:
        runs = O.stage_runs(plan, "rq3-dev", Path(tmp) / "runs", Path(tmp) / "results", probe=False)
        cfg = dataclasses.replace(runs[0].config, output_dir=str(Path(tmp) / "run"))
        t0 = time.perf_counter()
        tr = build_trainer(cfg)  # both models + the start's map on 800 pairs
        build_s = time.perf_counter() - t0
        tr.student.progress = tr.teacher.progress = False
        step_s = [tr.train_step()["step_time_s"] for _ in range(a.steps)]
    light = statistics.median(step_s)
    pilot = plan.p.budget.seconds_per_step
    heavy = light * pilot["heavy"] / pilot["light"]
    b, steps = plan.p.budget, plan.p.training.steps
    c = counts(plan)
    eval_s = {"rq3-dev": c["rq3-dev"]["evaluations"] / 2 * b.eval_s_per_checkpoint,
              "rq3-test": c["rq3-test"]["models"] * b.eval_s_per_test_model,
              "rq3-scale": c["rq3-scale"]["models"] * b.eval_s_per_scaling_model}
    per_stage = {}
    for stage, n in c.items():
        train = (n["trainings"] - n["heavy_trainings"]) * steps * light + n["heavy_trainings"] * steps * heavy
        train += n["trainings"] * build_s
        per_stage[stage] = {"train_s": round(train), "eval_s": round(eval_s[stage]),
                            "hours_at_2_processes": round((train + eval_s[stage]) / 2 / 3600, 2)}
    total = sum(s["train_s"] + s["eval_s"] for s in per_stage.values())
    doc = {
        "what": "compute estimate of results/optical/protocol.yaml (RQ3), measured before the run",
        "measured": {"config": runs[0].run_id, "loss": cfg.loss.name, "batch_size": cfg.batch_size,
                     "max_length": cfg.max_length, "teacher": cfg.teacher, "student": cfg.student,
                     "student_model": tr.student.name, "student_prefix": tr.student.prefix,
                     "threads": torch.get_num_threads(), "steps_timed": a.steps,
                     "step_seconds": [round(x, 3) for x in step_s], "step_seconds_median": round(light, 3),
                     "build_seconds": round(build_s, 1)},
        "assumed": {"heavy_step_seconds": round(heavy, 3), "heavy_over_light": round(pilot["heavy"] / pilot["light"], 3),
                    "eval_s_per_checkpoint": b.eval_s_per_checkpoint, "eval_s_per_test_model": b.eval_s_per_test_model,
                    "eval_s_per_scaling_model": b.eval_s_per_scaling_model,
                    "note": "heavy (MSE-term) steps scaled by the pilots' ratio; evaluation seconds from the protocol's budget"},
        "steps_per_run": steps,
        "runs": c,
        "per_stage": per_stage,
        "total_s_one_process": round(total),
        "estimated_hours_at_2_processes": round(total / 2 / 3600, 2),
        "protocol_estimate_hours_at_2_processes": round(b.estimate_wall_s / 3600, 2),
        "code": code_version(), "machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                                            "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: doc[k] for k in ("measured", "per_stage", "estimated_hours_at_2_processes")}, indent=1))


if __name__ == "__main__":
    main()
