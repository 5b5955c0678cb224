"""Statistics and tables of the grid's results, rebuilt from the result files every time.

    summary.csv              collect(): run x eval x lang x direction x metric
    summary_methods.csv      aggregate(): the same, seeds averaged per method, 95% CIs
    <question>_paired_tests.csv   paired_tests(): OT against contrastive, per language
    <question>_table.md      question_table(): language-averaged headline metrics per method
    findings.md              findings(): which method won where, in words

Every function iterates over the questions, tasks, directions and language sets found in
the results: a question added to the grid file gets its rows, tests, table and findings
without code changes.
"""
from __future__ import annotations

import json
import os
import typing
from pathlib import Path

import numpy as np

from optical_viz.experiments.grid import TRAINING_METHODS
from optical_viz.retrieval._metrics import MRR_CUTOFF, RECALL_KS

# the metrics of a result file, in table order (named as retrieval.query_metrics names them)
RETRIEVAL_METRICS = (*(f"recall@{k}" for k in RECALL_KS), f"mrr@{MRR_CUTOFF}", "map")

# ----------------------------------------------------------------------------- collecting


def result_files(results_dir: Path) -> list[Path]:
    """The retrieval result files under ``results_dir/<question>/`` (word-alignment results,
    ``<run>.alignment.<pair>.json``, have no per-query values: see ``protocol_report``)."""
    return sorted(p for p in Path(results_dir).glob("*/*.json")
                  if not p.name.startswith(".") and ".alignment." not in p.name)


def collect(results_dir: str | os.PathLike):
    """All result files under ``results_dir`` as one long DataFrame (``summary.csv``).

    One row per run x evaluation x lang x direction x metric, with columns scale, question,
    run_id, method, langset, n_languages, seed, task, scoring, eval_langs (trained / unseen),
    lang, direction, metric, value, ci_lo, ci_hi, n, commit, dirty.
    """
    import pandas as pd

    rows = []
    for path in result_files(Path(results_dir)):
        doc = json.loads(path.read_text())
        ev = doc["evaluation"]
        for r in doc["results"]:
            for m in RETRIEVAL_METRICS:
                if m not in r:
                    continue
                lo, hi = r.get(f"{m}_ci", [np.nan, np.nan])
                rows.append(dict(
                    scale=doc["scale"], question=doc["question"], run_id=doc["run_id"], method=doc["method"],
                    langset=doc["langset"], n_languages=doc["n_languages"], seed=doc["seed"], task=doc["task"],
                    scoring=doc["scoring"], eval_langs=ev["langs"], lang=r["lang"], direction=r["direction"],
                    metric=m, value=r[m], ci_lo=lo, ci_hi=hi, n=r["n"],
                    commit=doc["code"]["commit"], dirty=doc["code"]["dirty"],
                ))
    return pd.DataFrame(rows)


def _load_per_query(results_dir: Path) -> dict:
    """(question, langset, method, eval name) -> {seed: {(lang, direction, metric): values}}."""
    out: dict = {}
    for path in result_files(results_dir):
        doc = json.loads(path.read_text())
        npz = path.with_suffix(".npz")
        if not npz.is_file():
            continue
        with np.load(npz) as z:
            arrays = {tuple(k.split("|")): z[k].astype(np.float64) for k in z.files}
        key = (doc["question"], doc["langset"], doc["method"], doc["evaluation"]["name"])
        out.setdefault(key, {})[doc["seed"]] = (doc, arrays)
    return out


