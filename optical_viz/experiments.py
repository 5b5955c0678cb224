"""The RQ1 / RQ2 experiment grid behind ``optical-viz reproduce``.

A grid file (``configs/grid-quick.yaml``, ``configs/grid-full.yaml``) names, per research
question, the distillation configs (``configs/rq1.yaml``, ``configs/rq2-*.yaml``), the
methods (losses; ``zero-shot`` = no training), the seeds and the evaluations. The grid
is the product of these: one :class:`Run` per (question, language set, method, seed),
every run of a question sharing the config's schedule and data, only the loss (and the
seed) swapped.

>>> spec = GridSpec.from_yaml("configs/grid-quick.yaml")
>>> runs = build_grid(spec)
>>> [r.run_id for r in runs][:2]
['rq1-xquad2-zero-shot-s0', 'rq1-xquad2-mse-s0']
>>> reproduce(spec, out=".")                     # doctest: +SKIP

Layout under ``out`` (``--runs/--results/--figures`` move the three parts)::

    runs/<scale>/<run-id>/                       a distill run directory (resumable)
    results/<scale>/<question>/<run-id>.<eval>.json   one evaluation: config, code version,
                                                 scale, seed, timings, metrics with 95% CIs
    results/<scale>/<question>/<run-id>.<eval>.npz    its per-query values (paired tests)
    results/<scale>/summary.csv                  run x eval x lang x direction x metric
    results/<scale>/summary_methods.csv          the same, seeds averaged per method
    results/<scale>/rq{1,2}_paired_tests.csv     OT against contrastive, per language
    results/<scale>/rq1_table.md                 the RQ1 table of the README
    results/<scale>/findings.md                  which method won where, in words
    results/<scale>/timings.json                 training and evaluation seconds per run
    figures/<scale>/rq1_*.{pdf,png}, rq2_scaling_{seen,unseen}.{pdf,png}

A run is trained once (``RUN/student`` exists: skipped; an interrupted run resumes from
its last checkpoint); an evaluation whose JSON exists is skipped. Summaries and figures
are rebuilt from the result files every time, so they always describe what is on disk.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optical_viz import paths

__all__ = [
    "METHODS",
    "EvalSpec",
    "QuestionSpec",
    "GridSpec",
    "Run",
    "Evaluation",
    "build_grid",
    "evaluate_model",
    "code_version",
    "run_grid",
    "collect",
    "aggregate",
    "paired_tests",
    "make_figures",
    "reproduce",
    "ReproduceResult",
]

METHODS = ("zero-shot", "mse", "contrastive", "ot", "ot+contrastive")
ZERO_SHOT = "zero-shot"
METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "map")
TASKS = ("xquad-r", "xquad", "flores")


# ----------------------------------------------------------------------------- grid spec


@dataclass
class EvalSpec:
    """One evaluation of every model of a question.

    task: ``xquad-r``, ``xquad`` or ``flores``; scoring: ``dense`` or ``maxsim``.
    langs: ``"trained"`` (the run's languages that the task has) or ``"unseen"`` (the
        question's unseen languages). directions: a subset of the task's (None: all).
    seeds: evaluate only runs with these seeds (None: all), e.g. MaxSim on seed 0 only.
    max_queries / max_candidates: per (language, direction), a fixed random subset of the
        queries and of the candidates (the gold candidates of the kept queries are always
        kept); None keeps everything. The subsets depend only on the language and the sizes
        (for FLORES both directions use the same sentences), so every model is scored on the
        same queries (paired tests need that).
    split: the FLORES split (``all`` = 1004 sentences).
    label: the evaluation's name in file names and tables (default ``<task>.<scoring>``,
        plus ``.unseen`` for unseen languages); needed when a task is evaluated twice.
    """

    task: str
    scoring: str = "dense"
    langs: str = "trained"
    directions: typing.Optional[typing.List[str]] = None
    seeds: typing.Optional[typing.List[int]] = None
    max_queries: typing.Optional[int] = None
    max_candidates: typing.Optional[int] = None
    split: str = "all"
    label: typing.Optional[str] = None

    @property
    def name(self) -> str:
        """The evaluation's file suffix, e.g. ``xquad-r.dense`` or ``flores.dense.unseen``."""
        if self.label:
            return self.label
        return f"{self.task}.{self.scoring}" + ("" if self.langs == "trained" else f".{self.langs}")

    def validate(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"evaluation task {self.task!r} is not one of {TASKS}")
        if self.scoring not in ("dense", "maxsim"):
            raise ValueError(f"evaluation scoring {self.scoring!r} is not dense or maxsim")
        if self.langs not in ("trained", "unseen"):
            raise ValueError(f"evaluation langs {self.langs!r} is not trained or unseen")
        for k in ("max_queries", "max_candidates"):
            v = getattr(self, k)
            if v is not None and v < 1:
                raise ValueError(f"evaluation {k} must be >= 1 or null, got {v}")


@dataclass
class QuestionSpec:
    """One research question: its language sets, methods, seeds and evaluations.

    configs: language-set label -> distill config (YAML, relative to the grid file), or
        -> ``{"config": path, "max_languages": N}`` to keep the first N of its languages.
    max_languages: keep the first N languages of each config (quick scale), else all.
    overrides: DistillConfig fields set on every trained run (e.g. a shorter schedule);
        nested sections merge (``{"eval": {"heldout_sentences": 8}}``).
    unseen: a YAML file with ``unseen_languages`` (RQ2); max_unseen keeps the first N.
    """

    name: str
    configs: typing.Dict[str, typing.Any]
    methods: typing.List[str]
    seeds: typing.List[int]
    evaluations: typing.List[EvalSpec]
    max_languages: typing.Optional[int] = None
    overrides: typing.Dict[str, typing.Any] = field(default_factory=dict)
    unseen: typing.Optional[str] = None
    max_unseen: typing.Optional[int] = None


