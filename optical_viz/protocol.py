"""The pre-registered protocol of the RQ1 / RQ2 grid (``results/full/protocol.yaml``), typed.

One YAML file, committed before any test-split number of the grid exists, fixes the splits,
metrics, methods, tuning budgets, seeds, statistics and compute budget. This module reads it
into :class:`Protocol` (pydantic dataclasses, ``extra="forbid"``, as
:mod:`optical_viz.config`): a wrong type, an unknown key or a broken rule of the protocol is a
``ValueError`` of one line that names the file and the key, e.g.
``protocol.yaml: tuning.rq1.contrastive: grid of 12 configurations != budget 8``. The CI-sized
copy (``configs/protocol-quick.yaml``, ``scale: quick``) and the GPU-scale one
(``configs/gpu/protocol.yaml``, ``scale: gpu``) load through the same model. It also holds the
few pieces of logic that the grid code must share with the file:

- :func:`load_protocol` / :func:`load_stage_protocol`: a file (or a scale) as a :class:`Protocol`.
- :func:`split_articles`: the seeded by-article split procedure (the YAML lists its result).
- :func:`question_articles`: question id -> article title, read the same way in every
  XQuAD and XQuAD-R language file.
- :func:`estimate`: the compute estimate (wall seconds) from the YAML's budget section.
- :func:`require_tuned`: the rule "test evaluation refuses to run for a method whose
  tuning is not finished".

>>> p = load_protocol()
>>> len(p.splits.rq1.dev_articles), len(p.splits.rq1.test_articles)
(16, 32)
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional

import numpy as np
from pydantic import Field, model_validator
from pydantic.dataclasses import dataclass

from optical_viz import paths
from optical_viz.config import STRICT, Bool, Float, Int, Str, choice, load_yaml, parse

__all__ = [
    "PROTOCOL_PATH",
    "PROTOCOLS",
    "Protocol",
    "load_protocol",
    "load_stage_protocol",
    "parse_protocol",
    "split_articles",
    "question_articles",
    "tuning_budget",
    "require_tuned",
    "estimate",
    "maxsim_subset",
]

PROTOCOL_PATH = paths.REPO_ROOT / "results" / "full" / "protocol.yaml"
PROTOCOLS = {
    "full": PROTOCOL_PATH,  # the pre-registered one (CPU scale)
    "quick": paths.REPO_ROOT / "configs" / "protocol-quick.yaml",  # CI size
    "gpu": paths.REPO_ROOT / "configs" / "gpu" / "protocol.yaml",  # one GPU: 3000 steps, batch 128, 5 seeds
}
OT_FIELDS = ("objective", "plan", "eps", "eps_mode", "eps_scaling", "marginals", "rho", "layer")
TRAINED_METHODS = ("mse", "contrastive", "ot")  # the methods with a dev budget
SECTIONS = ("splits", "metrics", "training", "methods", "tuning", "test", "statistics")


# ----------------------------------------------------------------------------- splits


@dataclass(config=STRICT)
class RQ1Split:
    """The by-article split of XQuAD / XQuAD-R (``procedure`` in words, :func:`split_articles` in code)."""

    unit: Str
    n_articles: Int
    procedure: Str
    seed: Int
    n_dev: Int
    dev_articles: List[Str]
    test_articles: List[Str]
    candidates: Str
    questions_per_language: Optional[Dict[str, Int]] = None  # dev / test questions of every language

    def articles(self, split: str) -> List[str]:
        """The titles of ``split`` ("dev" or "test")."""
        return {"dev": self.dev_articles, "test": self.test_articles}[split]


@dataclass(config=STRICT)
class SplitRef:
    set: Str
    split: Str
    sentences_per_language: Optional[Int] = None


@dataclass(config=STRICT)
class Unseen:
    config: Str  # a config file listing ``unseen_languages``
    stage: Str
    n_languages: Optional[Int] = None


@dataclass(config=STRICT)
class RQ2Split:
    tune: SplitRef
    test: SplitRef
    candidates: Str
    sizes: Dict[Int, Str]  # number of training languages -> run config
    shared_languages: List[Str]
    unseen: Unseen


@dataclass(config=STRICT)
class Splits:
    rq1: RQ1Split
    rq2: RQ2Split


# ----------------------------------------------------------------------------- metrics


@dataclass(config=STRICT)
class PrimaryRQ1:
    task: Str
    direction: Str
    scoring: Str
    languages: Optional[List[Str]] = None


@dataclass(config=STRICT)
class PrimaryRQ2:
    task: Str
    directions: List[Str]
    languages: Str


@dataclass(config=STRICT)
class PrimaryMetric:
    name: Str
    unit: Str
    rq1: PrimaryRQ1
    rq2: PrimaryRQ2


@dataclass(config=STRICT)
class SecondaryMetric:
    """A secondary metric. ``scoring: maxsim`` entries fix ``max_queries`` (the MaxSim subset);
    ``name: aer`` entries the word-alignment evaluation (``pair``, ``methods``, ``layer``)."""

    name: Str
    on: Optional[List[Str]] = None
    task: Optional[Str] = None
    direction: Optional[Str] = None
    scoring: Optional[Str] = None
    seeds: Optional[Str] = None
    max_queries: Optional[Int] = None
    pair: Optional[Str] = None
    methods: Optional[List[Str]] = None
    layer: Optional[Int] = None
    rq2_groups: Optional[List[Str]] = None
    note: Optional[Str] = None

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data):
        # YAML 1.1 reads the key ``on`` as the boolean true (the committed files say ``on: [rq1, rq2]``)
        if isinstance(data, dict) and True in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data


@dataclass(config=STRICT)
class Metrics:
    primary: PrimaryMetric
    secondary: List[SecondaryMetric]
    precision: Str  # of every retrieval evaluation (optical_viz.encoder.PRECISIONS)
    not_reported: Optional[List[Str]] = None

    @property
    def maxsim(self) -> SecondaryMetric:
        """The MaxSim secondary metric (its ``max_queries``: the fixed subset's size)."""
        return next(m for m in self.secondary if m.scoring == "maxsim")

    @property
    def aer(self) -> List[SecondaryMetric]:
        """The word-alignment (AER) secondary metrics."""
        return [m for m in self.secondary if m.name == "aer"]


# ----------------------------------------------------------------------------- training, methods


@dataclass(config=STRICT)
class Training:
    steps: Int
    warmup_steps: Int
    batch_size: Int
    max_length: Int
    lr: Float
    checkpoints: List[Int]
    monitor: Optional[List[Str]] = None


@dataclass(config=STRICT)
class Method:
    """A method of the protocol: its loss, whether it trains, the methods it is made ``from``."""

    loss: Optional[Str] = None
    trained: Bool = True
    parts: Optional[List[Str]] = Field(default=None, alias="from")
    weights: Optional[Str] = None


@dataclass(config=STRICT)
class ScaleProbe:
    batches: Int
    seed: Int
    reference_term: Dict[str, Str]  # combined loss -> the term that keeps weight 1


@dataclass(config=STRICT)
class OTVariant:
    """An OT dev configuration: the ``loss.ot`` fields of :data:`OT_FIELDS`, and the loss
    (``ot``, or ``ot+mse`` for the middle-layer variant) with its term ``weights``."""

    objective: Str
    plan: Str
    eps: Float
    eps_mode: Str
    eps_scaling: Optional[Float]
    marginals: Str
    rho: Optional[Float]
    layer: Int
    loss: Str = "ot"
    weights: Optional[Str] = None

    @model_validator(mode="before")
    @classmethod
    def _every_ot_field(cls, data):
        if isinstance(data, dict):
            missing = [f for f in OT_FIELDS if f not in data]
            if missing:
                raise ValueError(f"missing {missing}")
        return data

    @property
    def ot(self) -> Dict[str, Any]:
        """The ``loss.ot`` fields, as a run config takes them."""
        return {k: getattr(self, k) for k in OT_FIELDS}


# ----------------------------------------------------------------------------- tuning


@dataclass(config=STRICT)
class OTTuning:
    budget: Int
    variants: Dict[str, OTVariant]  # stage 1, in the protocol's order (ties go to the first)
    lr: Float
    stage2_lr: List[Float]  # stage 2: the stage-1 winner at these learning rates


@dataclass(config=STRICT)
class GridTuning:
    grid: Dict[str, List[Float]]  # hyperparameter -> values; the configurations are their product
    budget: Optional[Int] = None

    @property
    def size(self) -> int:
        return math.prod(len(values) for values in self.grid.values())


@dataclass(config=STRICT)
class RQ1Tuning:
    ot: OTTuning
    contrastive: GridTuning
    mse: GridTuning


@dataclass(config=STRICT)
class RQ2Tuning:
    size: Int
    candidates_per_method: Int
    methods: List[Str]
    budget: Dict[str, Int]


@dataclass(config=STRICT)
class Tuning:
    seed: Int
    steps: Int
    rq1: RQ1Tuning
    rq2: RQ2Tuning
    select: Optional[Str] = None
    output: Optional[Str] = None


# ----------------------------------------------------------------------------- test stage, statistics


@dataclass(config=STRICT)
class Arm:
    method: Str
    setting: Optional[choice(("best", "published"))] = None


@dataclass(config=STRICT)
class TestQuestion:
    seeds: List[Int]
    arms: Dict[str, Arm]
    sizes: Optional[List[Int]] = None  # RQ2: the language-set sizes
    groups: Optional[List[Str]] = None  # RQ2: trained, shared_5, unseen


@dataclass(config=STRICT)
class TestStage:
    refuse_unless_tuned: Bool
    rq1: TestQuestion
    rq2: TestQuestion
    reuse_dev_seed0: Bool = True

    def question(self, name: str) -> TestQuestion:
        return {"rq1": self.rq1, "rq2": self.rq2}[name]


@dataclass(config=STRICT)
class Bootstrap:
    kind: Str
    levels: List[Str]
    n: Int
    seed: Int
    paired: Bool


@dataclass(config=STRICT)
class Equivalence:
    method: Str
    margin: Float


@dataclass(config=STRICT)
class HolmMember:
    size: Int
    group: Str


@dataclass(config=STRICT)
class Interaction:
    contrast: List[Str]  # [a, b]: the difference in differences of a - b
    reference_size: Int
    sizes: List[Int]
    groups: List[Str]
    in_holm_family: HolmMember


@dataclass(config=STRICT)
class Statistics:
    interval: Float
    bootstrap: Bootstrap
    p_value: Str
    correction: Str
    alpha: Float
    equivalence: Equivalence
    contrasts: Dict[str, List[List[Str]]]  # question -> [a, b] pairs (the Holm family)
    interaction: Dict[str, Interaction]


# ----------------------------------------------------------------------------- budget, limits


@dataclass(config=STRICT)
class BudgetStage:
    runs: Dict[str, Int]  # loss kind (light, heavy) -> runs, expected case
    worst: Dict[str, Int]
    eval: Str  # a key of Budget.eval_s
    checkpoint_evals_per_run: Optional[Int] = None
    models_evaluated: Optional[Int] = None
    seed_arms_evaluated: Optional[Int] = None
    zero_shot_eval: Optional[Str] = None


@dataclass(config=STRICT)
class Budget:
    """The CPU compute budget; :func:`estimate` recomputes ``estimate_wall_s`` from it."""

    wall_limit_s: Int
    processes: Int
    seconds_per_step: Dict[str, Float]
    overhead_per_run_s: Float
    rates_per_s: Dict[str, Float]
    eval_s: Dict[str, Float]
    stages: Dict[str, BudgetStage]
    estimate_wall_s: Dict[str, Float]  # expected, worst
    cuts: List[Dict[str, Str]] = dataclasses.field(default_factory=list)


@dataclass(config=STRICT)
class Limits:
    """Quick-scale cuts (none at full scale): languages per run config, unseen languages,
    queries and candidates per language and direction; ``prune``: drop the weights that no
    later stage reads (:func:`optical_viz.experiments.pruning.prune_after_stage`)."""

    max_languages: Optional[Int] = None
    max_unseen: Optional[Int] = None
    max_queries: Optional[Int] = None
    max_candidates: Optional[Int] = None
    prune: Bool = False

    @property
    def cuts(self) -> Dict[str, int]:
        """The query / candidate limits that are set, as an evaluation takes them."""
        return {k: getattr(self, k) for k in ("max_queries", "max_candidates") if getattr(self, k) is not None}


# ----------------------------------------------------------------------------- the protocol


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


@dataclass(config=STRICT)
class Protocol:
    """A protocol file, checked: types key by key, then the rules of :meth:`_consistent`.

    scale: "full" (the pre-registered file: minimums and the CPU budget apply), "quick" (CI
    size: no minimums) or "gpu" (no CPU budget).
    """

    version: Int
    splits: Splits
    metrics: Metrics
    training: Training
    methods: Dict[str, Method]
    scale_probe: ScaleProbe
    tuning: Tuning
    test: TestStage
    statistics: Statistics
    scale: choice(("full", "quick", "gpu")) = "full"
    issue: Optional[Int] = None
    status: Optional[Str] = None
    deviations: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    limits: Limits = dataclasses.field(default_factory=Limits)
    distill_overrides: Dict[str, Any] = dataclasses.field(default_factory=dict)  # merged into every run config
    ot_published: Optional[OTVariant] = None  # the YAML anchor of the published setting
    budget: Optional[Budget] = None

    @property
    def checkpoints(self) -> List[int]:
        return list(self.training.checkpoints)

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, data):
        if isinstance(data, dict):
            needed = SECTIONS + (("budget",) if data.get("scale", "full") == "full" else ())
            for key in needed:
                _check(key in data, f"missing section {key!r}")
        return data

    @model_validator(mode="after")
    def _consistent(self):
        """The checks of the protocol: the RQ1 article lists partition ``n_articles`` titles,
        are disjoint, match :func:`split_articles` with the stated seed; seeds are distinct;
        every trained method has a dev budget that equals its grid's size and every OT variant
        is a valid OT setting; every test arm names a known method with a budget; Holm
        contrasts name test arms; the stated compute estimate equals :func:`estimate` and fits
        the wall limit in the expected case."""
        quick = self.scale == "quick"  # CI size: no minimums
        s = self.splits.rq1
        dev, test = s.dev_articles, s.test_articles
        _check(len(set(dev)) == len(dev) and len(set(test)) == len(test), "splits.rq1: an article is listed twice")
        _check(not set(dev) & set(test), f"splits.rq1: dev and test share {sorted(set(dev) & set(test))}")
        _check(len(dev) + len(test) == s.n_articles, f"splits.rq1: {len(dev)} + {len(test)} articles, expected {s.n_articles}")
        _check(len(dev) == s.n_dev, f"splits.rq1.n_dev is {s.n_dev} but dev_articles has {len(dev)}")
        _check(split_articles(dev + test, s.seed, s.n_dev) == (sorted(dev), sorted(test)),
               "splits.rq1: the lists are not what the stated procedure and seed give")
        r2 = self.splits.rq2
        _check(r2.tune.split == "dev" and r2.test.split == "test", "splits.rq2: tune on dev, report on test")
        _check(r2.unseen.stage == "test_only", "splits.rq2.unseen must be test_only")

        t = self.training
        min_steps = 1 if quick else 200
        _check(t.steps >= min_steps, f"training.steps must be >= {min_steps}, got {t.steps!r}")
        _check(bool(t.checkpoints) and t.checkpoints[-1] == t.steps,
               f"training.checkpoints must be ints ending at training.steps, got {t.checkpoints!r}")
        _check(self.tuning.steps == t.steps, f"tuning.steps ({self.tuning.steps}) must equal training.steps ({t.steps})")

        rq1 = self.tuning.rq1
        for m in TRAINED_METHODS:
            _check(m in self.methods, f"methods: {m!r} missing")
            budget = getattr(rq1, m).budget
            _check(budget is not None and budget > 0, f"tuning.rq1.{m}: no budget")
        ot = rq1.ot
        _check(len(ot.variants) + len(ot.stage2_lr) == ot.budget,
               f"tuning.rq1.ot: {len(ot.variants)} variants + {len(ot.stage2_lr)} stage-2 lrs != budget {ot.budget}")
        _check("published" in ot.variants, "tuning.rq1.ot.variants: the published setting must be among them")
        from optical_viz import losses  # the same checks as a distill config (torch only when a protocol is read)

        for name, v in ot.variants.items():
            try:
                losses.check_ot_options(objective=v.objective, plan=v.plan, eps=v.eps, eps_mode=v.eps_mode,
                                        eps_scaling=v.eps_scaling, grad="envelope", rho=v.rho)
            except ValueError as exc:
                raise ValueError(f"tuning.rq1.ot.variants.{name}: {exc}") from None
            _check(v.marginals in losses.MARGINALS, f"tuning.rq1.ot.variants.{name}.marginals: {v.marginals!r}")
        for m in ("contrastive", "mse"):
            g = getattr(rq1, m)
            _check(g.size == g.budget, f"tuning.rq1.{m}: grid of {g.size} configurations != budget {g.budget}")
        _check(ot.budget == rq1.contrastive.budget, "tuning.rq1: OT and contrastive budgets must be equal")
        rq2 = self.tuning.rq2
        _check(len(set(rq2.budget.values())) == 1, f"tuning.rq2.budget must be equal across methods, got {rq2.budget}")

        _check(self.test.refuse_unless_tuned is True, "test.refuse_unless_tuned must be true")
        for q, minimum in (("rq1", 1), ("rq2", 1)) if quick else (("rq1", 3), ("rq2", 2)):
            spec = self.test.question(q)
            _check(len(set(spec.seeds)) == len(spec.seeds), f"test.{q}.seeds must be distinct ints, got {spec.seeds!r}")
            _check(len(spec.seeds) >= minimum, f"test.{q}.seeds: at least {minimum}, got {len(spec.seeds)}")
            for arm, a in spec.arms.items():
                _check(a.method in self.methods, f"test.{q}.arms.{arm}: unknown method {a.method!r}")
                method = self.methods[a.method]
                _check(not method.trained or all(tuning_budget(self, q, m) > 0 for m in (method.parts or [a.method])),
                       f"test.{q}.arms.{arm}: method {a.method!r} has no tuning budget")

        st = self.statistics
        _check(st.correction == "holm", "statistics.correction must be holm")
        _check(st.equivalence.method == "tost" and st.equivalence.margin > 0, "statistics.equivalence: tost with a positive margin")
        _check(st.bootstrap.levels == ["seed", "language", "query"], "statistics.bootstrap.levels: seed, language, query")
        for q in ("rq1", "rq2"):
            arms = self.test.question(q).arms
            for a, b in st.contrasts[q]:
                _check(a in arms and b in arms, f"statistics.contrasts.{q}: [{a}, {b}] names an arm not in test.{q}.arms")

        if self.scale != "full":  # the quick and GPU copies have no CPU compute budget
            return self
        est = estimate(self)
        stated = self.budget.estimate_wall_s
        for case in ("expected", "worst"):
            _check(abs(est[case] - stated[case]) < 1.0,
                   f"budget.estimate_wall_s.{case} is {stated[case]:g} but the budget's numbers give {est[case]:.0f}")
        limit = self.budget.wall_limit_s
        _check(est["expected"] <= 1.05 * limit, f"budget: expected {est['expected']:.0f} s exceeds the {limit} s wall limit (+5%)")
        return self


