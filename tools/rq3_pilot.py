"""RQ3 cold-start pilots (issue 26): how a multilingual-e5-small student leaves chance against
an all-MiniLM-L6-v2 teacher. DEV DATA ONLY: XQuAD-R L->en on the questions of RQ1's 16 dev
articles (results/full/protocol.yaml), against the 1180 English sentences encoded by the teacher.

    python tools/rq3_pilot.py reference --out results/pilots/rq3/reference.json
    python tools/rq3_pilot.py train --loss mse --steps 150 --checkpoints 50 100 150 --out ...
    python tools/rq3_pilot.py linear --pairs 800 --out results/pilots/rq3/linear-map.json
    python tools/rq3_pilot.py train --loss mse --start linear_map --pairs 800 --ridge 1.0 --steps 200 \
        --checkpoints 0 50 100 200 --out results/pilots/rq3/start-mse.json

Every JSON holds the commit, the config, the seed and ``split: dev``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from optical_viz import retrieval
from optical_viz.cache import EmbeddingCache
from optical_viz.encoder import load_encoder, minilm_model_dir
from optical_viz.experiments.protocol_evals import rq1_question_ids
from optical_viz.protocol import load_stage_protocol

REPO = Path(__file__).resolve().parents[1]
EVAL_LANGS = ["deu_Latn", "rus_Cyrl", "zho_Hans", "hin_Deva"]  # 4 of RQ1's 10 query languages
TRAIN_LANGS = ["arb_Arab", "deu_Latn", "ell_Grek", "spa_Latn", "hin_Deva", "rus_Cyrl", "tha_Thai",
               "tur_Latn", "vie_Latn", "zho_Hans"]  # RQ1's ten (FLORES train bitext)


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()


def dev_ids() -> list[str]:
    return rq1_question_ids(load_stage_protocol("full"), "dev")


def dev_recall(student, teacher, ids) -> dict:
    """XQuAD-R xx->en Recall@1 (percent) on the dev questions: per language and mean."""
    kw = dict(encoder=student) if student is teacher else dict(student=student, teacher=teacher,
                                                               student_cache=EmbeddingCache(":memory:"))
    rep = retrieval.evaluate("xquad-r", **kw, langs=EVAL_LANGS, directions=["xx->en"], query_ids=ids,
                             cache=False, progress=False, n_bootstrap=10)
    rows = rep.frame[rep.frame["lang"] != "all"]
    by = {r["lang"]: round(100 * r["recall@1"], 2) for _, r in rows.iterrows()}
    return {"recall@1": round(float(np.mean(list(by.values()))), 2), "by_lang": by}


class Mapped:
    """A student encoder followed by a fixed linear map W (H, H) to the teacher's space."""

    def __init__(self, enc, W: torch.Tensor):
        self.enc, self.W = enc, W
        self.name, self.prefix, self.precision, self.progress = enc.name + "+W", enc.prefix, "fp32", False
        self.identity = enc.identity + ":linear-map"

    def embed_sentences(self, texts, layer=-1, prefix=None, batch_size=64, normalize=True):
        x = self.enc.embed_sentences(texts, layer=layer, prefix=prefix, batch_size=batch_size, normalize=False)
        return torch.nn.functional.normalize(x @ self.W, dim=-1)  # (N, H) @ (H, H)