def aggregate(results_dir: str | os.PathLike, n_bootstrap: int = 1000):
    """Seeds averaged per method (``summary_methods.csv``).

    For each (question, language set, method, evaluation, lang, direction, metric): the
    per-query values averaged over seeds, their mean and a 95% bootstrap interval over
    queries (``ci_lo``/``ci_hi``), the number of seeds and the standard deviation of the
    per-seed means (``seed_sd``, NaN for one seed). ``lang == "all"`` pools the languages
    (also when there is only one).
    """
    import pandas as pd

    from optical_viz.retrieval import bootstrap_ci

    rows = []
    for (question, langset, method, ev_name), by_seed in _load_per_query(Path(results_dir)).items():
        doc = next(iter(by_seed.values()))[0]
        keys = sorted(set.intersection(*[set(a) for _, a in by_seed.values()]))
        langs = [l for l in dict.fromkeys(k[0] for k in keys)]
        for direction in dict.fromkeys(k[1] for k in keys):
            for metric in RETRIEVAL_METRICS:
                per_lang = {}
                for lang in langs:
                    if (lang, direction, metric) in keys:
                        per_lang[lang] = np.stack([a[(lang, direction, metric)] for _, a in by_seed.values()])  # (S, Q)
                if not per_lang:
                    continue
                per_lang["all"] = np.concatenate(list(per_lang.values()), axis=1)  # (S, sum Q), even for one
                for lang, v in per_lang.items():
                    ci = bootstrap_ci(v.mean(0), n_resamples=n_bootstrap, seed=0)
                    seed_means = v.mean(1)
                    rows.append(dict(
                        question=question, langset=langset, n_languages=doc["n_languages"], method=method,
                        evaluation=ev_name, task=doc["task"], scoring=doc["scoring"],
                        eval_langs=doc["evaluation"]["langs"], lang=lang, direction=direction, metric=metric,
                        value=ci.estimate, ci_lo=ci.low, ci_hi=ci.high, n=v.shape[1], seeds=v.shape[0],
                        seed_sd=float(seed_means.std(ddof=1)) if v.shape[0] > 1 else np.nan,
                    ))
    return pd.DataFrame(rows)


def paired_tests(results_dir: str | os.PathLike, question: str = "rq1", a: str = "contrastive", b: str = "ot",
                 metrics: typing.Sequence[str] = ("recall@1", "mrr@10", "map")):
    """Paired permutation tests of method ``b`` against ``a`` (``delta = b - a``).

    Per (language set, evaluation, lang, direction, metric), on per-query values averaged
    over the seeds both methods have; ``lang == "all"`` pools the languages. Columns:
    langset, evaluation, lang, direction, metric, n, seeds, a, b, delta, delta_lo, delta_hi, p_value.
    """
    import pandas as pd

    from optical_viz.retrieval import paired_test

    pq = _load_per_query(Path(results_dir))
    rows = []
    for (q, langset, method, ev_name), by_a in pq.items():
        if q != question or method != a or (q, langset, b, ev_name) not in pq:
            continue
        by_b = pq[(q, langset, b, ev_name)]
        seeds = sorted(set(by_a) & set(by_b))
        if not seeds:
            continue
        keys = sorted(set.intersection(*[set(by_a[s][1]) for s in seeds], *[set(by_b[s][1]) for s in seeds]))
        for direction in dict.fromkeys(k[1] for k in keys):
            for metric in metrics:
                langs = [k[0] for k in keys if k[1] == direction and k[2] == metric]
                if not langs:
                    continue
                va = {l: np.mean([by_a[s][1][(l, direction, metric)] for s in seeds], 0) for l in langs}
                vb = {l: np.mean([by_b[s][1][(l, direction, metric)] for s in seeds], 0) for l in langs}
                va["all"] = np.concatenate([va[l] for l in langs])  # pooled (also for one language)
                vb["all"] = np.concatenate([vb[l] for l in langs])
                for lang in va:
                    t = paired_test(va[lang], vb[lang], method="permutation", seed=0)
                    rows.append(dict(langset=langset, evaluation=ev_name, lang=lang, direction=direction,
                                     metric=metric, n=t.n, seeds=len(seeds), a=t.mean_a, b=t.mean_b, delta=t.delta,
                                     delta_lo=t.delta_ci[0], delta_hi=t.delta_ci[1], p_value=t.p_value))
    cols = ["langset", "evaluation", "lang", "direction", "metric", "n", "seeds", "a", "b", "delta",
            "delta_lo", "delta_hi", "p_value"]
    return pd.DataFrame(rows, columns=cols)