@dataclass
class GridSpec:
    """A whole grid (one scale). Load with :meth:`from_yaml`.

    estimate: rough costs for the printed plan: ``seconds_per_step`` (one training step),
        ``sentences_per_second`` (encoding), ``seconds_per_model`` (loading and saving).
    prune: delete a run's student weights and checkpoints once all its evaluations are
        written (keeps the quick grid small on disk; the results stay).
    """

    scale: str
    questions: typing.List[QuestionSpec]
    n_bootstrap: int = 1000
    prune: bool = False
    estimate: typing.Dict[str, float] = field(default_factory=dict)
    base_dir: Path = Path(".")  # folder the config paths are relative to (the grid file's)

    def only(self, names: typing.Iterable[str]) -> "GridSpec":
        """The same grid restricted to the questions ``names`` (e.g. to run RQ1 and RQ2 as two
        processes on two cores: results go to the same folders, runs are disjoint)."""
        names = list(names)
        known = [q.name for q in self.questions]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown question(s) {unknown}; this grid has {known}")
        return dataclasses.replace(self, questions=[q for q in self.questions if q.name in names])

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "GridSpec":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"grid file {path} does not exist")
        doc = yaml.safe_load(path.read_text()) or {}
        try:
            return cls.from_dict(doc, base_dir=path.parent)
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, doc: dict, base_dir: str | os.PathLike = ".") -> "GridSpec":
        known = {"scale", "questions", "n_bootstrap", "prune", "estimate"}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(f"unknown grid key(s) {unknown}; known: {sorted(known)}")
        questions = []
        for name, q in (doc.get("questions") or {}).items():
            q = dict(q)
            evals = [EvalSpec(**e) for e in q.pop("evaluations", [])]
            questions.append(QuestionSpec(name=name, evaluations=evals, **q))
        spec = cls(
            scale=str(doc["scale"]), questions=questions, n_bootstrap=int(doc.get("n_bootstrap", 1000)),
            prune=bool(doc.get("prune", False)), estimate=dict(doc.get("estimate") or {}), base_dir=Path(base_dir),
        )
        spec.validate()
        return spec

    def validate(self) -> None:
        if not self.questions:
            raise ValueError("the grid has no questions")
        for q in self.questions:
            bad = [m for m in q.methods if m not in METHODS]
            if bad or not q.methods:
                raise ValueError(f"{q.name}: methods {bad or '[]'} not among {METHODS}")
            if not q.seeds:
                raise ValueError(f"{q.name}: at least one seed is required")
            if not q.configs:
                raise ValueError(f"{q.name}: no configs")
            names = [e.name for e in q.evaluations]
            if len(set(names)) != len(names):
                raise ValueError(f"{q.name}: evaluations with the same name {names}: give them a 'label'")
            for e in q.evaluations:
                e.validate()
                if e.langs == "unseen" and not q.unseen:
                    raise ValueError(f"{q.name}: evaluation {e.name} needs an 'unseen' language file")
            for path in [*(_config_entry(c)[0] for c in q.configs.values()), *([q.unseen] if q.unseen else [])]:
                if not (self.base_dir / path).is_file():
                    raise FileNotFoundError(f"{q.name}: config {self.base_dir / path} does not exist")


def _config_entry(entry) -> tuple[str, int | None]:
    """``path`` or ``{"config": path, "max_languages": N}`` -> (path, N or None)."""
    if isinstance(entry, dict):
        unknown = sorted(set(entry) - {"config", "max_languages"})
        if unknown or "config" not in entry:
            raise ValueError(f"config entry {entry}: expected keys config and (optional) max_languages")
        return str(entry["config"]), entry.get("max_languages")
    return str(entry), None


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for k, v in changes.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def default_grid_path(scale: str) -> Path:
    return paths.REPO_ROOT / "configs" / f"grid-{scale}.yaml"


# ----------------------------------------------------------------------------- the grid


@dataclass
class Run:
    """One model of the grid: trained with ``config`` (None for zero-shot), then evaluated.

    languages: the trained languages (FLORES codes; for zero-shot those of its language set).
    unseen: the question's unseen languages (empty when it has none).
    """

    question: str
    langset: str
    method: str
    seed: int
    languages: list[str]
    config: typing.Any  # optical_viz.distill.DistillConfig | None
    evaluations: list[EvalSpec]
    unseen: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return f"{self.question}-{self.langset}-{self.method}-s{self.seed}"

    @property
    def trained(self) -> bool:
        return self.method != ZERO_SHOT

    def result_path(self, results_dir: Path, ev: EvalSpec, suffix: str = ".json") -> Path:
        return Path(results_dir) / self.question / f"{self.run_id}.{ev.name}{suffix}"


def build_grid(spec: GridSpec, *, runs_dir: str | os.PathLike | None = None) -> list[Run]:
    """The runs of ``spec``, in execution order (seed rank, question, language set, method).

    runs_dir: where the run directories go (``config.output_dir`` = runs_dir / run_id).
    Zero-shot has one run per language set (seed 0): it is deterministic.
    """
    import yaml

    from optical_viz.distill import DistillConfig

    runs_dir = Path(runs_dir) if runs_dir is not None else Path("runs") / spec.scale
    runs: list[Run] = []
    for q in spec.questions:
        unseen: list[str] = []
        if q.unseen:
            doc = yaml.safe_load((spec.base_dir / q.unseen).read_text()) or {}
            unseen = list(doc.get("unseen_languages") or [])[: q.max_unseen]
            if not unseen:
                raise ValueError(f"{spec.base_dir / q.unseen} has no 'unseen_languages' list")
        for label, entry in q.configs.items():
            cfg_path, limit = _config_entry(entry)
            base = DistillConfig.from_yaml(spec.base_dir / cfg_path)
            langs = base.languages[: limit if limit is not None else q.max_languages]
            overlap = sorted(set(langs) & set(unseen))
            if overlap:
                raise ValueError(f"{q.name} {label}: languages {overlap} are both trained and 'unseen'")
            for seed in q.seeds:
                for method in q.methods:
                    if method == ZERO_SHOT and seed != q.seeds[0]:
                        continue
                    run = Run(q.name, str(label), method, seed if method != ZERO_SHOT else 0, langs, None,
                              [e for e in q.evaluations if e.seeds is None or seed in e.seeds], unseen)
                    if run.trained:
                        d = _merge(base.to_dict(), q.overrides)
                        d = _merge(d, {"languages": langs, "loss": {"name": method}, "seed": seed,
                                       "output_dir": str(runs_dir / run.run_id)})
                        try:
                            run.config = DistillConfig.from_dict(d)
                        except ValueError as exc:
                            raise ValueError(f"{q.name} {label} ({cfg_path}) with the grid's overrides: {exc}") from None
                    runs.append(run)
    # seed-major: the first seed of every question and method comes first, so that an
    # interrupted grid already compares all methods
    seed_rank = {(q.name, s): i for q in spec.questions for i, s in enumerate(q.seeds)}
    runs.sort(key=lambda r: seed_rank[(r.question, r.seed)])
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"the grid has duplicate run ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    return runs


