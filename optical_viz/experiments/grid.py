"""The grid file (spec) and its expansion into runs.

A grid file (``configs/grid-quick.yaml``) names, per research question, the distillation
configs, the methods (losses; ``zero-shot`` = no training), the seeds and the evaluations.
:class:`GridSpec` is its typed, strict form (the same layer as
:class:`optical_viz.config.DistillConfig`: unknown keys are rejected with the closest key,
choices come from their owners, tasks and languages are checked when the file is read);
:func:`build_grid` is the product: one :class:`Run` per (question, language set, method, seed).
"""
import dataclasses
import os
import typing
from pathlib import Path
from typing import Dict, List, Optional, Union

from pydantic.dataclasses import dataclass

from optical_viz.config import (
    STRICT,
    Bool,
    DistillConfig,
    Float,
    Int,
    Str,
    choice,
    deep_merge,
    load_yaml,
    parse,
)
from optical_viz.options import ALIGNERS, FLORES_TASK_SPLITS, PRECISIONS, SCORINGS, TASKS

ZERO_SHOT = "zero-shot"
# the training methods a question compares: no training, or a loss of optical_viz.losses (or a
# sum); not to be confused with the solvers (options.SOLVERS) or the aligners (options.ALIGNERS)
TRAINING_METHODS = (ZERO_SHOT, "mse", "contrastive", "ot", "ot+contrastive")
EVAL_LANGS = ("trained", "unseen", "english")
ALIGNMENT = "alignment"  # word alignment of the student against a gold file (AER), not retrieval
GRID_TASKS = (*(t for t in TASKS if t != "clir"), ALIGNMENT)  # clir reads its own collection folder


@dataclass(config=STRICT)
class EvalSpec:
    """One evaluation of every model of a question.

    task: a retrieval task (``xquad-r``, ``xquad``, ``flores``, ``tatoeba``); scoring: ``dense`` or ``maxsim``.
    langs: ``"trained"`` (the run's languages that the task has) or ``"unseen"`` (the
        question's unseen languages). directions: a subset of the task's (None: all).
    seeds: evaluate only runs with these seeds (None: all), e.g. MaxSim on seed 0 only.
    max_queries / max_candidates: per (language, direction), a fixed random subset of the
        queries and of the candidates (the gold candidates of the kept queries are always
        kept); None keeps everything. The subsets depend only on the language and the sizes
        (for FLORES both directions use the same sentences), so every model is scored on the
        same queries (paired tests need that).
    split: the FLORES split (``all`` = 1004 sentences).
    query_ids: only these queries (XQuAD / XQuAD-R question ids), e.g. a protocol's dev or
        test articles; candidates stay the full pools. Applied before ``max_queries``.
    include_english: also evaluate English queries (``langs: trained``), e.g. XQuAD en->en.
    at_step: score the run's snapshot at this training step (``RUN/student-step-N``, written
        because the run's config lists N in ``snapshots``) instead of the final student.
    pair, align_methods, layer: task ``alignment`` only: the gold pair (``roen``), the plan
        methods of :func:`optical_viz.alignment.evaluate_alignment` and the hidden layer;
        the student aligns both sides (``max_queries`` limits the sentence pairs).
    label: the evaluation's name in file names and tables (default ``<task>.<scoring>``,
        plus ``.unseen`` for unseen languages); needed when a task is evaluated twice.
    english_by: who encodes the English side of a trained run's evaluation: None (each task's
        rule: retrieval gives English to the teacher, alignment gives both sides to the
        student); ``"student"``: the student's English queries against the teacher's English
        candidates (an English control); ``"teacher"`` (task ``alignment``): the student's
        tokens of the source side against the teacher's tokens of the English target side.
    """

    task: choice(GRID_TASKS)
    scoring: choice(SCORINGS) = "dense"
    langs: choice(EVAL_LANGS) = "trained"
    directions: Optional[List[Str]] = None
    seeds: Optional[List[Int]] = None
    max_queries: Optional[Int] = None
    max_candidates: Optional[Int] = None
    split: choice(FLORES_TASK_SPLITS) = "all"
    query_ids: Optional[List[Str]] = None
    include_english: Bool = False
    at_step: Optional[Int] = None
    pair: Optional[Str] = None
    align_methods: Optional[List[choice(ALIGNERS)]] = None
    layer: Int = -1
    label: Optional[Str] = None
    english_by: Optional[choice(("student", "teacher"))] = None

    def __post_init__(self) -> None:
        for k in ("max_queries", "max_candidates"):
            v = getattr(self, k)
            if v is not None and v < 1:
                raise ValueError(f"evaluation {k} must be >= 1 or null, got {v}")
        if self.at_step is not None and self.at_step < 1:
            raise ValueError(f"evaluation at_step must be >= 1 or null, got {self.at_step}")
        if (self.task == ALIGNMENT) != (self.pair is not None):
            raise ValueError(f"evaluation pair is for task {ALIGNMENT} (and it needs one), got task {self.task} "
                             f"with pair {self.pair!r}")
        if self.task != "flores" and self.split != "all":
            raise ValueError(f"evaluation split {self.split!r} only applies to task flores, not {self.task}")

    @property
    def name(self) -> str:
        """The evaluation's file suffix, e.g. ``xquad-r.dense`` or ``flores.dense.unseen``."""
        if self.label:
            return self.label
        if self.task == ALIGNMENT:
            return f"{ALIGNMENT}.{self.pair}" + (f"@{self.at_step}" if self.at_step is not None else "")
        name = f"{self.task}.{self.scoring}" + ("" if self.langs == "trained" else f".{self.langs}")
        return name + (f"@{self.at_step}" if self.at_step is not None else "")