def base_config(loss: str, steps: int, lr: float) -> dict:
    cfg = yaml.safe_load((REPO / "configs/rq1.yaml").read_text())
    cfg.update(teacher=str(minilm_model_dir()), student=str(Path.home() / ".cache/optical_viz/models/multilingual-e5-small-q4"),
               languages=TRAIN_LANGS, steps=steps, lr=lr, warmup_steps=max(1, steps // 10), output_dir="/tmp/rq3-pilot",
               num_threads=1, checkpoint_every=10**6)
    cfg["loss"]["name"] = loss
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["reference", "train", "linear"])
    ap.add_argument("--loss", default="mse")
    ap.add_argument("--ot", default="{}", help="YAML mapping merged into loss.ot")
    ap.add_argument("--weights", default="{}", help="YAML mapping: loss.weights")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--checkpoints", type=int, nargs="*", default=[50, 100, 150])
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--pairs", type=int, default=800, help="bitext pairs the linear map is fitted on")
    ap.add_argument("--start", default="none", choices=["none", "linear_map"], help="config.start.method")
    ap.add_argument("--ridge", type=float, default=1.0, help="config.start.ridge")
    ap.add_argument("--wrong-teacher", action="store_true", help="also score against e5-encoded passages (the bug)")
    ap.add_argument("--init", default=None, help="student directory to start from (a saved pilot student)")
    ap.add_argument("--save", default=None, help="write the final student here (a model directory)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    ids = dev_ids()
    doc = {"commit": commit(), "split": "dev", "seed": 0, "eval": {"task": "xquad-r", "direction": "xx->en",
           "questions": "RQ1 dev articles", "langs": EVAL_LANGS, "n_questions_per_lang": 441}, "what": a.what}
    t0 = time.perf_counter()
    if a.what == "reference":
        minilm, e5 = load_encoder(str(minilm_model_dir())), load_encoder(None)
        minilm.progress = e5.progress = False
        doc["results"] = {"minilm_both_sides": dev_recall(minilm, minilm, ids),
                          "e5_both_sides": dev_recall(e5, e5, ids),
                          "e5_queries_minilm_passages": dev_recall(e5, minilm, ids)}
    elif a.what == "linear":
        # closed-form maps student -> teacher space, fitted on bitext sentence embeddings;
        # the dev queries and the English pool are encoded once, every map scored on them
        from optical_viz.distill import build_trainer
        from optical_viz.retrieval import build_problems, select_queries

        cfg = base_config("mse", 10, 1e-4)
        tr = build_trainer(cfg)
        batches = [tr.sampler.next_batch() for _ in range(a.pairs // cfg["batch_size"])]
        pairs = [p for b in batches for p in b]
        src, tgt = [p[1] for p in pairs], [p[2] for p in pairs]
        s, t = tr.student, tr.teacher
        s.progress = t.progress = False
        X = torch.cat([s.embed_sentences(src, normalize=False), s.embed_sentences(tgt, normalize=False)])  # (2N, H)
        Y = torch.nn.functional.normalize(t.embed_sentences(tgt, normalize=False), dim=-1).repeat(2, 1)  # (2N, H)
        problems = [select_queries(p, ids) for p in build_problems("xquad-r", EVAL_LANGS)
                    if p.direction == "xx->en"]
        cand = t.embed_sentences(problems[0].candidates, prefix="")  # (C, H) normalised, MiniLM has no prompt
        queries = {p.lang: s.embed_sentences(p.queries, normalize=False) for p in problems}  # (Q, H) each
        gold = {p.lang: torch.tensor([r[0] for r in p.relevant]) for p in problems}

        def r1(W):
            by = {}
            for lang, q in queries.items():
                top = (torch.nn.functional.normalize(q @ W, dim=-1) @ cand.T).argmax(1)  # (Q,)
                by[lang] = round(100 * float((top == gold[lang]).float().mean()), 2)
            return {"recall@1": round(float(np.mean(list(by.values()))), 2), "by_lang": by}

        H = X.shape[1]
        out = {"identity_no_map": r1(torch.eye(H))}
        for lam in (0.1, 1.0, 10.0):
            out[f"lstsq_ridge{lam:g}"] = r1(torch.linalg.solve(X.T @ X + lam * torch.eye(H), X.T @ Y))  # (H, H)
        Xn = torch.nn.functional.normalize(X, dim=-1)
        U, _, Vt = torch.linalg.svd(Xn.T @ Y)
        out["procrustes"] = r1(U @ Vt)  # orthogonal, on normalised vectors
        doc["config"] = {k: cfg[k] for k in ("teacher", "student", "languages", "max_length")} | {"pairs": len(pairs)}
        doc["results"] = out
    else:
        from optical_viz.distill import build_trainer

        cfg = base_config(a.loss, a.steps, a.lr)
        cfg["loss"]["ot"].update(yaml.safe_load(a.ot))
        cfg["loss"]["weights"] = yaml.safe_load(a.weights)
        cfg["start"] = {"method": a.start, "pairs": a.pairs, "ridge": a.ridge}
        if a.init:
            cfg["student"] = a.init
        t_build = time.perf_counter()
        tr = build_trainer(cfg)  # loads both models and fits the start's map
        doc["build_s"] = round(time.perf_counter() - t_build, 1)
        if tr.start is not None:
            doc["start_fit"] = {"pairs": tr.start.pairs, "ridge": tr.start.ridge, "mse_before": tr.start.mse_before,
                                "mse_after": tr.start.mse_after}
        tr.student.progress = tr.teacher.progress = False
        curve, log = [], []
        for step in range(0, a.steps + 1):
            if step > 0:
                rec = tr.train_step()
                log.append({k: round(v, 5) for k, v in rec.items()
                            if k.startswith("loss") or k in ("step", "step_time_s", "ot_plan_entropy", "ot_converged")})
            if step in a.checkpoints:
                tr.student.model.eval()
                t_eval = time.perf_counter()
                with torch.no_grad():
                    point = {"step": step, **dev_recall(tr.student, tr.teacher, ids)}
                    point["eval_s"] = round(time.perf_counter() - t_eval, 1)
                    if a.wrong_teacher and step == a.steps:
                        e5 = load_encoder(None)
                        e5.progress = False
                        point["against_e5_passages"] = dev_recall(tr.student, e5, ids)
                tr.student.model.train()
                curve.append(point)
                print(json.dumps(point), flush=True)
        if a.save:
            from optical_viz.config import DistillConfig

            tr.save_student(DistillConfig.from_dict(cfg), Path(a.save))
        doc["config"] = cfg
        doc["curve"] = curve
        doc["train_log"] = log
        doc["step_time_s_median"] = float(np.median([r["step_time_s"] for r in log]))
        doc["threads"] = torch.get_num_threads()
    doc["wall_s"] = round(time.perf_counter() - t0, 1)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc.get("results", doc.get("curve")), indent=1))


if __name__ == "__main__":
    main()