def parse_protocol(raw: Mapping, where: str = "protocol.yaml") -> Protocol:
    """``raw`` (the YAML's mapping) checked into a :class:`Protocol`.

    Raises:
        ValueError: ``"<where>: <key>: <problem>"``, one line.
    """
    try:
        return parse(Protocol, raw, what=where)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def load_protocol(path: str | os.PathLike | None = None) -> Protocol:
    """Read and check a protocol file (default :data:`PROTOCOL_PATH`).

    Raises:
        ValueError: one line naming the file and the first key that is missing or inconsistent.
    """
    path = Path(path) if path is not None else PROTOCOL_PATH
    return parse_protocol(load_yaml(path, "protocol"), where=path.name)


def load_stage_protocol(scale: str = "full", path: str | os.PathLike | None = None) -> Protocol:
    """The protocol of ``scale`` ("full": the pre-registered one; "quick": the CI-sized copy;
    "gpu": the GPU-scale one), or the file at ``path``."""
    if path is None:
        if scale not in PROTOCOLS:
            raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(PROTOCOLS)} or give a protocol path")
        path = PROTOCOLS[scale]
    return load_protocol(path)


# ----------------------------------------------------------------------------- procedures


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
    _, rel = loaders.resolve_in(set_name, lang, root)
    data = loaders.read_json(set_name, rel, root)
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


