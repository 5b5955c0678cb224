"""Selection: ``tuning.csv`` (one row per dev configuration, its dev score at every
checkpoint) built from the dev result files, and the winners read from it with the
protocol's rule (highest dev score at the last step; a difference under 0.1 point is a tie,
which goes to the configuration listed first). Never reads a test number."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from optical_viz.experiments.settings import HYPERPARAMETERS, Setting, combined_setting, dev_settings, published_setting
from optical_viz.protocol import OT_FIELDS, Protocol
from optical_viz.rundir import atomic_write

TIE = 0.1  # R@1 points: a smaller difference is a tie


def _dev_score(doc: dict) -> float:
    """Recall@1 in points, the mean over (language, direction) rows (pooled rows excluded)."""
    rows = [r for r in doc["results"] if r["lang"] != "all"]
    return 100.0 * float(np.mean([r["recall@1"] for r in rows]))


def _setting_of(doc: dict) -> Setting:
    """The configuration of a dev result, read back from its stored distill config."""
    cfg, method = doc["config"], doc["method"]
    loss = cfg["loss"]
    params: dict = {"loss": loss["name"], "lr": float(cfg["lr"])}
    if method == "ot":
        params |= {k: loss["ot"][k] for k in OT_FIELDS}
        params["weights"] = "scale_probe" if loss["weights"] else None
    if method == "contrastive":
        params["temperature"] = float(loss["contrastive"]["temperature"])
    label = doc["variant"]
    variant = label.rsplit("-lr", 1)[0] if "-lr" in label else ""
    return Setting.make(method, variant, **params)


def tuning_table(results_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per dev configuration: question, method, variant, every hyperparameter, the
    dev primary metric at each checkpoint (``dev_r1@N``), ``steps`` (the last checkpoint
    scored), the run id and the code commit. Read from ``<results>/tuning/<question>/``."""
    rows: dict[str, dict] = {}
    for path in sorted((Path(results_dir) / "tuning").glob("*/*.json")):
        doc = json.loads(path.read_text())
        step = int(doc["evaluation"]["label"].rsplit("@", 1)[1])
        s = _setting_of(doc)
        row = rows.setdefault(doc["run_id"], {
            "question": doc["question"], "method": s.method, "variant": s.run_key, "seed": doc["seed"],
            **{k: s.p.get(k) for k in HYPERPARAMETERS},
            "term_weights": json.dumps(doc["config"]["loss"]["weights"], sort_keys=True) or None,
            "steps": 0, "run_id": doc["run_id"], "commit": doc["code"]["commit"],
        })
        row[f"dev_r1@{step}"] = round(_dev_score(doc), 4)
        row["steps"] = max(row["steps"], step)
    frame = pd.DataFrame(list(rows.values()))
    if frame.empty:
        return frame
    score_cols = sorted((c for c in frame if c.startswith("dev_r1@")), key=lambda c: int(c.split("@")[1]))
    return frame[[c for c in frame if not c.startswith("dev_r1@")] + score_cols]


def write_tuning_csv(results_dir: str | os.PathLike) -> Path:
    """``<results>/tuning.csv`` rebuilt from the dev result files (:func:`tuning_table`)."""
    out = Path(results_dir) / "tuning.csv"
    atomic_write(out, tuning_table(results_dir).to_csv(index=False, float_format="%.6g"))
    return out


def tuning_rows(table: pd.DataFrame) -> list[dict]:
    """The rows of a tuning table as dicts (what :func:`optical_viz.protocol.require_tuned` reads)."""
    return table.to_dict("records") if not table.empty else []


def ranked(table: pd.DataFrame, settings: list[Setting], question: str, steps: int) -> list[tuple[Setting, float]]:
    """``settings`` that have a dev score at ``steps``, best first; a difference under 0.1
    point is a tie, which goes to the setting listed first (the protocol's rule)."""
    col = f"dev_r1@{steps}"
    scored = []
    for order, s in enumerate(settings):
        hit = table[(table["question"] == question) & (table["variant"] == s.run_key)] if col in table else table.iloc[:0]
        if len(hit) and pd.notna(hit[col].iloc[0]):
            scored.append((order, s, float(hit[col].iloc[0])))
    # a stable sort on the score rounded down to the tie width keeps listed order inside a tie
    best_first = []
    for order, s, score in sorted(scored, key=lambda x: x[0]):
        i = 0
        while i < len(best_first) and best_first[i][1] >= score - TIE + 1e-12:
            i += 1
        best_first.insert(i, (s, score))
    return best_first


def rq1_ranking(p: Protocol, table: pd.DataFrame, method: str) -> list[tuple[Setting, float]]:
    """Every RQ1 dev configuration of ``method`` (OT: its stage-1 variants and the stage-2 runs
    of their winner), best first; empty until all of them are scored."""
    steps = int(p.tuning.steps)
    listed = [s for s in dev_settings(p, "rq1") if s.method == method]
    if method == "ot":
        stage1 = ranked(table, listed, "rq1", steps)
        if len(stage1) < len(listed):
            return []
        listed += dev_settings(p, "rq1-dev2", {"ot-stage1": stage1[0][0]})
    done = ranked(table, listed, "rq1", steps)
    return done if len(done) == len(listed) else []


def rq2_candidates(p: Protocol, table: pd.DataFrame, method: str) -> list[Setting]:
    """The best ``candidates_per_method`` RQ1-dev settings of ``method`` (empty until its
    RQ1 tuning is finished)."""
    return [s for s, _ in rq1_ranking(p, table, method)[: int(p.tuning.rq2.candidates_per_method)]]


def winners(p: Protocol, table: pd.DataFrame) -> dict[str, Setting]:
    """The selected settings known so far (missing keys: their stage is not finished).

    ``ot-stage1``, ``ot``, ``contrastive``, ``mse`` (RQ1 dev); ``rq2-ot``, ``rq2-contrastive``
    (FLORES dev); ``ot-published`` (always known).
    """
    steps = int(p.tuning.steps)
    out = {"ot-published": published_setting(p)}
    if table.empty:
        return out
    stage1 = dev_settings(p, "rq1")
    for method in ("ot", "contrastive", "mse"):
        listed = [s for s in stage1 if s.method == method]
        done = ranked(table, listed, "rq1", steps)
        if len(done) == len(listed):
            out["ot-stage1" if method == "ot" else method] = done[0][0]
    full = rq1_ranking(p, table, "ot")
    if full:
        out["ot"] = full[0][0]
    for method in ("ot", "contrastive"):
        candidates = rq2_candidates(p, table, method)
        if candidates:
            done = ranked(table, candidates, "rq2", steps)
            if len(done) == len(candidates):
                out[f"rq2-{method}"] = done[0][0]
    return out


def arm_setting(arm, won: dict[str, Setting], question: str = "rq1") -> Setting | None:
    """The Setting a test arm (:class:`optical_viz.protocol.Arm`) runs, from the winners
    ``won``: None for zero-shot, or while the tuning it needs is unfinished."""
    if arm.method == "zero-shot":
        return None
    if arm.setting == "published":
        return won["ot-published"]
    if arm.method == "ot+contrastive":  # not tuned: the two winners combined
        return combined_setting(won["ot"], won["contrastive"]) if {"ot", "contrastive"} <= set(won) else None
    prefix = "" if question == "rq1" else "rq2-"
    return won.get(prefix + arm.method)