# ----------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """What :func:`evaluate_model` measured.

    report: a :class:`optical_viz.retrieval.RetrievalReport` (frame with CIs, per-query values).
    subsets: (lang, direction) -> (number of queries, number of candidates) scored.
    """

    report: typing.Any
    subsets: dict[tuple[str, str], tuple[int, int]]


def _subset_problem(problem, max_queries: int | None, max_candidates: int | None, seed: int = 0):
    """A copy of ``problem`` restricted to a fixed random subset of queries and candidates.

    The gold candidates of the kept queries are always kept; the rest of the candidate
    budget is filled with random other candidates. Indices are remapped.
    """
    from optical_viz.retrieval import RetrievalProblem

    nq, nc = len(problem.queries), len(problem.candidates)
    # the subset depends on the language only: the directions of FLORES (and the tasks of
    # XQuAD / XQuAD-R, whose questions are the same) keep the same sentences, encoded once
    key = [seed, *problem.lang.encode()]
    rng = np.random.default_rng(key)
    q_idx = np.arange(nq)
    if max_queries is not None and max_queries < nq:
        q_idx = np.sort(rng.choice(nq, size=max_queries, replace=False))
    relevant = [problem.relevant[i] for i in q_idx]
    c_idx = np.arange(nc)
    if max_candidates is not None and max_candidates < nc:
        gold = np.unique(np.array([c for rel in relevant for c in rel], dtype=np.int64))
        others = np.setdiff1d(np.arange(nc), gold)
        extra = max(0, max_candidates - len(gold))
        c_idx = np.sort(np.concatenate([gold, rng.choice(others, size=min(extra, len(others)), replace=False)]))
    remap = {int(c): i for i, c in enumerate(c_idx)}
    return RetrievalProblem(
        problem.lang, problem.direction,
        [problem.queries[i] for i in q_idx], [problem.candidates[i] for i in c_idx],
        [[remap[c] for c in rel] for rel in relevant],
        kind=problem.kind, query_is_english=problem.query_is_english, with_map=problem.with_map,
    )


def evaluate_model(
    ev: EvalSpec,
    student,
    teacher,
    langs: list[str],
    *,
    teacher_cache=None,
    student_cache=None,
    n_bootstrap: int = 1000,
    root=None,
    batch_size: int = 64,
) -> Evaluation:
    """Score one model on one evaluation, in the asymmetric OPTICAL setting.

    The student (an Encoder) embeds the non-English side (queries of ``xx->en``/``xx->pool``,
    candidates of ``en->xx``), the teacher the English side; for zero-shot pass the same
    encoder twice. langs: task-coded languages (``retrieval.resolve_task_languages``).
    teacher_cache / student_cache: :class:`optical_viz.cache.EmbeddingCache` (the teacher's
    on disk, shared by all runs; a student's in memory).
    Returns per (lang, direction) metrics with 95% bootstrap CIs, plus a pooled ``all`` row
    per direction when there are several languages (as ``retrieval.evaluate``).
    """
    import pandas as pd

    from optical_viz import retrieval
    from optical_viz.cache import EmbeddingCache

    start = time.perf_counter()
    teacher_cache = teacher_cache if teacher_cache is not None else EmbeddingCache(":memory:")
    student_cache = student_cache if student_cache is not None else EmbeddingCache(":memory:")
    problems = retrieval.build_problems(ev.task, langs, split=ev.split, root=root)
    if ev.directions is not None:
        problems = [p for p in problems if p.direction in ev.directions]
        if not problems:
            raise ValueError(f"{ev.name}: no problem has a direction in {ev.directions}")
    problems = [_subset_problem(p, ev.max_queries, ev.max_candidates) for p in problems]
    rows, per_query, subsets = [], {}, {}
    for p in problems:
        q_enc, q_store = (teacher, teacher_cache) if p.query_is_english else (student, student_cache)
        c_enc, c_store = (student, student_cache) if p.query_is_english else (teacher, teacher_cache)
        q_pre = "query: " if getattr(q_enc, "prefix", "") == "query: " else getattr(q_enc, "prefix", "")
        c_pre = ("passage: " if p.kind == "qa" else "query: ") if getattr(c_enc, "prefix", "") == "query: " else getattr(c_enc, "prefix", "")
        if ev.scoring == "dense":
            q = q_store.sentences(q_enc, p.queries, prefix=q_pre, batch_size=batch_size)  # (Q, H)
            c = c_store.sentences(c_enc, p.candidates, prefix=c_pre, batch_size=batch_size)  # (D, H)
            scores = retrieval.dense_scores(q, c)  # (Q, D)
        else:
            q = retrieval.pad_tokens(q_store.tokens(q_enc, p.queries, prefix=q_pre, batch_size=batch_size // 2))
            c = retrieval.pad_tokens(c_store.tokens(c_enc, p.candidates, prefix=c_pre, batch_size=batch_size // 2))
            scores = retrieval.maxsim_scores(q, c)  # (Q, D)
        rel = retrieval.Relevance.from_lists(p.relevant, len(p.candidates))
        metrics = retrieval.query_metrics(scores, rel, with_map=p.with_map)
        per_query[(p.lang, p.direction)] = metrics
        subsets[(p.lang, p.direction)] = (len(p.queries), len(p.candidates))
        rows.append(_summarise(p.lang, p.direction, metrics.values, n_bootstrap))
    for direction in dict.fromkeys(p.direction for p in problems):
        parts = [per_query[(p.lang, p.direction)].values for p in problems if p.direction == direction]
        if len(parts) > 1:
            pooled = {k: np.concatenate([m[k] for m in parts]) for k in parts[0]}
            rows.append(_summarise("all", direction, pooled, n_bootstrap))
    report = retrieval.RetrievalReport(
        task=ev.task, model=f"student={getattr(student, 'name', student)} teacher={getattr(teacher, 'name', teacher)}",
        scoring=ev.scoring, split=ev.split if ev.task == "flores" else None, frame=pd.DataFrame(rows),
        per_query=per_query, wall_time_s=time.perf_counter() - start,
    )
    return Evaluation(report, subsets)


def _summarise(lang: str, direction: str, values: dict[str, np.ndarray], n_bootstrap: int) -> dict:
    from optical_viz.retrieval import bootstrap_ci

    row = {"lang": lang, "direction": direction, "n": int(len(next(iter(values.values()))))}
    for name, v in values.items():
        ci = bootstrap_ci(v, n_resamples=n_bootstrap, seed=0)
        row[name], row[f"{name}_ci"] = ci.estimate, [ci.low, ci.high]
    return row


def _eval_langs(run: Run, ev: EvalSpec, root=None) -> list[str]:
    """Task-coded languages of ``ev`` for ``run`` (trained languages the task has, or unseen)."""
    from optical_viz import retrieval

    wanted = run.unseen if ev.langs == "unseen" else run.languages
    have = set(retrieval.task_languages(ev.task, root=root))
    langs = [code for code in wanted if code in have]
    if not langs:
        raise ValueError(f"{run.run_id}: {ev.task} has none of the languages {wanted}")
    return langs


# ----------------------------------------------------------------------------- provenance


def code_version(repo: str | os.PathLike = paths.REPO_ROOT) -> dict:
    """``{"commit", "dirty", "version"}``: the git commit of the code and whether the library,
    commands or configs differ from it (uncommitted changes under optical_viz/ or configs/)."""
    from optical_viz import __version__

    def git(*args):
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", "optical_viz", "configs")
    return {"commit": commit, "dirty": bool(status) if status is not None else None, "version": __version__}


def _machine() -> dict:
    """Where the numbers were measured: CPU count and model, torch threads, platform."""
    import platform

    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(), "platform": platform.platform(), "torch": torch.__version__}


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _write_atomic(path: Path, text: str | None = None, arrays: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    if arrays is not None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    else:
        tmp.write_text(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- running


@dataclass
class GridStatus:
    """What remains to do: runs to train and (run, evaluation) pairs to score."""

    to_train: list[Run]
    to_evaluate: list[tuple[Run, EvalSpec]]
    done: list[tuple[Run, EvalSpec]]


def status(runs: list[Run], results_dir: str | os.PathLike) -> GridStatus:
    to_train, to_eval, done = [], [], []
    for run in runs:
        pending = [ev for ev in run.evaluations if not run.result_path(results_dir, ev).is_file()]
        done += [(run, ev) for ev in run.evaluations if ev not in pending]
        to_eval += [(run, ev) for ev in pending]
        if pending and run.trained and not (Path(run.config.output_dir) / "student" / "config.json").is_file():
            to_train.append(run)
    return GridStatus(to_train, to_eval, done)


def estimate_seconds(spec: GridSpec, st: GridStatus, root=None) -> float:
    """A rough estimate of the remaining time from the grid's ``estimate`` costs."""
    e = {"seconds_per_step": 1.0, "sentences_per_second": 50.0, "seconds_per_model": 10.0, **spec.estimate}
    total = sum(r.config.steps * e["seconds_per_step"] + e["seconds_per_model"] for r in st.to_train)
    for run, ev in st.to_evaluate:
        per_lang = {"xquad-r": 1190, "xquad": 1190, "flores": 1004}[ev.task]
        if ev.max_queries is not None:
            per_lang = min(per_lang, ev.max_queries)
        n = len(run.unseen if ev.langs == "unseen" else run.languages) * per_lang
        total += n / e["sentences_per_second"] * (3 if ev.scoring == "maxsim" else 1)
    return total


def format_plan(spec: GridSpec, runs: list[Run], st: GridStatus) -> str:
    """The plan printed before a grid starts (and by ``--dry-run``)."""
    lines = [f"optical-viz reproduce --scale {spec.scale}: {len(runs)} runs "
             f"({sum(r.trained for r in runs)} trained, {sum(not r.trained for r in runs)} zero-shot)"]
    pending_eval = {}
    for run, ev in st.to_evaluate:
        pending_eval.setdefault(run.run_id, []).append(ev.name)
    train_ids = {r.run_id for r in st.to_train}
    for run in runs:
        what = []
        if run.run_id in train_ids:
            resuming = run.config is not None and (Path(run.config.output_dir) / "config.yaml").is_file()
            what.append(f"{'resume' if resuming else 'train'} {run.config.steps} steps")
        if run.run_id in pending_eval:
            what.append("evaluate " + ", ".join(pending_eval[run.run_id]))
        lines.append(f"  {run.run_id:<36} {len(run.languages):>3} langs  " + ("; ".join(what) or "done (skipped)"))
    lines.append(f"to do: {len(st.to_train)} trainings, {len(st.to_evaluate)} evaluations "
                 f"({len(st.done)} evaluations already done); estimated {estimate_seconds(spec, st) / 60:.1f} min "
                 f"({spec.scale} scale)")
    return "\n".join(lines)


def run_grid(
    spec: GridSpec,
    runs: list[Run],
    results_dir: str | os.PathLike,
    *,
    root=None,
    progress: bool = True,
    keep_going: bool = True,
    log=print,
) -> list[dict]:
    """Train and evaluate whatever is missing; returns one timing record per run touched.

    keep_going: a run that fails (e.g. a config changed under an interrupted run) is logged
    and recorded (``"error"`` in its record) and the grid goes on; False re-raises.

    Each evaluation is written as ``<run-id>.<eval>.json`` (provenance, metrics) and
    ``.npz`` (per-query values), atomically, as soon as it is done.
    """
    from tqdm.auto import tqdm

    from optical_viz.cache import EmbeddingCache
    from optical_viz.distill import distill
    from optical_viz.encoder import load_encoder

    results_dir = Path(results_dir)
    st = status(runs, results_dir)
    todo = [r for r in runs if any(x is r for x, _ in st.to_evaluate)]
    if not todo:
        return []
    code = code_version()
    machine = _machine()
    teacher = load_encoder()
    teacher_cache = EmbeddingCache()  # on disk: the teacher's embeddings are shared by all runs
    records = []
    bar = tqdm(todo, desc=f"reproduce {spec.scale}", unit="run", disable=not progress, file=sys.stdout)
    for run in bar:
        bar.set_postfix_str(run.run_id)
        rec = {"run_id": run.run_id, "train_s": None, "eval_s": {}}
        try:
            student, student_dir = teacher, None
            if run.trained:
                run_dir = Path(run.config.output_dir)
                student_dir = run_dir / "student"
                timing_file = run_dir / "grid_timing.json"
                if not (student_dir / "config.json").is_file():
                    resume = (run_dir / "config.yaml").is_file()
                    log(f"{'resuming' if resume else 'training'} {run.run_id} ({run.config.loss.name}, "
                        f"{len(run.languages)} languages, {run.config.steps} steps)")
                    t0 = time.perf_counter()
                    distill(run.config, resume=resume, root=root, progress=progress)
                    prior = json.loads(timing_file.read_text()).get("train_s", 0.0) if timing_file.is_file() else 0.0
                    _write_atomic(timing_file, json.dumps({"train_s": prior + time.perf_counter() - t0}))
                rec["train_s"] = json.loads(timing_file.read_text())["train_s"] if timing_file.is_file() else None
                student = load_encoder(student_dir)
            student_cache = EmbeddingCache(":memory:") if run.trained else teacher_cache
            for ev in run.evaluations:
                out = run.result_path(results_dir, ev)
                if out.is_file():
                    continue
                langs = _eval_langs(run, ev, root)
                t0 = time.perf_counter()
                result = evaluate_model(ev, student, teacher, langs, teacher_cache=teacher_cache,
                                        student_cache=student_cache, n_bootstrap=spec.n_bootstrap, root=root)
                eval_s = time.perf_counter() - t0
                rec["eval_s"][ev.name] = eval_s
                doc = {
                    "scale": spec.scale,
                    "question": run.question,
                    "run_id": run.run_id,
                    "method": run.method,
                    "langset": run.langset,
                    "n_languages": len(run.languages),
                    "seed": run.seed,
                    "languages": run.languages,
                    "evaluation": dataclasses.asdict(ev) | {"name": ev.name, "langs_evaluated": langs},
                    "subsets": {f"{l}|{d}": list(v) for (l, d), v in result.subsets.items()},
                    "config": run.config.to_dict() if run.config is not None else None,
                    "student": str(student_dir) if student_dir else "default model (zero-shot)",
                    "teacher": "default model",
                    "code": code,
                    "machine": machine,
                    "timings": {"train_s": rec["train_s"], "eval_s": round(eval_s, 2)},
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    **{k: v for k, v in result.report.to_json().items() if k in ("task", "scoring", "split", "results")},
                }
                arrays = {f"{l}|{d}|{m}": v.astype(np.float32)
                          for (l, d), qm in result.report.per_query.items() for m, v in qm.values.items()}
                _write_atomic(out.with_suffix(".npz"), arrays=arrays)
                _write_atomic(out, json.dumps(doc, indent=1, default=_json_default) + "\n")
                log(f"  {run.run_id} {ev.name}: {_headline(result.report.frame)} ({eval_s:.0f} s)")
            if spec.prune and run.trained:
                for sub in ("student", "checkpoints"):
                    shutil.rmtree(Path(run.config.output_dir) / sub, ignore_errors=True)
        except Exception as exc:  # one broken run must not stop a grid of hours
            if not keep_going:
                raise
            rec["error"] = f"{type(exc).__name__}: {exc}"
            log(f"FAILED {run.run_id}: {rec['error']}")
        records.append(rec)
    bar.close()
    return records


def _headline(frame) -> str:
    """Recall@1 of the pooled (or only) row per direction, for the log."""
    parts = []
    for direction, d in frame.groupby("direction", sort=False):
        row = d[d["lang"] == "all"] if (d["lang"] == "all").any() else d
        parts.append(f"{direction} R@1 {100 * row['recall@1'].mean():.1f}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------- collecting


def _result_files(results_dir: Path) -> list[Path]:
    return sorted(p for p in Path(results_dir).glob("*/*.json") if not p.name.startswith("."))


def collect(results_dir: str | os.PathLike):
    """All result files under ``results_dir`` as one long DataFrame (``summary.csv``).

    One row per run x evaluation x lang x direction x metric, with columns scale, question,
    run_id, method, langset, n_languages, seed, task, scoring, eval_langs (trained / unseen),
    lang, direction, metric, value, ci_lo, ci_hi, n, commit, dirty.
    """
    import pandas as pd

    rows = []
    for path in _result_files(Path(results_dir)):
        doc = json.loads(path.read_text())
        ev = doc["evaluation"]
        for r in doc["results"]:
            for m in METRICS:
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
    for path in _result_files(results_dir):
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
            for metric in METRICS:
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


# ----------------------------------------------------------------------------- tables and figures

_METHOD_ORDER = {m: i for i, m in enumerate(METHODS)}
_EVAL_LABELS = {
    ("xquad-r", "xx->en"): "XQuAD-R L\u2192en",
    ("xquad-r", "xx->pool"): "XQuAD-R L\u2192pool",
    ("xquad", "xx->en"): "XQuAD paragraphs",
    ("flores", "xx->en"): "FLORES L\u2192eng",
    ("flores", "en->xx"): "FLORES eng\u2192L",
}


# one colour per method in every figure (Okabe-Ito; the zero-shot baseline in grey)
METHOD_COLORS = {
    "zero-shot": "#8C8C8C",
    "mse": "#E69F00",
    "contrastive": "#0072B2",
    "ot": "#D55E00",
    "ot+contrastive": "#CC79A7",
}


def _recolor(ax, legend_kw: dict | None = None) -> None:
    """Give bars and lines drawn by optical_viz.plots the fixed colour of their method."""
    import matplotlib.colors as mcolors
    from matplotlib.collections import PolyCollection
    from matplotlib.container import BarContainer
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    for container in bars:
        color = METHOD_COLORS.get(container.get_label())
        if color is not None:
            for patch in container.patches:
                patch.set_facecolor(color)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    lines = [l for l in ax.lines if l.get_label() in METHOD_COLORS]
    for line, band in zip(lines, bands):  # plot_scaling draws one band per line, in order
        color = METHOD_COLORS[line.get_label()]
        line.set_color(color)
        line.set_markerfacecolor(color)
        band.set_facecolor(mcolors.to_rgba(color, 0.15))
    if legend_kw is not None:
        if lines:
            handles = [Line2D([], [], color=l.get_color(), marker="o", label=l.get_label()) for l in lines]
        else:
            handles = [Patch(facecolor=c.patches[0].get_facecolor(), label=c.get_label()) for c in bars if c.patches]
        ax.legend(handles=handles, **legend_kw)


def _fmt(v, lo, hi) -> str:
    return f"{100 * v:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


_METRIC_NAMES = {"recall@1": "R@1", "recall@5": "R@5", "recall@10": "R@10", "mrr@10": "MRR@10", "map": "mAP"}


def _md_table(d, cols: list[tuple[str, str, str, str]], title: str) -> list[str]:
    """Markdown rows: one per method, one column per (task, direction, scoring, metric)."""
    def pick(method, t, di, sc, m):
        return d[(d["method"] == method) & (d["task"] == t) & (d["direction"] == di) & (d["scoring"] == sc)
                 & (d["metric"] == m)]

    cols = [c for c in cols if any(len(pick(m, *c)) for m in d["method"].unique())]
    if not cols:
        return []
    head = ["method"] + [f"{_EVAL_LABELS.get((t, di), t + ' ' + di)} {'MaxSim' if sc == 'maxsim' else sc} "
                         f"{_METRIC_NAMES[m]}" for t, di, sc, m in cols]
    lines = [title, "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for method in sorted(d["method"].unique(), key=lambda m: _METHOD_ORDER.get(m, 99)):
        seeds = int(d[d["method"] == method]["seeds"].max())
        cells = [f"{method} ({seeds} seed{'s' if seeds > 1 else ''})"]
        for c in cols:
            r = pick(method, *c)
            cells.append(_fmt(*r[["value", "ci_lo", "ci_hi"]].iloc[0]) if len(r) else "")
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def rq1_table(methods_frame, scale: str) -> str:
    """The RQ1 tables (markdown): language-averaged metrics per method, in %, with 95% CIs.

    First the headline (R@1; mAP for the pool; dense and MaxSim), then every metric of
    XQuAD-R with dense scoring (L->en and L->pool).
    """
    d = methods_frame[(methods_frame["question"] == "rq1") & (methods_frame["lang"] == "all")]
    if d.empty:
        return ""
    note = (f"({scale} scale; averages over languages, in %, with 95% bootstrap intervals over queries; "
            "per-query values averaged over the seeds)")
    headline = [("xquad-r", "xx->en", "dense", "recall@1"), ("xquad-r", "xx->en", "maxsim", "recall@1"),
                ("xquad-r", "xx->pool", "dense", "map"), ("xquad", "xx->en", "dense", "recall@1"),
                ("xquad", "xx->en", "maxsim", "recall@1")]
    lines = _md_table(d, headline, f"**RQ1, headline** {note}")
    for direction in ("xx->en", "xx->pool"):
        lines += _md_table(d, [("xquad-r", direction, "dense", m) for m in METRICS],
                           f"**RQ1, {_EVAL_LABELS[('xquad-r', direction)]}, dense, all metrics** {note}")
    return "\n".join(lines)


def findings(methods_frame, tests: dict, scale: str) -> str:
    """Plain statements of which method won where (markdown), from the aggregated results.

    Per evaluation (languages pooled): the best method and every method whose 95% interval
    overlaps the best one's ("tied within the intervals"); then OT against contrastive from
    the paired permutation test: a difference only when its 95% interval excludes 0 and
    p < 0.05.
    tests: question -> ``paired_tests(...)`` frame.
    """
    lines = [f"Findings ({scale} scale), generated from results/{scale}: intervals are 95% bootstrap "
             "intervals over queries; 'tied' means the intervals overlap.", ""]
    d = methods_frame[methods_frame["lang"] == "all"]
    for question in ("rq1", "rq2"):
        dq = d[d["question"] == question].sort_values(["n_languages", "eval_langs", "scoring"], kind="stable")
        if dq.empty:
            continue
        lines.append(f"### {question.upper()}")
        keys = ["langset", "task", "scoring", "eval_langs", "direction", "metric"]
        for key, g in dq.groupby(keys, sort=False):
            langset, task, scoring, eval_langs, direction, metric = key
            if metric not in ("recall@1", "map") or (metric == "map") != (direction == "xx->pool"):
                continue
            g = g.sort_values("value", ascending=False)
            best = g.iloc[0]
            tied = [r["method"] for _, r in g.iloc[1:].iterrows() if r["ci_hi"] >= best["ci_lo"]]
            where = f"{_EVAL_LABELS.get((task, direction), task + ' ' + direction)} ({scoring}"
            where += f", {langset}" + (", unseen languages" if eval_langs == "unseen" else "") + ")"
            name = metric.replace("recall@", "R@").replace("map", "mAP")
            verdict = f"best {best['method']} {_fmt(best['value'], best['ci_lo'], best['ci_hi'])}"
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


def make_figures(methods_frame, figures_dir: str | os.PathLike, scale: str) -> list[Path]:
    """The paper figures of both questions (PDF and PNG) from ``aggregate(...)``'s frame."""
    import matplotlib

    matplotlib.use("Agg", force=False) if "matplotlib.pyplot" not in sys.modules else None
    import matplotlib.pyplot as plt

    from optical_viz import plots

    figures_dir = Path(figures_dir)
    written: list[Path] = []
    tag = "" if scale == "full" else f" [{scale} scale]"
    with plots.publication_style():
        d1 = methods_frame[methods_frame["question"] == "rq1"]
        if not d1.empty:
            written += _rq1_by_language(d1, figures_dir, tag, plots, plt)
            written += _rq1_average(d1, figures_dir, tag, plots, plt)
        d2 = methods_frame[methods_frame["question"] == "rq2"]
        if not d2.empty:
            written += _rq2_scaling(d2, figures_dir, tag, plots, plt)
    return written


def _method_sorted(frame):
    return frame.assign(_o=frame["method"].map(lambda m: _METHOD_ORDER.get(m, 99))).sort_values(["_o", "lang"]).drop(columns="_o")


def _with_ci(frame, metric: str):
    """Rows of one metric, renamed for optical_viz.plots: ``metric`` and ``<metric>_ci``."""
    f = frame[frame["metric"] == metric].copy()
    f[metric] = f["value"]
    f[f"{metric}_ci"] = [[lo, hi] for lo, hi in zip(f["ci_lo"], f["ci_hi"])]
    return f


def _rq1_by_language(d, figures_dir, tag, plots, plt) -> list[Path]:
    panels = [(t, di, m) for t, di, m in (("xquad-r", "xx->en", "recall@1"), ("xquad-r", "xx->pool", "map"),
                                          ("xquad", "xx->en", "recall@1"))
              if ((d["task"] == t) & (d["direction"] == di) & (d["scoring"] == "dense")).any()]
    if not panels:
        return []
    fig, axes = plt.subplots(len(panels), 1, figsize=(plots.TEXT_WIDTH, 1.85 * len(panels) + 0.3), squeeze=False)
    for k, (ax, (task, direction, metric)) in enumerate(zip(axes[:, 0], panels)):
        f = d[(d["task"] == task) & (d["direction"] == direction) & (d["scoring"] == "dense")]
        f = _method_sorted(_with_ci(f, metric))
        f["lang"] = f["lang"].map(lambda l: "~average" if l == "all" else _short(l))  # "~": sorts last
        plots.plot_retrieval(f, metric, hue="method", ax=ax)
        ax.set_xticklabels([t.get_text().lstrip("~") for t in ax.get_xticklabels()], rotation=0)
        ax.set_title(f"{_EVAL_LABELS[(task, direction)]}, dense scoring{tag}", loc="left")
        ax.set_ylabel(metric.replace("recall@", "Recall@").replace("map", "mAP"))
        ax.get_legend().remove()
        _recolor(ax, None if k > 0 else dict(ncols=len(f["method"].unique()), loc="lower left",
                                             bbox_to_anchor=(0, 1.12), borderaxespad=0.1))
        _shade_average(ax)
    return plots.save_figure(fig, figures_dir / "rq1_by_language", formats=("pdf", "png"))


def _short(lang: str) -> str:
    """``deu_Latn`` -> ``de`` (the XQuAD code) where there is one, else ``deu``."""
    from optical_viz.data import XQUAD_LANGUAGES

    inverse = {v: k for k, v in XQUAD_LANGUAGES.items()}
    return inverse.get(lang, lang.split("_")[0])


def _shade_average(ax) -> None:
    labels = [t.get_text() for t in ax.get_xticklabels()]
    if "average" in labels:
        i = labels.index("average")
        ax.axvspan(i - 0.5, i + 0.5, color="0.92", zorder=-1, linewidth=0)


def _rq1_average(d, figures_dir, tag, plots, plt) -> list[Path]:
    """Language-averaged Recall@1 (mAP for the pool) per evaluation and method, dense and MaxSim."""
    f = d[d["lang"] == "all"]
    f = f[((f["direction"] == "xx->pool") & (f["metric"] == "map")) | ((f["direction"] != "xx->pool") & (f["metric"] == "recall@1"))]
    if f.empty:
        return []
    f = f.copy()
    order = {("xquad-r", "xx->en", "dense"): 0, ("xquad-r", "xx->en", "maxsim"): 1, ("xquad-r", "xx->pool", "dense"): 2,
             ("xquad", "xx->en", "dense"): 3, ("xquad", "xx->en", "maxsim"): 4}
    f["group"] = [order.get((t, di, s), 9) for t, di, s in zip(f["task"], f["direction"], f["scoring"])]
    names = {0: "XQuAD-R L\u2192en\nR@1 dense", 1: "XQuAD-R L\u2192en\nR@1 MaxSim", 2: "XQuAD-R L\u2192pool\nmAP dense",
             3: "XQuAD para.\nR@1 dense", 4: "XQuAD para.\nR@1 MaxSim"}
    # plot_retrieval sorts its groups by "lang": a sortable key, relabelled below
    f["lang"] = [f"{g}" for g in f["group"]]
    f["score"] = f["value"]
    f["score_ci"] = [[lo, hi] for lo, hi in zip(f["ci_lo"], f["ci_hi"])]
    f = _method_sorted(f)
    fig, ax = plt.subplots(figsize=(plots.TEXT_WIDTH, 2.4))
    plots.plot_retrieval(f, "score", hue="method", ax=ax)
    ax.set_xticklabels([names.get(int(t.get_text()), t.get_text()) for t in ax.get_xticklabels()], rotation=0)
    ax.set_ylabel("score (avg. over languages)")
    ax.set_title(f"RQ1: OPTICAL-style distillation vs. baselines{tag}", loc="left", pad=18)
    _recolor(ax, dict(ncols=len(f["method"].unique()), loc="lower left", bbox_to_anchor=(0, 1.0), borderaxespad=0.1))
    return plots.save_figure(fig, figures_dir / "rq1_average", formats=("pdf", "png"))


def _rq2_scaling(d, figures_dir, tag, plots, plt) -> list[Path]:
    written = []
    f = _method_sorted(_with_ci(d[d["lang"] == "all"], "recall@1"))
    for which, label in (("trained", "seen"), ("unseen", "unseen")):
        g = f[f["eval_langs"] == which]
        if g.empty:
            continue
        directions = [di for di in ("xx->en", "en->xx") if (g["direction"] == di).any()]
        fig, axes = plt.subplots(1, len(directions), figsize=(plots.TEXT_WIDTH, 2.5), squeeze=False, sharey=True)
        for k, (ax, direction) in enumerate(zip(axes[0], directions)):
            plots.plot_scaling(g[g["direction"] == direction], "recall@1", ax=ax)
            ax.set_title(_EVAL_LABELS[("flores", direction)], loc="left")
            ax.get_legend().remove()
            last = k == len(directions) - 1
            _recolor(ax, dict(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0) if last else None)
            if k > 0:
                ax.set_ylabel("")
        per_lang = d[(d["eval_langs"] == which) & (d["lang"] != "all")]
        n_langs = per_lang.groupby("langset")["lang"].nunique().max()
        what = ("the trained languages (average)" if which == "trained"
                else f"{n_langs} unseen languages (average)")
        fig.suptitle(f"RQ2: FLORES Recall@1 on {what}{tag}", x=0.01, ha="left", fontsize=9)
        written += plots.save_figure(fig, figures_dir / f"rq2_scaling_{label}", formats=("pdf", "png"))
    return written


# ----------------------------------------------------------------------------- entry point


@dataclass
class ReproduceResult:
    """What :func:`reproduce` did: the plan, the timing records and the files written."""

    runs: list[Run]
    trained: int
    evaluated: int
    skipped: int
    records: list[dict]
    failed: list[str]
    summary_csv: Path | None
    figures: list[Path]
    seconds: float


def reproduce(
    spec: GridSpec,
    *,
    runs_dir: str | os.PathLike,
    results_dir: str | os.PathLike,
    figures_dir: str | os.PathLike,
    root=None,
    dry_run: bool = False,
    progress: bool = True,
    log=print,
) -> ReproduceResult:
    """Run the grid (skipping what exists), then write summaries, tables and figures."""
    import warnings

    start = time.perf_counter()
    runs = build_grid(spec, runs_dir=runs_dir)
    st = status(runs, results_dir)
    log(format_plan(spec, runs, st))
    if dry_run:
        return ReproduceResult(runs, 0, 0, len(st.done), [], [], None, [], time.perf_counter() - start)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*truncat", category=UserWarning)
        records = run_grid(spec, runs, results_dir, root=root, progress=progress, log=log)
    failed = [r["run_id"] for r in records if "error" in r]
    results_dir, figures_dir = Path(results_dir), Path(figures_dir)
    summary = collect(results_dir)
    if summary.empty:
        raise ValueError(f"no result files under {results_dir}")
    summary_csv = results_dir / "summary.csv"
    _write_atomic(summary_csv, summary.to_csv(index=False, float_format="%.6g"))
    methods = aggregate(results_dir, n_bootstrap=spec.n_bootstrap)
    _write_atomic(results_dir / "summary_methods.csv", methods.to_csv(index=False, float_format="%.6g"))
    tests = {}
    for q in ("rq1", "rq2"):
        tests[q] = paired_tests(results_dir, question=q)
        if not tests[q].empty:
            _write_atomic(results_dir / f"{q}_paired_tests.csv", tests[q].to_csv(index=False, float_format="%.6g"))
    table = rq1_table(methods, spec.scale)
    if table:
        _write_atomic(results_dir / "rq1_table.md", table)
    _write_atomic(results_dir / "findings.md", findings(methods, tests, spec.scale))
    _write_atomic(results_dir / "timings.json", json.dumps(_timings(results_dir), indent=1) + "\n")
    figures = make_figures(methods, figures_dir, spec.scale)
    seconds = time.perf_counter() - start
    log(f"{len(records)} runs touched ({len(st.to_train)} trained, {len(st.to_evaluate)} evaluations, "
        f"{len(st.done)} skipped) in {seconds / 60:.1f} min; results in {results_dir}, figures in {figures_dir}")
    for r in records:
        if "error" in r:
            log(f"FAILED {r['run_id']}: {r['error']}")
    return ReproduceResult(runs, len(st.to_train), len(st.to_evaluate), len(st.done), records, failed, summary_csv,
                           figures, seconds)


def _timings(results_dir: Path) -> dict:
    """Per run: training seconds and evaluation seconds per evaluation, from the result files."""
    out: dict = {}
    for path in _result_files(results_dir):
        doc = json.loads(path.read_text())
        r = out.setdefault(doc["run_id"], {"train_s": doc["timings"]["train_s"], "eval_s": {}})
        r["eval_s"][doc["evaluation"]["name"]] = doc["timings"]["eval_s"]
    return out
