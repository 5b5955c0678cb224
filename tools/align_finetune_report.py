#!/usr/bin/env python
"""Score an alignment fine-tuning run (``optical-viz align-train``) against the untrained model:
word-alignment AER on the three gold pairs and XQuAD-R retrieval. Writes
results/alignment/finetuned.json.

    optical-viz align-train configs/align-train.yaml --out /tmp/at24_run --steps 1500
    python tools/align_finetune_report.py --run /tmp/at24_run --train-wall-s 2100

AER, for both models, with the settings of results/alignment/heldout.json: ``held_out`` uses
each leave-one-pair-out fold's setting (chosen on the other two pairs, on the *untrained*
model) for the pair it holds out; ``shipped`` the default chosen on all three pairs (what
``evaluate alignment`` runs without options); ``argmax`` similarity argmax (intersection) at
the same layer. Retrieval: XQuAD-R, questions in ten languages against the English sentences
(xx->en, all 1,190 questions per language, not RQ1's test subset), symmetric (one model
encodes both sides), sentence cosine, 95% bootstrap intervals, both models at one precision
(``--precision``, default ``auto``: bf16 only on hardware that computes it natively; the first
report, finetuned.json, was scored in bf16 on such a CPU). (FLORES
dev holds 99 sentences per language in this data root: Recall@1 is 100 for both models.)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optical_viz import paths  # noqa: E402

# XQuAD-R's ten non-English languages (all of them in the training bitext of configs/align-train.yaml)
LANGS = ("arb_Arab", "deu_Latn", "ell_Grek", "spa_Latn", "hin_Deva", "rus_Cyrl", "tha_Thai", "tur_Latn",
         "vie_Latn", "zho_Hans")


def alignment_scores(encoder, heldout: dict, root=None) -> dict:
    """{"held_out", "shipped", "argmax"}: {pair: AER} for ``encoder`` (see the module docstring)."""
    from optical_viz import alignment as al

    folds = {f["held_out"]: f["setting"] for f in heldout["families"][heldout["default"]]["folds"]}
    shipped = heldout["setting"]
    settings = list(folds.values()) + [shipped]
    if any(s["method"] != "sinkhorn" or s["extraction"] != "inter" for s in settings):
        raise ValueError(f"this report expects Sinkhorn / inter settings, got {settings}")
    layers = sorted({s["layer"] for s in settings})
    epss = sorted({s["eps"] for s in settings})
    res = al.evaluate_alignment(encoder, sorted(folds), ["sinkhorn", "similarity"], layers, "inter", epss, root)
    rows = res["results"]

    def aer(pair, method, layer, eps=None):
        hit = [r["aer"] for r in rows if r["pair"] == pair and r["method"] == method and r["layer"] == layer
               and (eps is None or r["eps"] == eps)]
        return round(100 * hit[0], 2)

    return {
        "held_out": {p: aer(p, "sinkhorn", s["layer"], s["eps"]) for p, s in folds.items()},
        "shipped": {p: aer(p, "sinkhorn", shipped["layer"], shipped["eps"]) for p in folds},
        "argmax": {p: aer(p, "similarity", folds[p]["layer"]) for p in folds},
        "settings": {"held_out": folds, "shipped": shipped},
        "notes": res.get("notes", []),
    }


def retrieval_scores(encoder, langs, precision: str, root=None) -> dict:
    """XQuAD-R (xx->en) recall@1 / MRR@10 per language, in %, with 95% intervals."""
    from optical_viz.retrieval import evaluate

    report = evaluate("xquad-r", encoder=encoder, langs=list(langs), root=root, progress=False,
                      directions=["xx->en"], precision=precision)
    out = {}
    for r in report.frame.to_dict("records"):
        key = f"{r['lang']} {r['direction']}"
        out[key] = {"n": int(r["n"])}
        for m in ("recall@1", "mrr@10"):
            if m in r:
                ci = r.get(f"{m}_ci")
                out[key][m] = round(100 * float(r[m]), 2)
                if isinstance(ci, (list, tuple)):
                    out[key][f"{m}_ci"] = [round(100 * float(c), 2) for c in ci]
    return {"task": "xquad-r", "direction": "xx->en", "precision": precision, "scoring": report.scoring, "rows": out}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="the align-train output directory")
    ap.add_argument("--train-wall-s", type=float, required=True, help="wall time of the align-train command")
    ap.add_argument("--command", default="optical-viz align-train configs/align-train.yaml --out RUN --steps 1500")
    ap.add_argument("--langs", default=",".join(LANGS))
    ap.add_argument("--out", type=Path, default=paths.REPO_ROOT / "results" / "alignment" / "finetuned.json")
    ap.add_argument("--precision", default="auto", help="retrieval precision of both models (auto: bf16 only where native)")
    ap.add_argument("--machine", default="2-core CPU, 1 torch thread, shared with another job",
                    help="where the training ran, in words (recorded)")
    args = ap.parse_args(argv)

    import yaml

    from optical_viz.encoder import load_encoder, resolve_precision
    from optical_viz.experiments.run import code_version

    heldout = json.loads((paths.REPO_ROOT / "results" / "alignment" / "heldout.json").read_text())
    student = args.run / "student"
    info = json.loads((student / paths.TRAINING_INFO).read_text())
    config = yaml.safe_load((student / "align_train.yaml").read_text())
    config["steps"] = info["steps"]  # the steps run (--steps overrides the YAML's)
    losses = [json.loads(line)["loss"] for line in (args.run / "metrics.jsonl").read_text().splitlines()]
    k = min(50, len(losses))
    langs = [x for x in args.langs.split(",") if x]
    precision = resolve_precision(args.precision)
    t0 = time.time()
    models = {}
    for name, path in (("untrained", None), ("fine-tuned", student)):
        encoder = load_encoder(path)
        encoder.progress = False
        models[name] = {"alignment_aer": alignment_scores(encoder, heldout),
                        "retrieval": retrieval_scores(encoder, langs, precision)}
        print(name, json.dumps(models[name]["alignment_aer"]["held_out"]), flush=True)
    doc = {
        "task": "alignment-finetuning",
        "code": code_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": args.command,
        "config": config,
        "steps": info["steps"],
        "seed": info["seed"],
        "bitext_pairs_available": info["pairs"],
        "pairs_seen": info["steps"] * config["batch_size"],
        "aligner_targets": info["aligner"],
        "train_wall_s": round(args.train_wall_s, 1),
        "machine": args.machine,
        "loss": {f"mean_first_{k}": round(sum(losses[:k]) / k, 4), f"mean_last_{k}": round(sum(losses[-k:]) / k, 4)},
        "models": models,
        "published_aer": heldout.get("published"),
        "evaluation_wall_s": round(time.time() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({n: {"aer": m["alignment_aer"], "retrieval": m["retrieval"]["rows"]} for n, m in models.items()},
                     indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