# ----------------------------------------------------------------------------- tables

# the protocol's test arms (results/full/protocol.yaml: test.*.arms) after the grid's methods
PROTOCOL_ARMS = ("contrastive_best", "ot_published", "ot_best", "ot_best+contrastive")
METHOD_ORDER = {m: i for i, m in enumerate((*TRAINING_METHODS, *PROTOCOL_ARMS))}
EVAL_LABELS = {
    ("xquad-r", "xx->en"): "XQuAD-R L\u2192en",
    ("xquad-r", "xx->pool"): "XQuAD-R L\u2192pool",
    ("xquad", "xx->en"): "XQuAD paragraphs",
    ("flores", "xx->en"): "FLORES L\u2192eng",
    ("flores", "en->xx"): "FLORES eng\u2192L",
}
METRIC_NAMES = {"recall@1": "R@1", "recall@5": "R@5", "recall@10": "R@10", "mrr@10": "MRR@10", "map": "mAP"}


def eval_label(task: str, direction: str) -> str:
    """``XQuAD-R L->en`` for known (task, direction) pairs, else ``task direction``."""
    return EVAL_LABELS.get((task, direction), f"{task} {direction}")


def headline_metric(direction: str) -> str:
    """mAP for the multilingual pool (several relevant candidates), Recall@1 elsewhere."""
    return "map" if direction == "xx->pool" else "recall@1"


def headline_columns(frame) -> list[tuple[str, str, str, str]]:
    """The (task, eval_langs, direction, scoring) of a question's results, in reading order:
    tasks, language kinds and directions as they first appear, dense before MaxSim."""
    keys = list(dict.fromkeys(zip(frame["task"], frame["eval_langs"], frame["direction"], frame["scoring"])))
    first = {}
    for i, k in enumerate(keys):
        for j in range(1, 4):
            first.setdefault(k[:j], i)
    return sorted(keys, key=lambda k: (first[k[:1]], first[k[:2]], first[k[:3]], k[3] != "dense", k[3]))


