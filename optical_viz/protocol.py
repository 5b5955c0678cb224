"""The pre-registered protocol of the RQ1 / RQ2 grid (``results/full/protocol.yaml``).

One YAML file, committed before any test-split number of the grid exists, fixes the splits,
metrics, methods, tuning budgets, seeds, statistics and compute budget. This module reads it,
checks that it is complete and consistent, and holds the few pieces of logic that the grid
code must share with it:

- :func:`load_protocol`: the YAML as a dict, after :func:`validate_protocol`.
- :func:`split_articles`: the seeded by-article split procedure (the YAML lists its result).
- :func:`question_articles`: question id -> article title, read the same way in every
  XQuAD and XQuAD-R language file.
- :func:`estimate`: the compute estimate (wall seconds) from the YAML's budget section.
- :func:`require_tuned`: the rule "test evaluation refuses to run for a method whose
  tuning is not finished".

>>> p = load_protocol()
>>> len(p["splits"]["rq1"]["dev_articles"]), len(p["splits"]["rq1"]["test_articles"])
(16, 32)
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import yaml

from optical_viz import paths

__all__ = [
    "PROTOCOL_PATH",
    "load_protocol",
    "validate_protocol",
    "split_articles",
    "question_articles",
    "tuning_budget",
    "require_tuned",
    "estimate",
    "maxsim_subset",
]

PROTOCOL_PATH = paths.REPO_ROOT / "results" / "full" / "protocol.yaml"
OT_FIELDS = ("objective", "plan", "eps", "eps_mode", "eps_scaling", "marginals", "rho", "layer")
TRAINED_METHODS = ("mse", "contrastive", "ot")  # the methods with a dev budget


def load_protocol(path: str | os.PathLike | None = None) -> dict:
    """Read and validate the protocol YAML (default :data:`PROTOCOL_PATH`).

    Raises:
        ValueError: naming the first field that is missing or inconsistent.
    """
    path = Path(path) if path is not None else PROTOCOL_PATH
    with open(path, encoding="utf-8") as f:
        protocol = yaml.safe_load(f)
    validate_protocol(protocol)
    return protocol


def split_articles(titles: Iterable[str], seed: int, n_dev: int) -> tuple[list[str], list[str]]:
    """The by-article split: sort the titles, permute them with ``default_rng(seed)``, the first
    ``n_dev`` are dev, the rest test; both lists are returned sorted.

    >>> split_articles(["c", "a", "b", "d"], seed=0, n_dev=1)[0]
    ['c']
    """
    titles = sorted(titles)
    if len(set(titles)) != len(titles):
        raise ValueError(f"article titles must be unique, got {len(titles) - len(set(titles))} duplicates")
    if not 0 < n_dev < len(titles):
        raise ValueError(f"n_dev must be in (0, {len(titles)}), got {n_dev}")
    perm = np.random.default_rng(seed).permutation(len(titles))
    return sorted(titles[i] for i in perm[:n_dev]), sorted(titles[i] for i in perm[n_dev:])


def question_articles(set_name: str, lang: str, root: str | os.PathLike | None = None) -> dict[str, str]:
    """Question id -> title of the article that holds it, in one language file of a set.

    set_name: "xquad" or "xquad_r"; lang: any code the loaders accept ("de", "deu_Latn").
    Both sets are SQuAD v1.1 JSON (``data[*].title``, ``data[*].paragraphs[*].qas[*].id``),
    so the article of a question is read the same way in every file.
    """
    from optical_viz.data import loaders  # the data layer (and its manifest checks) only when used

    if set_name not in ("xquad", "xquad_r"):
        raise ValueError(f"set_name must be 'xquad' or 'xquad_r', got {set_name!r}")
    _, rel = loaders._resolve_in(set_name, lang, root)
    data = loaders._read_json(set_name, rel, root)
    out: dict[str, str] = {}
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for q in paragraph["qas"]:
                if q["id"] in out:
                    raise ValueError(f"{set_name} {lang}: question {q['id']} appears twice")
                out[q["id"]] = article["title"]
    return out


def maxsim_subset(test_question_ids: Iterable[str], n: int, seed: int) -> list[str]:
    """The fixed subset of test questions scored with MaxSim: ``n`` of the sorted ids drawn
    with ``default_rng(seed).choice(..., replace=False)``, returned sorted."""
    ids = sorted(set(test_question_ids))
    if n > len(ids):
        raise ValueError(f"asked for {n} questions of {len(ids)}")
    pick = np.random.default_rng(seed).choice(len(ids), n, replace=False)
    return sorted(ids[i] for i in pick)


# ----------------------------------------------------------------------------- tuning rule


def tuning_budget(protocol: Mapping, question: str, method: str) -> int:
    """Number of dev configurations ``method`` gets for ``question`` ("rq1" or "rq2")."""
    tuning = protocol["tuning"][question]
    if question == "rq2":
        return int(tuning["budget"].get(method, 0))
    return int(tuning[method]["budget"]) if method in tuning else 0


def require_tuned(protocol: Mapping, question: str, method: str, rows: Iterable[Mapping]) -> None:
    """Refuse (ValueError) the test stage of ``method`` unless its tuning is finished.

    rows: the rows of ``results/full/tuning.csv`` as dicts with at least ``question``,
    ``method``, ``variant`` and ``steps``. Finished: the method has as many distinct dev
    configurations at the protocol's step count as its budget. Zero-shot needs no tuning; a
    combined method (``ot+contrastive``) needs every method it is made ``from``.
    """
    methods = protocol["methods"]
    if method not in methods:
        raise ValueError(f"method {method!r} is not in the protocol; known: {sorted(methods)}")
    if not methods[method].get("trained", True):
        return
    rows = list(rows)
    for part in methods[method].get("from", [method]):
        budget = tuning_budget(protocol, question, part)
        if budget == 0:
            raise ValueError(f"test evaluation of {method!r} ({question}) refused: the protocol gives {part!r} no dev budget for {question}")
        steps = int(protocol["tuning"]["steps"])
        done = {
            r["variant"] for r in rows
            if r["question"] == question and r["method"] == part and int(r["steps"]) == steps
        }
        if len(done) < budget:
            raise ValueError(
                f"test evaluation of {method!r} ({question}) refused: tuning of {part!r} is not finished "
                f"({len(done)} of {budget} dev configurations at {steps} steps in tuning.csv)"
            )


# ----------------------------------------------------------------------------- compute


def estimate(protocol: Mapping) -> dict[str, float]:
    """Wall seconds of the whole grid, ``{"expected": s, "worst": s}``, from ``budget``.

    Per stage: runs x (steps x seconds_per_step + overhead) for light and heavy losses, plus
    the stage's evaluations; the sum is divided by the number of parallel processes.
    """
    b = protocol["budget"]
    steps = int(protocol["training"]["steps"])
    run_s = {k: steps * float(v) + float(b["overhead_per_run_s"]) for k, v in b["seconds_per_step"].items()}
    out = {}
    for case in ("expected", "worst"):
        total = 0.0
        for stage in b["stages"].values():
            runs = stage["runs"] if case == "expected" else stage["worst"]
            total += sum(n * run_s[kind] for kind, n in runs.items())
            eval_s = float(b["eval_s"][stage["eval"]])
            if "checkpoint_evals_per_run" in stage:
                total += sum(runs.values()) * stage["checkpoint_evals_per_run"] * eval_s
            if "models_evaluated" in stage:
                total += stage["models_evaluated"] * eval_s
            if "seed_arms_evaluated" in stage:
                total += stage["seed_arms_evaluated"] * eval_s
            if "zero_shot_eval" in stage:
                total += float(b["eval_s"][stage["zero_shot_eval"]])
        out[case] = total / int(b["processes"])
    return out


# ----------------------------------------------------------------------------- validation


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(f"protocol: {msg}")


def _is_int_list(x) -> bool:
    return isinstance(x, list) and len(x) > 0 and all(isinstance(v, int) and not isinstance(v, bool) for v in x)


def validate_protocol(p: Mapping) -> None:
    """Check the protocol's structure and internal consistency; ValueError naming the field.

    Checks: the RQ1 article lists partition ``n_articles`` titles, are disjoint, match
    :func:`split_articles` with the stated seed; seeds are lists of ints; every trained method
    has a dev budget that equals its grid's size and every OT variant is a valid OT setting;
    every test arm names a known method; Holm contrasts name test arms; the stated compute
    estimate equals :func:`estimate` and fits the wall limit in the expected case.
    """
    scale = p.get("scale", "full") if isinstance(p, Mapping) else "full"
    quick = scale == "quick"  # configs/protocol-quick.yaml: CI size, no minimums
    cpu_budget = scale == "full"  # configs/gpu/protocol.yaml has no CPU compute budget
    sections = ("splits", "metrics", "training", "methods", "tuning", "test", "statistics") + (("budget",) if cpu_budget else ())
    for key in sections:
        _check(isinstance(p, Mapping) and key in p, f"missing section {key!r}")

    # splits
    s = p["splits"]["rq1"]
    dev, test = s["dev_articles"], s["test_articles"]
    _check(all(isinstance(t, str) for t in dev + test), "splits.rq1: article titles must be strings")
    _check(len(set(dev)) == len(dev) and len(set(test)) == len(test), "splits.rq1: an article is listed twice")
    _check(not set(dev) & set(test), f"splits.rq1: dev and test share {sorted(set(dev) & set(test))}")
    _check(len(dev) + len(test) == s["n_articles"], f"splits.rq1: {len(dev)} + {len(test)} articles, expected {s['n_articles']}")
    _check(len(dev) == s["n_dev"], f"splits.rq1.n_dev is {s['n_dev']} but dev_articles has {len(dev)}")
    _check(isinstance(s["seed"], int), f"splits.rq1.seed must be an int, got {s['seed']!r}")
    _check(
        split_articles(dev + test, s["seed"], s["n_dev"]) == (sorted(dev), sorted(test)),
        "splits.rq1: the lists are not what the stated procedure and seed give",
    )
    r2 = p["splits"]["rq2"]
    _check(r2["tune"]["split"] == "dev" and r2["test"]["split"] == "test", "splits.rq2: tune on dev, report on test")
    _check(r2["unseen"]["stage"] == "test_only", "splits.rq2.unseen must be test_only")

    # training
    t = p["training"]
    min_steps = 1 if quick else 200
    _check(isinstance(t["steps"], int) and t["steps"] >= min_steps, f"training.steps must be >= {min_steps}, got {t['steps']!r}")
    _check(_is_int_list(t["checkpoints"]) and t["checkpoints"][-1] == t["steps"],
           f"training.checkpoints must be ints ending at training.steps, got {t['checkpoints']!r}")
    _check(p["tuning"]["steps"] == t["steps"], f"tuning.steps ({p['tuning']['steps']}) must equal training.steps ({t['steps']})")

    # methods and budgets
    methods = p["methods"]
    rq1 = p["tuning"]["rq1"]
    for m in TRAINED_METHODS:
        _check(m in methods, f"methods: {m!r} missing")
        _check(m in rq1 and isinstance(rq1[m].get("budget"), int) and rq1[m]["budget"] > 0,
               f"tuning.rq1.{m}: no budget")
    ot = rq1["ot"]
    _check(len(ot["variants"]) + len(ot["stage2_lr"]) == ot["budget"],
           f"tuning.rq1.ot: {len(ot['variants'])} variants + {len(ot['stage2_lr'])} stage-2 lrs != budget {ot['budget']}")
    _check("published" in ot["variants"], "tuning.rq1.ot.variants: the published setting must be among them")
    from optical_viz import losses  # the same checks as a distill config

    for name, v in ot["variants"].items():
        missing = [f for f in OT_FIELDS if f not in v]
        _check(not missing, f"tuning.rq1.ot.variants.{name}: missing {missing}")
        try:
            losses.check_ot_options(objective=v["objective"], plan=v["plan"], eps=v["eps"], eps_mode=v["eps_mode"],
                                    eps_scaling=v["eps_scaling"], grad="envelope", rho=v["rho"])
        except ValueError as exc:
            raise ValueError(f"protocol: tuning.rq1.ot.variants.{name}: {exc}") from None
        _check(v["marginals"] in losses.MARGINALS, f"tuning.rq1.ot.variants.{name}.marginals: {v['marginals']!r}")
    for m in ("contrastive", "mse"):
        size = math.prod(len(values) for values in rq1[m]["grid"].values())
        _check(size == rq1[m]["budget"], f"tuning.rq1.{m}: grid of {size} configurations != budget {rq1[m]['budget']}")
    _check(ot["budget"] == rq1["contrastive"]["budget"], "tuning.rq1: OT and contrastive budgets must be equal")
    rq2 = p["tuning"]["rq2"]
    _check(len(set(rq2["budget"].values())) == 1, f"tuning.rq2.budget must be equal across methods, got {rq2['budget']}")

    # test stage
    test_ = p["test"]
    _check(test_.get("refuse_unless_tuned") is True, "test.refuse_unless_tuned must be true")
    for q, minimum in (("rq1", 1), ("rq2", 1)) if quick else (("rq1", 3), ("rq2", 2)):
        seeds = test_[q]["seeds"]
        _check(_is_int_list(seeds) and len(set(seeds)) == len(seeds), f"test.{q}.seeds must be distinct ints, got {seeds!r}")
        _check(len(seeds) >= minimum, f"test.{q}.seeds: at least {minimum}, got {len(seeds)}")
        for arm, spec in test_[q]["arms"].items():
            _check(spec["method"] in methods, f"test.{q}.arms.{arm}: unknown method {spec['method']!r}")
            trained = methods[spec["method"]].get("trained", True)
            parts = methods[spec["method"]].get("from", [spec["method"]])
            _check(not trained or all(tuning_budget(p, q, m) > 0 for m in parts),
                   f"test.{q}.arms.{arm}: method {spec['method']!r} has no tuning budget")
    _check(_is_int_list([p["tuning"]["seed"]]), f"tuning.seed must be an int, got {p['tuning']['seed']!r}")

    # statistics
    st = p["statistics"]
    _check(st["correction"] == "holm", "statistics.correction must be holm")
    _check(st["equivalence"]["method"] == "tost" and st["equivalence"]["margin"] > 0, "statistics.equivalence: tost with a positive margin")
    _check(st["bootstrap"]["levels"] == ["seed", "language", "query"], "statistics.bootstrap.levels: seed, language, query")
    for q in ("rq1", "rq2"):
        arms = test_[q]["arms"]
        for a, b in st["contrasts"][q]:
            _check(a in arms and b in arms, f"statistics.contrasts.{q}: [{a}, {b}] names an arm not in test.{q}.arms")

    # budget
    if not cpu_budget:
        return
    est = estimate(p)
    stated = p["budget"]["estimate_wall_s"]
    for case in ("expected", "worst"):
        _check(abs(est[case] - stated[case]) < 1.0,
               f"budget.estimate_wall_s.{case} is {stated[case]} but the budget's numbers give {est[case]:.0f}")
    limit = p["budget"]["wall_limit_s"]
    _check(est["expected"] <= 1.05 * limit, f"budget: expected {est['expected']:.0f} s exceeds the {limit} s wall limit (+5%)")
