#!/usr/bin/env python
"""Why OT distillation hurt token alignment: plan sharpness per layer of the untrained model,
next to what RQ1 recorded. Writes results/alignment/plan_by_layer.csv and .json.

    python tools/plan_sharpness.py                      # ro-en gold sentences, layers 0..12 (~3 min, 1 core)

For every layer of the default model, on the ro-en gold sentence pairs (the pair RQ1 scored
its students on), content tokens only: the entropic plan at RQ1's OT eps (0.02, cosine cost,
absolute) and at the eps of RQ1's alignment scoring (0.05), through
:func:`optical_viz.geometry.plan_sharpness_by_layer`; joined with the similarity-argmax AER of
that layer and the AER of the shipped default plan (Sinkhorn eps 0.3, intersection) at that layer,
both from results/alignment/sweep.csv. The JSON adds what RQ1 recorded
(results/full/rq1_summary.csv, rq1_training.csv) and the provenance.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optical_viz import paths  # noqa: E402

EPS = (0.02, 0.05)  # RQ1's OT loss (configs/rq1.yaml) and RQ1's alignment scoring
PAIR = "roen"


def rq1_recorded(full: Path) -> dict:
    """What RQ1 logged: ro-en AER at the last layer per arm, and the OT run's plan entropy."""
    import pandas as pd

    summary = pd.read_csv(full / "rq1_summary.csv")
    aer = summary[summary["metric"].str.startswith("aer_roen_")]
    training = pd.read_csv(full / "rq1_training.csv")
    ot = training[training["run"].str.contains("ot-published")]
    return {
        "aer_roen_last_layer": {f"{r.arm}/{r.metric.removeprefix('aer_roen_')}": round(float(r.estimate), 2)
                                for r in aer.itertuples()},
        "ot_published_plan_entropy": {"first_step": round(float(ot["ot_plan_entropy@first"].mean()), 4),
                                      "last_step": round(float(ot["ot_plan_entropy@last"].mean()), 4),
                                      "runs": int(len(ot))},
        "source": "results/full/rq1_summary.csv (test, seeds mean), rq1_training.csv (ot-published runs, mean)",
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/ow24/cache"), help="hidden states of all layers")
    ap.add_argument("--out", type=Path, default=paths.REPO_ROOT / "results" / "alignment")
    args = ap.parse_args(argv)

    import pandas as pd

    from optical_viz.data import load_word_alignment
    from optical_viz.encoder import load_encoder
    from optical_viz.experiments import alignment_sweep as S
    from optical_viz.geometry import plan_sharpness_by_layer

    encoder = load_encoder()
    encoder.progress = False
    gold = load_word_alignment(PAIR)
    tok = S._all_layer_tokens(encoder, gold, "", args.cache, f"{PAIR}-{len(gold)}-{''!r}")
    layers = range(encoder.num_layers + 1)
    x = {k: (tok["src"]["emb"][k], tok["src"]["base"].mask) for k in layers}  # (B, T, H), (B, T)
    y = {k: (tok["tgt"]["emb"][k], tok["tgt"]["base"].mask) for k in layers}  # (B, S, H), (B, S)
    frames = [plan_sharpness_by_layer(x, y, eps).assign(pair=PAIR) for eps in EPS]
    frame = pd.concat(frames, ignore_index=True)
    sweep = pd.read_csv(args.out / "sweep.csv")
    roen = sweep[(sweep["pair"] == PAIR) & (sweep["extraction"] == "inter")]
    argmax = roen[roen["method"] == "similarity"].set_index("layer")["aer"]  # similarity argmax, intersection
    default = roen[(roen["method"] == "sinkhorn") & (roen["eps"] == 0.3)].set_index("layer")["aer"]
    frame["argmax_aer"] = frame["layer"].map(argmax)
    frame["sinkhorn_0.3_aer"] = frame["layer"].map(default)  # the shipped default's plan at that layer
    frame = frame[["pair", "eps", "layer", "plan_entropy", "mutual_argmax_mass", "cost_ratio", "cost_std",
                   "self_cosine", "ot_cost", "independent_cost", "converged", "argmax_aer", "sinkhorn_0.3_aer"]]
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "plan_by_layer.csv", index=False, float_format="%.6f")
    doc = {"task": "plan-sharpness-by-layer", "pair": PAIR, "n_pairs": len(gold), "eps": list(EPS),
           "cost": "cosine, content tokens, uniform marginals", "provenance": S.provenance(encoder),
           "rq1": rq1_recorded(paths.REPO_ROOT / "results" / "full"), "csv": "plan_by_layer.csv"}
    (args.out / "plan_by_layer.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(frame.round(3).to_string(index=False))
    print(json.dumps(doc["rq1"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
