"""A 40-step quick run (configs/quick.yaml) of every OT objective: trains, converges, loads.

Issue 11's check that each objective of ``loss.ot`` runs end to end. Not a result about
retrieval (no evaluation on any test split): it records what the trainer logs (loss, plan
entropy, converged fraction, eps, held-out cosine on FLORES dev) and any warning, and
checks that the student directory loads. Writes results/objectives/quick40.json.

    OMP_NUM_THREADS=1 python tools/objectives_quick40.py
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

from optical_viz.distill import DistillConfig, distill
from optical_viz.encoder import load_encoder

REPO = Path(__file__).resolve().parent.parent
VARIANTS = {
    "entropic (OPTICAL as run, uniform marginals)": {"objective": "entropic", "marginals": "uniform"},
    "plan_cost (unrolled)": {"objective": "plan_cost", "grad": "unroll"},
    "divergence (default)": {"objective": "divergence"},
    "emd": {"objective": "plan_cost", "plan": "emd"},
    "divergence, relative eps 0.25, eps-scaling 0.5": {"objective": "divergence", "eps": 0.25, "eps_mode": "relative", "eps_scaling": 0.5},
}


def main(out_root: str = "/tmp/objectives-quick40") -> None:
    base = DistillConfig.from_yaml(REPO / "configs" / "quick.yaml")
    rows = []
    for name, ot in VARIANTS.items():
        cfg = DistillConfig.from_dict({**base.to_dict(), "output_dir": f"{out_root}/{ot['objective']}-{len(rows)}",
                                       "num_threads": 1, "loss": {**base.to_dict()["loss"], "ot": {**base.to_dict()["loss"]["ot"], **ot}}})
        t0 = time.time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            run = distill(cfg, progress=False)
        m = [r for r in run.metrics if "loss_ot" in r]
        load_encoder(run.student_dir)  # the student loads
        rows.append(dict(
            variant=name, ot=ot, seconds=round(time.time() - t0, 1), steps=len(m),
            loss_first=m[0]["loss_ot"], loss_last=m[-1]["loss_ot"],
            plan_entropy_first=m[0]["ot_plan_entropy"], plan_entropy_last=m[-1]["ot_plan_entropy"],
            converged_min=min(r["ot_converged"] for r in m), converged_mean=sum(r["ot_converged"] for r in m) / len(m),
            eps_first=m[0]["ot_eps"], eps_last=m[-1]["ot_eps"],
            heldout_cosine_start=run.metrics[0].get("heldout_cosine"), heldout_cosine_end=run.metrics[-1].get("heldout_cosine"),
            warnings=sorted({str(w.message)[:160] for w in caught if issubclass(w.category, RuntimeWarning)}),
            student_loads=True,
        ))
        print(json.dumps(rows[-1]), flush=True)
    path = REPO / "results" / "objectives" / "quick40.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": "configs/quick.yaml", "variants": rows}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