def fmt(v, lo, hi) -> str:
    return f"{100 * v:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _md_table(d, cols: list[tuple[str, str, str, str, str]], title: str) -> list[str]:
    """Markdown rows: one per (language set,) method, one column per (task, eval_langs,
    direction, scoring, metric)."""
    def pick(rows, t, el, di, sc, m):
        return rows[(rows["task"] == t) & (rows["eval_langs"] == el) & (rows["direction"] == di)
                    & (rows["scoring"] == sc) & (rows["metric"] == m)]

    cols = [c for c in cols if len(pick(d, *c))]
    if not cols:
        return []
    langsets = list(dict.fromkeys(d.sort_values("n_languages", kind="stable")["langset"]))
    head = (["language set"] if len(langsets) > 1 else []) + ["method"]
    head += [f"{eval_label(t, di)}{' unseen' if el == 'unseen' else ''} {'MaxSim' if sc == 'maxsim' else sc} "
             f"{METRIC_NAMES.get(m, m)}" for t, el, di, sc, m in cols]
    lines = [title, "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for langset in langsets:
        dl = d[d["langset"] == langset]
        for method in sorted(dl["method"].unique(), key=lambda m: METHOD_ORDER.get(m, 99)):
            rows = dl[dl["method"] == method]
            seeds = int(rows["seeds"].max())
            cells = ([langset] if len(langsets) > 1 else []) + [f"{method} ({seeds} seed{'s' if seeds > 1 else ''})"]
            for c in cols:
                r = pick(rows, *c)
                cells.append(fmt(*r[["value", "ci_lo", "ci_hi"]].iloc[0]) if len(r) else "")
            lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def question_table(methods_frame, question: str, scale: str) -> str:
    """The tables of one question (markdown): language-averaged metrics per method, in %,
    with 95% CIs.

    First the headline (R@1; mAP for the pool) of every evaluation, then every metric of the
    question's first task with dense scoring, one table per direction.
    """
    d = methods_frame[(methods_frame["question"] == question) & (methods_frame["lang"] == "all")]
    if d.empty:
        return ""
    note = (f"({scale} scale; averages over languages, in %, with 95% bootstrap intervals over queries; "
            "per-query values averaged over the seeds)")
    cols = headline_columns(d)
    name = question.upper()
    lines = _md_table(d, [(*c, headline_metric(c[2])) for c in cols], f"**{name}, headline** {note}")
    task, langs = cols[0][0], cols[0][1]
    for t, el, direction, scoring in cols:
        if (t, el, scoring) == (task, langs, "dense"):
            lines += _md_table(d, [(t, el, direction, scoring, m) for m in RETRIEVAL_METRICS],
                               f"**{name}, {eval_label(task, direction)}, dense, all metrics** {note}")
    return "\n".join(lines)


def findings(methods_frame, tests: dict, scale: str) -> str:
    """Plain statements of which method won where (markdown), from the aggregated results.

    Per question and evaluation (languages pooled): the best method and every method whose
    95% interval overlaps the best one's ("tied within the intervals"); then OT against
    contrastive from the paired permutation test: a difference only when its 95% interval
    excludes 0 and p < 0.05.
    tests: question -> ``paired_tests(...)`` frame.
    """
    lines = [f"Findings ({scale} scale), generated from results/{scale}: intervals are 95% bootstrap "
             "intervals over queries; 'tied' means the intervals overlap.", ""]
    d = methods_frame[methods_frame["lang"] == "all"]
    for question in d["question"].unique():
        dq = d[d["question"] == question].sort_values(["n_languages", "eval_langs", "scoring"], kind="stable")
        lines.append(f"### {question.upper()}")
        keys = ["langset", "task", "scoring", "eval_langs", "direction", "metric"]
        for key, g in dq.groupby(keys, sort=False):
            langset, task, scoring, eval_langs, direction, metric = key
            if metric != headline_metric(direction):
                continue
            g = g.sort_values("value", ascending=False)
            best = g.iloc[0]
            tied = [r["method"] for _, r in g.iloc[1:].iterrows() if r["ci_hi"] >= best["ci_lo"]]
            where = f"{eval_label(task, direction)} ({scoring}"
            where += f", {langset}" + (", unseen languages" if eval_langs == "unseen" else "") + ")"
            name = METRIC_NAMES.get(metric, metric)
            verdict = f"best {best['method']} {fmt(best['value'], best['ci_lo'], best['ci_hi'])}"
            verdict += f"; tied within the intervals: {', '.join(tied)}" if tied else "; no other method within its interval"
            t = tests.get(question)
            if t is not None and not t.empty:
                r = t[(t["langset"] == langset) & (t["evaluation"] == g.iloc[0]["evaluation"]) & (t["lang"] == "all")
                      & (t["direction"] == direction) & (t["metric"] == metric)]
                if len(r):
                    r = r.iloc[0]
                    if (r["delta_lo"] > 0 or r["delta_hi"] < 0) and r["p_value"] < 0.05:
                        who = "OT better than contrastive" if r["delta"] > 0 else "contrastive better than OT"
                    else:
                        who = "OT vs contrastive: no difference within the intervals"
                    verdict += (f"; {who} ({100 * r['delta']:+.1f} points [{100 * r['delta_lo']:+.1f}, "
                                f"{100 * r['delta_hi']:+.1f}], p = {r['p_value']:.3g})")
            lines.append(f"- {where}, {name}: {verdict}.")
        lines.append("")
    return "\n".join(lines)

