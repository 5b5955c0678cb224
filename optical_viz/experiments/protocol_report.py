"""The protocol's test-stage report: summaries, Holm families, equivalence and interaction.

Reads the test result files (``<results>/<question>/<run>.<eval>.json`` and ``.npz``
per-query values) and the protocol, and writes, with the intervals of
:mod:`optical_viz.experiments.statistics` (hierarchical bootstrap over seeds, languages and
queries; values in R@1 points)::

    rq1_summary.csv       arm x metric: estimate, 95% interval, seeds, configurations tried, setting;
                          AER rows (percent, lower is better): mean over seeds, lo/hi = min/max seed
    rq1_contrasts.csv     the protocol's RQ1 contrasts: paired difference, p, Holm, TOST (+-1 point)
    rq2_summary.csv       size x arm x group (trained, shared_5, unseen): R@1 and the delta to zero-shot
    rq2_contrasts.csv     the RQ2 contrasts pooled over sizes, plus DiD(largest - reference) on shared_5
    rq2_interaction.csv   method x size: difference in differences per size and group
    rq2_directions.csv    descriptive: OT best - contrastive best and each - zero-shot on the trained
                          languages, per size and direction (L->eng, eng->L apart; unadjusted p)
    rq1_training.csv      per trained test model (run directory): the held-out signal (cosine,
    rq2_training.csv      translation gap, dev R@1) before and after training, the last steps'
                          loss, and the OT problems' convergence and plan entropy
    figures: rq1_arms, rq1_contrasts, rq2_contrasts, rq2_delta (delta to zero-shot per size:
             trained / shared-5 / unseen)

:func:`load_protocol_reports` reads these files (and ``tuning.csv``) back, as a notebook does.

RQ2 scores a language by both directions (L->eng and eng->L queries pooled: equal numbers).
A contrast pooled over sizes treats each (size, language) as one language unit.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from optical_viz.experiments import statistics as st
from optical_viz.experiments.selection import arm_setting, tuning_table, winners
from optical_viz.experiments.stage_configs import rq2_base_config
from optical_viz.protocol import Protocol
from optical_viz.rundir import atomic_write

RQ1_METRICS = {  # name -> (evaluation label, metric): the primary first
    "recall@1": ("xquad-r.test", "recall@1"),
    "mrr@10": ("xquad-r.test", "mrr@10"),
    "xquad_paragraphs_recall@1": ("xquad.test", "recall@1"),
    "maxsim_recall@1": ("xquad-r.maxsim.test", "recall@1"),
    "english_control_recall@1": ("xquad-r.test.english", "recall@1"),
}


def _docs(results_dir: Path, question: str) -> list[tuple[dict, Path]]:
    return [(json.loads(p.read_text()), p) for p in sorted((results_dir / question).glob("*.json"))]


def load_arms(results_dir, question: str, label: str, metric: str = "recall@1", *, langset: str | None = None,
              langs=None, join_directions: bool = True) -> dict[str, dict]:
    """Arm name -> ``{seed: {lang: per-query values in points}}`` of one evaluation.

    langset: only runs of this language set (RQ2 ``n20``; zero-shot's ``all`` always
    qualifies). langs: keep these languages (None: all). join_directions: one unit per
    language with the queries of every direction concatenated (else ``lang:direction``).
    """
    arms: dict[str, dict] = {}
    for doc, path in _docs(Path(results_dir), question):
        if doc["evaluation"]["name"] != label:
            continue
        if langset is not None and doc["langset"] not in (langset, "all"):
            continue
        values = np.load(path.with_suffix(".npz"))
        per: dict[str, list] = {}
        for key in sorted(values.files):
            lang, direction, m = key.split("|")
            if m != metric or lang == "all" or (langs is not None and lang not in langs):
                continue
            per.setdefault(lang if join_directions else f"{lang}:{direction}", []).append(100.0 * values[key])
        if per:
            arms.setdefault(doc["method"], {})[int(doc["seed"])] = {k: np.concatenate(v) for k, v in per.items()}
    return arms


def _n_configs(results_dir: Path, question: str) -> dict[str, int]:
    tuning = Path(results_dir) / "tuning.csv"
    if not tuning.is_file():
        return {}
    t = pd.read_csv(tuning)
    return t[t["question"] == question].groupby("method").size().to_dict()


def _est_row(arm: dict, n: int, seed: int) -> dict:
    e = st.hierarchical_bootstrap(arm, n=n, seed=seed)
    return {"estimate": e.estimate, "lo": e.lo, "hi": e.hi, "seeds": len(arm)}


def rq1_report(p: Protocol, results_dir) -> dict[str, pd.DataFrame]:
    """``rq1_summary`` and ``rq1_contrasts`` frames (empty when no RQ1 test result exists)."""
    results_dir = Path(results_dir)
    b = p.statistics.bootstrap
    n, seed = int(b.n), int(b.seed)
    configs = _n_configs(results_dir, "rq1")
    won = winners(p, tuning_table(results_dir))
    arms_spec = p.test.rq1.arms
    rows = []
    primary = None
    for name, (label, metric) in RQ1_METRICS.items():
        arms = load_arms(results_dir, "rq1", label, metric)
        if name == "recall@1":
            primary = arms
        for arm in [a for a in arms_spec if a in arms]:
            spec = arms_spec[arm]
            setting = _arm_setting(spec, won)
            rows.append({"arm": arm, "metric": name, **_est_row(arms[arm], n, seed),
                         "configs_tried": configs.get(spec.method, 0),
                         "setting": setting.run_key if setting is not None else ""})
    rows += _aer_rows(results_dir, arms_spec)
    summary = pd.DataFrame(rows)
    for col in ("seeds", "configs_tried"):  # counts stay integers where AER rows leave them empty
        if col in summary:
            summary[col] = summary[col].astype("Int64")
    contrasts = pd.DataFrame()
    primary = _complete(primary or {}, p.test.rq1.seeds)
    if primary:
        pairs = [tuple(c) for c in p.statistics.contrasts["rq1"] if c[0] in primary and c[1] in primary]
        if pairs:
            contrasts = st.contrast_table(primary, pairs, n=n, seed=seed,
                                          margin=float(p.statistics.equivalence.margin),
                                          alpha=float(p.statistics.alpha))
    return {"rq1_summary": summary, "rq1_contrasts": contrasts}


def _complete(arms: dict[str, dict], seeds) -> dict[str, dict]:
    """The arms with every protocol seed scored, on those seeds (zero-shot: its one model).
    Contrasts pair only these, so a report written while a stage is still running (another
    shard, another session) leaves the unfinished arms out instead of failing."""
    seeds = [int(x) for x in seeds]
    out = {a: {s: v[s] for s in seeds} for a, v in arms.items() if a != "zero-shot" and set(seeds) <= set(v)}
    return out | {a: v for a, v in arms.items() if a == "zero-shot" and len(v) == 1}


def _arm_setting(spec, won: dict):
    """The Setting an RQ1 test arm ran (None for zero-shot, or while its tuning is unfinished)."""
    return arm_setting(spec, won, "rq1") if spec.setting is not None or spec.method == "ot+contrastive" else None


def _aer_rows(results_dir: Path, arms_spec) -> list[dict]:
    """Word-alignment AER of each arm's students (corpus-level, one value per seed): the mean
    over seeds, and the lowest and highest seed as ``lo`` / ``hi`` (no bootstrap)."""
    values: dict[tuple[str, str, str], list[float]] = {}
    for doc, _ in _docs(results_dir, "rq1"):
        if doc["evaluation"].get("task") != "alignment":
            continue
        for r in doc["results"]:
            values.setdefault((doc["method"], f"aer_{r['pair']}_{r['method']}", doc["seed"]), []).append(100 * r["aer"])
    rows = []
    for arm in arms_spec:
        for metric in sorted({m for a, m, _ in values if a == arm}):
            per_seed = [v[0] for (a, m, _), v in values.items() if a == arm and m == metric]
            rows.append({"arm": arm, "metric": metric, "estimate": float(np.mean(per_seed)), "lo": min(per_seed),
                         "hi": max(per_seed), "seeds": len(per_seed)})
    return rows


def _rq2_groups(p: Protocol, size: int) -> dict[str, list[str] | None]:
    trained = rq2_base_config(p, size).languages
    shared = [lang for lang in p.splits.rq2.shared_languages if lang in trained]
    return {"trained": trained, "shared_5": shared, "unseen": None}


def _rq2_arms(p: Protocol, results_dir, size: int, group: str) -> dict[str, dict]:
    langs = _rq2_groups(p, size)[group]
    label = "flores.test.unseen" if group == "unseen" else "flores.test"
    return load_arms(results_dir, "rq2", label, langset=f"n{size}", langs=langs)


def _prefix(arm: dict, tag: str) -> dict:
    return {s: {f"{tag}:{lang}": v for lang, v in per.items()} for s, per in arm.items()}


def rq2_report(p: Protocol, results_dir) -> dict[str, pd.DataFrame]:
    """``rq2_summary``, ``rq2_contrasts`` and ``rq2_interaction`` frames."""
    results_dir = Path(results_dir)
    b = p.statistics.bootstrap
    n, seed = int(b.n), int(b.seed)
    margin, alpha = float(p.statistics.equivalence.margin), float(p.statistics.alpha)
    sizes = [int(s) for s in p.test.rq2.sizes]
    groups = p.test.rq2.groups
    rows, pooled = [], {}
    by = {(size, g): _rq2_arms(p, results_dir, size, g) for size in sizes for g in groups}
    for (size, g), arms in by.items():
        complete = _complete(arms, p.test.rq2.seeds)
        for arm, values in arms.items():
            row = {"size": size, "group": g, "arm": arm, **_est_row(values, n, seed)}
            if arm != "zero-shot" and arm in complete and "zero-shot" in complete:
                d = st.paired_difference(values, arms["zero-shot"], n=n, seed=seed, margin=margin, alpha=alpha)
                row |= {"delta_zero_shot": d.estimate, "delta_lo": d.lo, "delta_hi": d.hi}
            rows.append(row)
            if g == "trained" and arm in complete:  # the Holm family pools the sizes: (size, language) units
                pooled.setdefault(arm, {})
                for s, per in _prefix(values, f"n{size}").items():
                    pooled[arm].setdefault(s, {}).update(per)
    summary = pd.DataFrame(rows)
    for col in ("seeds", "configs_tried"):  # counts stay integers where AER rows leave them empty
        if col in summary:
            summary[col] = summary[col].astype("Int64")
    family: dict = {}
    complete = {a: v for a, v in pooled.items() if all(a in by[(size, "trained")] for size in sizes)}
    for a, bb in (tuple(c) for c in p.statistics.contrasts["rq2"]):
        if a in complete and bb in complete:
            family[(a, bb)] = st.paired_difference(complete[a], complete[bb], n=n, seed=seed, margin=margin, alpha=alpha)
    inter = p.statistics.interaction["rq2"]
    (ca, cb), ref = inter.contrast, int(inter.reference_size)
    irows = []
    for g in inter.groups:
        for size in inter.sizes:
            seeds = p.test.rq2.seeds
            big, small = _complete(by.get((int(size), g), {}), seeds), _complete(by.get((ref, g), {}), seeds)
            if not all(k in big and k in small for k in (ca, cb)):
                continue
            c = st.difference_in_differences(big[ca], big[cb], small[ca], small[cb], n=n, seed=seed,
                                             margin=margin, alpha=alpha)
            irows.append({"group": g, "size": int(size), "reference_size": ref, "a": ca, "b": cb,
                          "estimate": c.estimate, "lo": c.lo, "hi": c.hi, "p_value": c.p_value,
                          "equivalent": c.equivalent})
            if int(size) == int(inter.in_holm_family.size) and g == inter.in_holm_family.group:
                family[(f"DiD {ca} - {cb}", f"n{size} - n{ref} ({g})")] = c
    contrasts = st.family_table(family, alpha=alpha) if family else pd.DataFrame()
    directions = _rq2_directions(p, results_dir, sizes, [(ca, cb), (ca, "zero-shot"), (cb, "zero-shot")],
                                 n=n, seed=seed, margin=margin, alpha=alpha)
    return {"rq2_summary": summary, "rq2_contrasts": contrasts, "rq2_interaction": pd.DataFrame(irows),
            "rq2_directions": directions}


def _rq2_directions(p: Protocol, results_dir: Path, sizes: list[int], pairs: list[tuple[str, str]], **kw) -> pd.DataFrame:
    """Descriptive, outside the Holm family: each pair's paired difference on the trained
    languages, per size and per direction (L->eng and eng->L apart; unadjusted p)."""
    seeds = p.test.rq2.seeds
    rows = []
    for size in sizes:
        per = load_arms(results_dir, "rq2", "flores.test", langset=f"n{size}",
                        langs=_rq2_groups(p, size)["trained"], join_directions=False)
        for direction in ("xx->en", "en->xx"):
            tail = f":{direction}"
            arms = _complete({a: {s: {k.removesuffix(tail): v for k, v in by_lang.items() if k.endswith(tail)}
                                  for s, by_lang in by_seed.items()} for a, by_seed in per.items()}, seeds)
            for a, b in pairs:
                if a in arms and b in arms:
                    d = st.paired_difference(arms[a], arms[b], **kw)
                    rows.append({"size": size, "direction": direction, "a": a, "b": b, "estimate": d.estimate,
                                 "lo": d.lo, "hi": d.hi, "p_value": d.p_value})
    return pd.DataFrame(rows)


def training_signal(results_dir, question: str, window: int = 10) -> pd.DataFrame:
    """One row per kept training log (``<results>/<question>/training/*.metrics.jsonl``, see
    :func:`optical_viz.experiments.run.keep_training_log`): ``run`` (the run directory),
    ``steps``, for each held-out key (:data:`optical_viz.monitor.HELDOUT_KEYS`) its value at
    the first and the last logged step (``<key>@start``, ``<key>@end``), and the mean over
    the first and the last ``window`` steps of ``loss``, ``ot_converged`` and
    ``ot_plan_entropy`` where logged (``<key>@first``, ``<key>@last``). Empty without logs."""
    from optical_viz.monitor import HELDOUT_KEYS
    from optical_viz.rundir import read_metrics

    rows = []
    for path in sorted((Path(results_dir) / question / "training").glob("*.metrics.jsonl")):
        recs = read_metrics(path)
        row = {"run": path.name.removesuffix(".metrics.jsonl"), "steps": max((r["step"] for r in recs), default=0)}
        for key in HELDOUT_KEYS:
            logged = [r[key] for r in recs if key in r]
            if logged:
                row |= {f"{key}@start": logged[0], f"{key}@end": logged[-1]}
        for key in ("loss", "ot_converged", "ot_plan_entropy"):
            per_step = [r[key] for r in recs if key in r and r.get("step", 0) > 0]
            if per_step:
                row |= {f"{key}@first": float(np.mean(per_step[:window])), f"{key}@last": float(np.mean(per_step[-window:]))}
        rows.append(row)
    return pd.DataFrame(rows)


def write_protocol_reports(p: Protocol, results_dir: str | os.PathLike, figures_dir: str | os.PathLike) -> list[Path]:
    """Every frame as ``<results>/<name>.csv`` (non-empty ones) and the figures; the paths written."""
    results_dir, figures_dir = Path(results_dir), Path(figures_dir)
    written = []
    frames = {**rq1_report(p, results_dir), **rq2_report(p, results_dir),
              **{f"{q}_training": training_signal(results_dir, q) for q in ("rq1", "rq2")}}
    for name, frame in frames.items():
        if not frame.empty:
            path = results_dir / f"{name}.csv"
            atomic_write(path, frame.to_csv(index=False, float_format="%.4f"))
            written.append(path)
    from optical_viz.experiments.figures import protocol_figures

    written += protocol_figures(frames, figures_dir, p.scale)
    return written


REPORTS = ("tuning", "rq1_summary", "rq1_contrasts", "rq2_summary", "rq2_contrasts", "rq2_interaction",
           "rq2_directions", "rq1_training", "rq2_training")


@dataclasses.dataclass
class ProtocolReports:
    """The report files of one protocol results directory, read back.

    Every frame is the CSV of the same name under ``results_dir`` (``tuning.csv``: one row per
    dev configuration; the others: as :func:`write_protocol_reports` writes them), or an empty
    DataFrame when that file is not there yet (its stage has not run).
    """

    results_dir: Path
    tuning: pd.DataFrame
    rq1_summary: pd.DataFrame
    rq1_contrasts: pd.DataFrame
    rq2_summary: pd.DataFrame
    rq2_contrasts: pd.DataFrame
    rq2_interaction: pd.DataFrame
    rq2_directions: pd.DataFrame
    rq1_training: pd.DataFrame
    rq2_training: pd.DataFrame

    @property
    def frames(self) -> dict[str, pd.DataFrame]:
        """Name -> frame, as :func:`~optical_viz.experiments.figures.protocol_figures` takes them."""
        return {name: getattr(self, name) for name in REPORTS}


def load_protocol_reports(results_dir: str | os.PathLike) -> ProtocolReports:
    """Read ``tuning.csv`` and the test-stage reports of ``results_dir`` (``results/full``,
    ``results/quick``).

    >>> r = load_protocol_reports("results/quick")                                   # doctest: +SKIP
    >>> r.rq1_contrasts[["a", "b", "estimate", "lo", "hi", "p_holm", "equivalent"]]   # doctest: +SKIP
    >>> protocol_figures(r.frames, "/tmp/figures", "quick")    # the figures, redrawn  # doctest: +SKIP

    Raises FileNotFoundError when ``results_dir`` is not a directory.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"no results directory {results_dir}")
    frames = {name: pd.read_csv(results_dir / f"{name}.csv") if (results_dir / f"{name}.csv").is_file() else pd.DataFrame()
              for name in REPORTS}
    return ProtocolReports(results_dir, **frames)