@dataclass(config=STRICT)
class ConfigEntry:
    """A language set given as ``{"config": path, "max_languages": N}``."""

    config: Str
    max_languages: Optional[Int] = None


@dataclass(config=STRICT)
class QuestionSpec:
    """One research question: its language sets, methods, seeds and evaluations.

    configs: language-set label -> distill config (YAML, relative to the grid file), or
        -> ``{"config": path, "max_languages": N}`` to keep the first N of its languages.
    max_languages: keep the first N languages of each config (quick scale), else all.
    overrides: DistillConfig fields set on every trained run (e.g. a shorter schedule);
        nested sections merge (``{"eval": {"heldout_sentences": 8}}``).
    unseen: a YAML file with ``unseen_languages``; max_unseen keeps the first N.
    title: the question in words, for figure titles (default: its name).
    """

    name: Str
    configs: Dict[str, Union[ConfigEntry, Str]]
    methods: List[choice(TRAINING_METHODS)]
    seeds: List[Int]
    evaluations: List[EvalSpec] = dataclasses.field(default_factory=list)
    max_languages: Optional[Int] = None
    overrides: Dict[str, typing.Any] = dataclasses.field(default_factory=dict)
    unseen: Optional[Str] = None
    max_unseen: Optional[Int] = None
    title: Optional[Str] = None

    def __post_init__(self) -> None:
        if not self.methods:
            raise ValueError(f"{self.name}: methods [] not among {TRAINING_METHODS}")
        if not self.seeds:
            raise ValueError(f"{self.name}: at least one seed is required")
        if not self.configs:
            raise ValueError(f"{self.name}: no configs")
        names = [e.name for e in self.evaluations]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: evaluations with the same name {names}: give them a 'label'")
        for e in self.evaluations:
            if e.langs == "unseen" and not self.unseen:
                raise ValueError(f"{self.name}: evaluation {e.name} needs an 'unseen' language file")