def tuning_budget(protocol: Protocol, question: str, method: str) -> int:
    """Number of dev configurations ``method`` gets for ``question`` ("rq1" or "rq2")."""
    if question == "rq2":
        return int(protocol.tuning.rq2.budget.get(method, 0))
    if method not in TRAINED_METHODS:
        return 0
    return int(getattr(protocol.tuning.rq1, method).budget or 0)


def require_tuned(protocol: Protocol, question: str, method: str, rows: Iterable[Mapping]) -> None:
    """Refuse (ValueError) the test stage of ``method`` unless its tuning is finished.

    rows: the rows of ``results/full/tuning.csv`` as dicts with at least ``question``,
    ``method``, ``variant`` and ``steps``. Finished: the method has as many distinct dev
    configurations at the protocol's step count as its budget. Zero-shot needs no tuning; a
    combined method (``ot+contrastive``) needs every method it is made ``from``.
    """
    methods = protocol.methods
    if method not in methods:
        raise ValueError(f"method {method!r} is not in the protocol; known: {sorted(methods)}")
    if not methods[method].trained:
        return
    rows = list(rows)
    steps = int(protocol.tuning.steps)
    for part in methods[method].parts or [method]:
        budget = tuning_budget(protocol, question, part)
        if budget == 0:
            raise ValueError(f"test evaluation of {method!r} ({question}) refused: the protocol gives {part!r} no dev budget for {question}")
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


