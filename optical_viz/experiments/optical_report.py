"""The RQ3 report (``results/optical/protocol.yaml``, ``statistics``), rebuilt from the result
files of :mod:`.optical_stages`: never from anything else.

- ``rq3_summary.csv``: per arm and test set, Recall@1 (percent; mean over queries, then
  languages, then seeds) with its hierarchical bootstrap interval (seed, language, query), and
  MRR@10; AER (corpus level, mean over seeds) for ``aer.roen``.
- ``rq3_contrasts.csv``: the Holm family: every ``statistics.family`` pair on P1
  (``xquad-r.test``) and on P2 (``flores.test.low_resource``), paired, plus the scaling
  difference in differences (ot_best - mse at 50) - (at 5) on the shared five languages.
- ``rq3_scaling.csv``: per scaling arm and group (trained, shared_5, unseen) and size, and the
  arm's difference from mse pooled over the sizes, a language present at both sizes resampled
  as one cluster (``statistics.pooled_over_sizes: language_clusters``).
- figures (:func:`~optical_viz.experiments.figures.optical_figures`): the dev learning curves,
  every arm on every test set, the contrasts, the scaling curves.

Each test set keeps its own languages (``data.test``): XQuAD-R / XQuAD the XQuAD-R languages,
FLORES the low-resource trained languages (P2) or the unseen ones.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from optical_viz.experiments import statistics as st
from optical_viz.experiments.figures import optical_figures
from optical_viz.rundir import atomic_write

__all__ = ["load_arms", "summary_table", "contrast_table", "scaling_table", "write_optical_reports"]

P1, P2 = "xquad-r.test", "flores.test.low_resource"


def _arm_name(doc: dict) -> str:
    return doc["variant"] if doc["method"] == "zero-shot" else doc["method"]


def load_arms(results_dir, question: str, evaluation: str, langs=None, metric: str = "recall@1") -> dict:
    """arm -> ``{seed: {unit: (Q,) values in percent}}`` of one evaluation (xx->en rows), read
    from ``<results>/<question>/*.<evaluation>.json`` and their per-query NPZ; ``langs``: keep
    these languages only. Scaling runs: the unit is ``n<size>:<lang>`` and the arm
    ``<arm>@<size>``."""
    out: dict = {}
    for path in sorted((Path(results_dir) / question).glob(f"*.{evaluation}.json")):
        doc = json.loads(path.read_text())
        if doc["evaluation"]["name"] != evaluation:
            continue
        arm = _arm_name(doc) + (f"@{doc['langset'][1:]}" if question.endswith("scale") else "")
        arrays = np.load(path.with_suffix(".npz"))
        per = out.setdefault(arm, {}).setdefault(int(doc["seed"]), {})
        for key in arrays.files:
            lang, direction, m = key.split("|")
            if m == metric and direction == "xx->en" and (langs is None or lang in langs):
                per[lang] = 100.0 * arrays[key].astype(np.float64)
    return {a: seeds for a, seeds in out.items() if any(seeds.values())}


def _languages(plan) -> dict[str, list[str] | None]:
    """Each test set's languages (None: every language its files hold)."""
    xq = plan.xquad_r_languages
    return {"xquad-r.test": xq, "xquad.test": xq, "flores.test.low_resource": plan.low_resource,
            "flores.test.unseen": None, "xquad-r.test.english": None}


def summary_table(plan, results_dir, n: int | None = None) -> pd.DataFrame:
    """One row per (test set, arm): estimate, lo, hi of Recall@1 (or AER), seeds, languages."""
    n = n or plan.options().n_bootstrap
    s = plan.p.statistics
    rows = []
    for name, langs in _languages(plan).items():
        for arm, values in load_arms(results_dir, "rq3", name, langs).items():
            e = st.hierarchical_bootstrap(values, n=n, seed=s.bootstrap_seed, interval=s.interval)
            mrr = st.hierarchical_bootstrap(load_arms(results_dir, "rq3", name, langs, "mrr@10")[arm], n=n,
                                            seed=s.bootstrap_seed, interval=s.interval)
            rows.append({"set": name, "arm": arm, "metric": "recall@1", "estimate": e.estimate, "lo": e.lo, "hi": e.hi,
                         "mrr@10": mrr.estimate, "seeds": len(values), "languages": len(next(iter(values.values())))})
    aer: dict = {}
    for path in sorted((Path(results_dir) / "rq3").glob("*.aer.roen.json")):
        doc = json.loads(path.read_text())
        aer.setdefault(_arm_name(doc), []).append(100.0 * float(np.mean([r["aer"] for r in doc["results"]])))
    rows += [{"set": "aer.roen", "arm": arm, "metric": "aer", "estimate": float(np.mean(v)), "lo": float(np.min(v)),
              "hi": float(np.max(v)), "mrr@10": None, "seeds": len(v), "languages": 1} for arm, v in aer.items()]
    return pd.DataFrame(rows)


def contrast_table(plan, results_dir, n: int | None = None) -> pd.DataFrame:
    """The Holm family of ``statistics.family`` on P1 and P2 (+ the scaling DiD when its runs exist)."""
    n = n or plan.options().n_bootstrap
    s = plan.p.statistics
    kw = dict(n=n, seed=s.bootstrap_seed, interval=s.interval, margin=s.equivalence_margin, alpha=s.alpha)
    langs = _languages(plan)
    contrasts = {}
    for primary in (P1, P2):
        arms = load_arms(results_dir, "rq3", primary, langs[primary])
        for a, b in s.family:
            if a in arms and b in arms:
                contrasts[(f"{a} {primary}", f"{b} {primary}")] = st.paired_difference(arms[a], arms[b], **kw)
    did = _scaling_did(plan, results_dir, kw)
    if did is not None:
        contrasts[("ot_best - mse @50 shared_5", "ot_best - mse @5 shared_5")] = did
    if not contrasts:
        return pd.DataFrame()
    return st.family_table(contrasts, alpha=s.alpha)


def _shared(plan) -> list[str]:
    from optical_viz import paths
    from optical_viz.config import DistillConfig

    small = min(plan.p.scaling.sizes)
    return list(DistillConfig.from_yaml(paths.REPO_ROOT / plan.p.scaling.sizes[small]).languages)[: plan.s.scaling_languages]


def _scaling_did(plan, results_dir, kw):
    sizes = sorted(plan.p.scaling.sizes)
    arms = load_arms(results_dir, "rq3-scale", "flores.test", _shared(plan))
    need = [f"{a}@{z}" for a in ("ot_best", "mse") for z in sizes]
    if not all(k in arms for k in need):
        return None
    big, ref = sizes[-1], sizes[0]
    return st.difference_in_differences(arms[f"ot_best@{big}"], arms[f"mse@{big}"], arms[f"ot_best@{ref}"],
                                        arms[f"mse@{ref}"], **kw)


def scaling_table(plan, results_dir, n: int | None = None) -> pd.DataFrame:
    """Per scaling arm, group and size: Recall@1 with its interval; and per arm and group, its
    difference from mse pooled over the sizes (units ``n<size>:<lang>``, one cluster per language)."""
    n = n or plan.options().n_bootstrap
    s = plan.p.statistics
    shared = _shared(plan)
    groups = {"trained": ("flores.test", None), "shared_5": ("flores.test", shared), "unseen": ("flores.test.unseen", None)}
    rows = []
    for group, (name, langs) in groups.items():
        arms = load_arms(results_dir, "rq3-scale", name, langs)
        for key, values in arms.items():
            e = st.hierarchical_bootstrap(values, n=n, seed=s.bootstrap_seed, interval=s.interval)
            arm, size = key.split("@")
            rows.append({"group": group, "arm": arm, "size": int(size), "estimate": e.estimate, "lo": e.lo, "hi": e.hi})
        pooled: dict = {}
        for key, values in arms.items():
            arm, size = key.split("@")
            for seed, per in values.items():
                pooled.setdefault(arm, {}).setdefault(seed, {}).update({f"n{size}:{lang}": v for lang, v in per.items()})
        if "mse" not in pooled:
            continue
        for arm in [a for a in pooled if a != "mse"]:
            units = sorted(set(pooled[arm][next(iter(pooled[arm]))]) & set(pooled["mse"][next(iter(pooled["mse"]))]))
            a = {seed: {u: per[u] for u in units} for seed, per in pooled[arm].items()}
            b = {seed: {u: per[u] for u in units} for seed, per in pooled["mse"].items()}
            c = st.paired_difference(a, b, n=n, seed=s.bootstrap_seed, interval=s.interval,
                                     margin=s.equivalence_margin, alpha=s.alpha,
                                     clusters={u: u.split(":", 1)[1] for u in units})
            rows.append({"group": group, "arm": f"{arm} - mse (pooled, language clusters)", "size": None,
                         "estimate": c.estimate, "lo": c.lo, "hi": c.hi})
    return pd.DataFrame(rows)


def write_optical_reports(plan, results_dir: str | os.PathLike, figures_dir: str | os.PathLike) -> list[Path]:
    """``rq3_summary.csv``, ``rq3_contrasts.csv``, ``rq3_scaling.csv`` (those with results) and
    the figures."""
    results_dir = Path(results_dir)
    written = []
    tables = {"rq3_summary": summary_table(plan, results_dir), "rq3_contrasts": contrast_table(plan, results_dir),
              "rq3_scaling": scaling_table(plan, results_dir)}
    for name, frame in tables.items():
        if not frame.empty:
            written.append(atomic_write(results_dir / f"{name}.csv", frame.to_csv(index=False, float_format="%.4f")))
    tuning = results_dir / "tuning.csv"
    tables["tuning"] = pd.read_csv(tuning) if tuning.is_file() else None
    return written + optical_figures(tables, figures_dir, plan.checkpoints, plan.s.scale)