def _config_entry(entry) -> tuple[str, int | None]:
    """``path`` or ``ConfigEntry`` -> (path, max_languages or None)."""
    if isinstance(entry, ConfigEntry):
        return entry.config, entry.max_languages
    return str(entry), None


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What :func:`~optical_viz.experiments.run.run_grid` needs of a grid besides its runs: a
    grid file's (:attr:`GridSpec.run_options`) or a protocol's
    (:func:`optical_viz.experiments.stages.run_options`).

    scale: names the plan and the result files; n_bootstrap: resamples of each 95% interval;
    prune: delete a run's weights once its evaluations are written; precision: of every
    evaluated model; estimate: the printed plan's costs
    (:func:`~optical_viz.experiments.run.estimate_seconds`).
    """

    scale: str
    n_bootstrap: int = 1000
    prune: bool = False
    precision: str = "fp32"
    estimate: dict = dataclasses.field(default_factory=dict)


@dataclass(config=STRICT)
class GridSpec:
    """A whole grid (one scale). Load with :meth:`from_yaml`.

    estimate: rough costs for the printed plan: ``seconds_per_step`` (one training step;
        ``seconds_per_step_heavy`` for a loss with an mse term), ``sentences_per_second``
        (encoding; ``sentences_per_second_<task>`` for one task), ``seconds_per_model``
        (loading and saving); see :func:`optical_viz.experiments.run.estimate_seconds`.
    prune: delete a run's student weights and checkpoints once all its evaluations are
        written (keeps the quick grid small on disk; the results stay).
    precision: of every model the grid evaluates (``bf16``: ~2.6x faster on CPUs with
        AVX512-BF16, >= 0.99998 cosine of fp32; compare systems only at equal precision).
    base_dir: the folder the config paths are relative to (the grid file's).
    """

    scale: Str
    questions: List[QuestionSpec]
    n_bootstrap: Int = 1000
    prune: Bool = False
    precision: choice(PRECISIONS) = "fp32"
    estimate: Dict[str, Float] = dataclasses.field(default_factory=dict)
    base_dir: Path = Path(".")

    def __post_init__(self) -> None:
        if not self.questions:
            raise ValueError("the grid has no questions")
        for q in self.questions:
            for path in [*(_config_entry(c)[0] for c in q.configs.values()), *([q.unseen] if q.unseen else [])]:
                if not (self.base_dir / path).is_file():
                    raise FileNotFoundError(f"{q.name}: config {self.base_dir / path} does not exist")

    @property
    def run_options(self) -> "RunOptions":
        """What the run loop needs of this grid besides its runs."""
        return RunOptions(scale=self.scale, n_bootstrap=self.n_bootstrap, prune=self.prune,
                          precision=self.precision, estimate=dict(self.estimate))

    @property
    def titles(self) -> dict[str, str]:
        """Question -> its title (those that have one), for :func:`~optical_viz.experiments.make_figures`."""
        return {q.name: q.title for q in self.questions if q.title}

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
        path = Path(path)
        doc = load_yaml(path, what="grid")
        if isinstance(doc, dict) and "questions" not in doc and _looks_like_a_distill_config(doc):
            raise ValueError(
                f"{path} is a distill config, not a grid file (a grid file has 'questions:', see "
                f"configs/grid-quick.yaml): train it with `optical-viz distill {path}`"
            )
        try:
            return cls.from_dict(doc, base_dir=path.parent)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, doc: dict, base_dir: str | os.PathLike = ".") -> "GridSpec":
        questions = doc.get("questions")
        if isinstance(questions, dict):  # name -> question, as in the YAML file
            doc = {**doc, "questions": [{"name": n, **(q or {})} for n, q in questions.items()]}
        return parse(cls, {**doc, "base_dir": Path(base_dir)}, what="grid")


def _looks_like_a_distill_config(doc: dict) -> bool:
    """Whether most top-level keys of ``doc`` are DistillConfig fields (a file given to
    ``reproduce --grid`` by mistake)."""
    from optical_viz.config import DistillConfig

    fields = {f.name for f in dataclasses.fields(DistillConfig)}
    return bool(doc) and sum(k in fields for k in doc) > len(doc) / 2


# ----------------------------------------------------------------------------- the grid


@dataclasses.dataclass
class Run:
    """One model of the grid: trained with ``config`` (None for zero-shot), then evaluated.

    languages: the trained languages (FLORES codes; for zero-shot those of its language set).
    unseen: the question's unseen languages (empty when it has none).
    variant: the method's setting, when a question compares several (e.g. ``t0.05-lr1e-4``).
    model: of a zero-shot run, the model directory that encodes both sides (None: the default
        model), e.g. a teacher scored alone as a no-transfer floor.
    """

    question: str
    langset: str
    method: str
    seed: int
    languages: list[str]
    config: DistillConfig | None
    evaluations: list[EvalSpec]
    unseen: list[str] = dataclasses.field(default_factory=list)
    variant: str = ""
    model: str | None = None

    @property
    def run_id(self) -> str:
        method = f"{self.method}-{self.variant}" if self.variant else self.method
        return f"{self.question}-{self.langset}-{method}-s{self.seed}"

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
    runs_dir = Path(runs_dir) if runs_dir is not None else Path("runs") / spec.scale
    runs: list[Run] = []
    for q in spec.questions:
        unseen: list[str] = []
        if q.unseen:
            unseen = list(load_yaml(spec.base_dir / q.unseen, what="language list").get("unseen_languages") or [])
            unseen = unseen[: q.max_unseen]
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
                        d = deep_merge(base.to_dict(), q.overrides)
                        d = deep_merge(d, {"languages": langs, "loss": {"name": method}, "seed": seed,
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