def estimate(protocol: Protocol) -> dict[str, float]:
    """Wall seconds of the whole grid, ``{"expected": s, "worst": s}``, from ``budget``.

    Per stage: runs x (steps x seconds_per_step + overhead) for light and heavy losses, plus
    the stage's evaluations; the sum is divided by the number of parallel processes.
    """
    b = protocol.budget
    if b is None:
        raise ValueError(f"the {protocol.scale} protocol has no compute budget")
    steps = int(protocol.training.steps)
    run_s = {k: steps * float(v) + float(b.overhead_per_run_s) for k, v in b.seconds_per_step.items()}
    out = {}
    for case in ("expected", "worst"):
        total = 0.0
        for stage in b.stages.values():
            runs = stage.runs if case == "expected" else stage.worst
            total += sum(n * run_s[kind] for kind, n in runs.items())
            eval_s = float(b.eval_s[stage.eval])
            if stage.checkpoint_evals_per_run is not None:
                total += sum(runs.values()) * stage.checkpoint_evals_per_run * eval_s
            if stage.models_evaluated is not None:
                total += stage.models_evaluated * eval_s
            if stage.seed_arms_evaluated is not None:
                total += stage.seed_arms_evaluated * eval_s
            if stage.zero_shot_eval is not None:
                total += float(b.eval_s[stage.zero_shot_eval])
        out[case] = total / int(b.processes)
    return out
