"""The configuration layer: typed, strict sections of a distillation run, loaded from YAML.

Every section is a pydantic v2 dataclass (``extra="forbid"``): a wrong type, an unknown
key (with the closest valid key suggested) or a value outside its choices is a
``ValueError`` of one line that names the field, e.g.
``configs/x.yaml: loss.ot.epsilon: unknown key; did you mean 'eps'?``. The choices are
imported from :mod:`optical_viz.options`, the vocabulary that the modules implementing them
(losses, transport, retrieval, data, encoder) import too, never retyped here; this module
imports no torch. Cross-field checks (a loss weight for a term the loss has, an evaluation
task that exists, languages that resolve) run when a config is built.

:class:`OTConfig` is the one place where the OT loss's defaults are written:
:func:`optical_viz.losses.ot_loss` called without options computes what the trainer computes
with a default ``loss.ot``.

>>> cfg = DistillConfig.from_yaml("configs/quick.yaml")
>>> cfg.merge({"steps": 8, "eval": {"heldout_sentences": 8}}).eval.task   # deep merge
'flores'

Pydantic *dataclasses* rather than ``BaseModel``: the trainer, the grid and the tests use
``dataclasses.replace`` / ``dataclasses.asdict`` on configs, which keep working (and
``replace`` re-validates). The grid's own specs (:mod:`optical_viz.experiments.grid`) use
the same base types and error formatting.
"""
import dataclasses
import difflib
import os
import typing
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import BeforeValidator, ConfigDict, Strict, StrictBool, StrictInt, StrictStr, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from optical_viz.options import (
    EPS_MODES,
    FLORES_SPLITS as BITEXT_SPLITS,
    FLORES_TASK_SPLITS,
    LOSS_GRAD_MODES,
    LOSSES,
    MARGINALS,
    METRICS,
    OBJECTIVES,
    PLANS,
    PRECISIONS,
    START_METHODS,
    TASKS,
)

__all__ = [
    "OTConfig",
    "ContrastiveConfig",
    "LossConfig",
    "EvalConfig",
    "StartConfig",
    "DistillConfig",
    "SAMPLINGS",
    "DEVICES",
    "deep_merge",
    "load_yaml",
    "parse_yaml",
    "parse",
    "check_bitext_sources",
]

# how a batch's languages are drawn (optical_viz.distill.BitextSampler) and where a run trains
SAMPLINGS = ("uniform", "proportional", "temperature")
DEVICES = ("auto", "cpu", "cuda")
#: padded positions per side of a batch (batch_size x max_length) from which an MSE loss
#: recomputes activations by default: batch 32 x 64 peaked at 4.8 GB without, 3.3 GB with
CHECKPOINT_MIN_TOKENS = 32 * 64

STRICT = ConfigDict(extra="forbid")  # the types below are strict field by field


def _number(value):
    """Floats accept ints and numeric strings (YAML 1.1 reads ``1e-4`` as a string), not bools."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    return value


Int = StrictInt
Str = StrictStr
Bool = StrictBool
Float = Annotated[float, BeforeValidator(_number), Strict()]


def choice(values: typing.Iterable[str]):
    """``Literal[...]`` of an owner's tuple of names (e.g. ``choice(transport.METRICS)``)."""
    return Literal[tuple(values)]  # type: ignore[valid-type]


def _source_entry(value):
    """A ``bitext_sources`` entry: a source name or path (str), or a mapping of str to str."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    raise ValueError(f"expected a source name, a file path or a mapping of files, got {value!r}")


BitextSource = Annotated[typing.Union[str, typing.Dict[str, str]], BeforeValidator(_source_entry)]


def check_bitext_sources(sources: list) -> list[str]:
    """Problems of a ``bitext_sources`` list (empty: fine): each entry is a known source name,
    or your own files that exist (:func:`optical_viz.data.user_bitext.check_bitext_source`;
    their lines are validated when the data is read)."""
    from optical_viz.data.user_bitext import check_bitext_source

    if not sources:
        return ["bitext_sources: at least one source is required"]
    errors = []
    for i, entry in enumerate(sources):
        try:
            check_bitext_source(entry)
        except (ValueError, FileNotFoundError, KeyError) as exc:
            errors.append(f"bitext_sources[{i}]: {str(exc).strip(chr(34))}")
    return errors


# ----------------------------------------------------------------------------- sections


@dataclass(config=STRICT)
class OTConfig:
    """Options of the OT (OPTICAL) loss; see :func:`optical_viz.losses.ot_loss` and README, Method.

    The one place where the OT loss's defaults are written: ``losses.ot_loss(x, y, mx, my)``
    takes them from here (``ot_loss(..., settings)`` or keyword overrides of these fields), and
    the trainer passes its ``loss.ot``. The default minimises the debiased Sinkhorn divergence
    between content tokens, which is 0 exactly when the student's tokens are the teacher's.
    OPTICAL as run for results/full is ``objective: entropic, marginals: uniform`` (the configs
    of the committed grid say so).

    ``layer`` and ``marginals`` choose the loss's inputs, which the trainer prepares
    (:meth:`optical_viz.distill.Trainer.batch_states`): the hidden states of ``layer``, and
    token weights from :func:`optical_viz.losses.content_weights` for ``content`` (None,
    uniform over real tokens, for ``uniform``). ``ot_loss`` uses the weights it is given.
    ``max_iter`` / ``tol`` are a budget per training step; a plan solved on its own
    (:func:`optical_viz.transport.sinkhorn`) defaults to a tighter one.
    """

    objective: choice(OBJECTIVES) = "divergence"  # entropic | plan_cost | divergence
    plan: choice(PLANS) = "sinkhorn"  # sinkhorn | emd (exact plans, objective plan_cost)
    # E5's last-layer token cosines spread little (std ~0.07): at eps 0.1 plans are ~99%
    # of the uniform entropy and the loss pulls every token to the teacher's mean token
    eps: Float = 0.02
    eps_mode: choice(EPS_MODES) = "absolute"  # absolute (cost units) | relative (x per-pair std of the costs)
    eps_scaling: Optional[Float] = None  # annealing ratio in (0, 1) for small eps (e.g. 0.5)
    overrelax: Bool = False  # adaptive over-relaxed Sinkhorn (transport.sinkhorn): fewer iterations, same fixed point
    metric: choice(METRICS) = "cosine"
    grad: choice(LOSS_GRAD_MODES) = "envelope"
    rho: Optional[Float] = None  # None: balanced; > 0: unbalanced (KL marginal penalty)
    marginals: choice(MARGINALS) = "content"  # content: tokens of words only; uniform: every real token
    layer: Int = -1  # hidden layer compared (0 = embedding output, -1 = last)
    max_iter: Int = 300
    tol: Float = 1e-4  # L1 marginal error; unconverged problems are counted in metrics ("ot_converged")

    def check(self) -> None:
        """Raise ValueError for a setting that would not do what it says (types and choices are
        checked when the config is built). Run by :func:`optical_viz.losses.ot_loss` and when a
        :class:`DistillConfig` is built, so that a YAML file fails at load time with the same
        message as the call would."""
        objective, plan, grad, rho, eps = self.objective, self.plan, self.grad, self.rho, self.eps
        if plan == "emd" and (objective != "plan_cost" or grad != "envelope"):
            raise ValueError(
                f"plan='emd' is the exact OT cost with its exact envelope gradient: use objective='plan_cost' "
                f"and grad='envelope' (got objective={objective!r}, grad={grad!r})"
            )
        if plan == "sinkhorn" and objective == "plan_cost" and grad == "envelope":
            raise ValueError(
                "objective='plan_cost' with grad='envelope' would descend OT_eps, not <P, C>: use grad='unroll', "
                "objective='entropic', or plan='emd'"
            )
        if rho is not None and not rho > 0:
            raise ValueError(f"rho must be positive (or None for balanced OT), got {rho!r}")
        if rho is not None and (objective == "divergence" or plan == "emd"):
            raise ValueError(
                f"rho (unbalanced OT) is available for plan='sinkhorn' with objective 'entropic' or 'plan_cost', "
                f"not objective={objective!r}, plan={plan!r}"
            )
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        if self.eps_scaling is not None and not 0 < self.eps_scaling < 1:
            raise ValueError(f"eps_scaling must be a ratio in (0, 1) or None, got {self.eps_scaling!r}")


@dataclass(config=STRICT)
class ContrastiveConfig:
    """Options of the InfoNCE loss; see :func:`optical_viz.losses.contrastive_loss`."""

    temperature: Float = 0.05
    margin: Float = 0.0
    symmetric: Bool = True


@dataclass(config=STRICT)
class LossConfig:
    """Which loss, its weights and parameters.

    name: "ot", "contrastive", "mse", or a combination joined by "+" ("ot+contrastive").
    weights: weight per term; terms not listed weigh 1.
    """

    name: Str = "ot"
    weights: typing.Dict[str, Float] = dataclasses.field(default_factory=dict)
    ot: OTConfig = dataclasses.field(default_factory=OTConfig)
    contrastive: ContrastiveConfig = dataclasses.field(default_factory=ContrastiveConfig)

    @property
    def terms(self) -> list[str]:
        return [t.strip() for t in self.name.split("+")]

    def term_weights(self) -> dict[str, float]:
        return {t: float(self.weights.get(t, 1.0)) for t in self.terms}


@dataclass(config=STRICT)
class StartConfig:
    """How the student starts, before step 1 (the same for every loss; issue 26).

    method: "none" (the student as loaded) or "linear_map": a ridge least-squares map from
        the student's last layer to the teacher's space, fitted on ``pairs`` training bitext
        pairs (the first ones a sampler with the run's seed draws) and trained with the
        student afterwards; see :mod:`optical_viz.linear_map`. Needed when the teacher is
        another model (its space unrelated to the student's), pointless for self-distillation.
    pairs: bitext pairs the map is fitted on. ridge: its L2 penalty (> 0).
    """

    method: choice(START_METHODS) = "none"
    pairs: Int = 800
    ridge: Float = 1.0


@dataclass(config=STRICT)
class EvalConfig:
    """Periodic evaluation.

    every: run ``optical_viz.retrieval.evaluate`` every N steps and at the end (0: never).
    task, langs, split: passed to ``retrieval.evaluate``; langs None -> the trained languages.
    heldout_every: the cheap built-in signal (student(low-resource) against teacher(English)
        sentence embeddings of FLORES dev pairs of the trained languages: mean cosine of the
        pairs, the gap to non-matching pairs and recall@1 among them) is measured at step 0,
        at the end and every N steps (0: only start and end).
    heldout_sentences: FLORES dev sentences per language for that signal (2 to 99).
    """

    every: Int = 0
    task: choice(TASKS) = "flores"
    langs: Optional[typing.List[Str]] = None
    split: Optional[choice(FLORES_TASK_SPLITS)] = "dev"
    heldout_every: Int = 0
    heldout_sentences: Int = 99


@dataclass(config=STRICT)
class DistillConfig:
    """One distillation run. Load with :meth:`from_yaml`, save with :meth:`to_yaml`.

    teacher / student: model names or directories for :func:`optical_viz.encoder.load_encoder`
        (None: the converted default model); the student starts as a copy of ``student``
        (or of the teacher when None).
    languages: low-resource languages (any code :func:`optical_viz.data.resolve_language`
        accepts; checked when the config is built, stored resolved by ``distill``).
    bitext_sources: data sets to draw bitext from ("flores", "nllb_seed", "mafand",
        "tatoeba"); each language uses every listed source that has it.
    sampling: how a batch's languages are drawn: "uniform" (each language alike),
        "proportional" (by corpus size) or "temperature" (p ~ n ** (1 / sampling_temperature)).
    freeze_embeddings: freeze the word-embedding table (96M of e5-small's 118M parameters).
    train_layers: train only the top N transformer layers (None: all).
    dropout: override the model's dropout probabilities (None: keep; 0 disables).
    gradient_checkpointing: recompute the student's activations in the backward pass
        (less memory, about one more forward of time: an MSE step at batch 16 x 48 took 1.25x
        as long with it). None (the default): on only where memory needs it, i.e. when the
        loss has an MSE term, whose two student forwards (low-resource and English) double
        the activation memory, and a batch has at least ``CHECKPOINT_MIN_TOKENS`` padded
        positions per side (batch 32 x 64: peak 4.8 GB without, 3.3 GB with it). The
        losses are the same either way (the recomputation replays the dropout masks).
    device: "auto" (CUDA when present), "cpu" or "cuda"; precision: "auto" (the default:
        bf16 where the device computes it natively, a GPU or a CPU with AVX512-BF16 / AMX,
        else fp32; see :func:`optical_viz.encoder.resolve_precision`), "fp32" or "bf16"
        (autocast, losses within 2% of fp32; on a CPU without native bf16 several times
        slower, and a warning says so).
        num_threads: torch CPU threads during the run (None: torch's default; 1 is much
        faster when other processes compete for the cores).
    checkpoint_every, keep_checkpoints: a checkpoint (``RUN/checkpoints/step-N/``) every N
        steps, the last ``keep_checkpoints`` kept while training (an earlier one is used when
        the latest is damaged) and only the last once the run has finished.
    start: how the student starts (:class:`StartConfig`): as loaded, or with a linear map to
        the teacher's space fitted on bitext before step 1.
    snapshots: steps (each in [1, steps)) at which the student is also written as a model
        directory ``RUN/student-step-N/``, as the final ``RUN/student/`` (e.g. ``[50, 200]``
        for learning curves of the retrieval scores).
    teacher_cache_mb: memory (MiB, on the training device, per process) for the frozen
        teacher's hidden states of English sentences already seen, so that a sentence met
        again (FLORES train is multi-parallel: every language has the same English side) is
        not forwarded again; 0 disables. The results are the same either way.
    length_buckets: 1 (the default) keeps the sampler's order. k > 1: the pairs of k
        consecutive batches are regrouped by length in tokens (source, then English) into k
        batches served in a random order: the same pairs, less padding, a faster step, but a
        different data order (a run learns the same within noise, not the same numbers);
        the committed configs keep 1 so that their results reproduce.
    unpad: run the BERT-family teacher and student on real tokens only in every token-wise
        layer (:mod:`optical_viz.unpad`; attention stays padded): the same states, gradients
        and dropout masks as the padded forward, 1.2x faster at 16 x 48 (20% padding); False
        (or a model it does not support, or gradient checkpointing) runs the model's own forward.
    """

    languages: typing.List[Str] = dataclasses.field(default_factory=list)
    bitext_sources: typing.List[BitextSource] = dataclasses.field(default_factory=lambda: ["flores"])
    bitext_split: Str = "train"
    teacher: Optional[Str] = None
    student: Optional[Str] = None
    sampling: choice(SAMPLINGS) = "temperature"
    sampling_temperature: Float = 5.0
    steps: Int = 1000
    batch_size: Int = 16
    max_length: Int = 128
    lr: Float = 2e-5
    warmup_steps: Int = 100
    weight_decay: Float = 0.01
    grad_clip: Optional[Float] = 1.0
    freeze_embeddings: Bool = True
    train_layers: Optional[Int] = None
    dropout: Optional[Float] = None
    gradient_checkpointing: Optional[Bool] = None
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    start: StartConfig = dataclasses.field(default_factory=StartConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    seed: Int = 0
    device: choice(DEVICES) = "auto"
    precision: choice(PRECISIONS) = "auto"
    num_threads: Optional[Int] = None
    output_dir: Str = "runs/distill"
    log_every: Int = 1
    checkpoint_every: Int = 100
    keep_checkpoints: Int = 2
    snapshots: typing.List[Int] = dataclasses.field(default_factory=list)
    teacher_cache_mb: Int = 512
    length_buckets: Int = 1
    unpad: Bool = True

    # --- YAML

    @classmethod
    def from_dict(cls, data: dict) -> "DistillConfig":
        """Build and validate a config; unknown keys and bad values raise a one-line ValueError."""
        return parse(cls, data, what="distillation config")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "DistillConfig":
        return parse_yaml(cls, path, what="distillation config")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        if path is not None:
            Path(path).write_text(text)
        return text

    def checkpointing(self) -> bool:
        """Whether the student recomputes activations: ``gradient_checkpointing``, or when None,
        whether the loss has an MSE term and a batch reaches ``CHECKPOINT_MIN_TOKENS``."""
        if self.gradient_checkpointing is not None:
            return self.gradient_checkpointing
        return "mse" in self.loss.terms and self.batch_size * self.max_length >= CHECKPOINT_MIN_TOKENS

    def replace(self, **changes) -> "DistillConfig":
        """A validated copy with some top-level fields changed (``loss`` may be a name)."""
        if isinstance(changes.get("loss"), str):
            terms = [t.strip() for t in changes["loss"].split("+")]
            weights = {k: v for k, v in self.loss.weights.items() if k in terms}
            changes["loss"] = dataclasses.replace(self.loss, name=changes["loss"], weights=weights)
        return parse(type(self), {**self.to_dict(), **{k: _plain(v) for k, v in changes.items()}},
                     what="distillation config")

    def merge(self, changes: dict) -> "DistillConfig":
        """A validated copy with ``changes`` deep-merged in: nested sections keep the keys
        not mentioned (``{"eval": {"heldout_sentences": 8}}`` leaves ``eval.task`` alone)."""
        return parse(type(self), deep_merge(self.to_dict(), changes), what="distillation config")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a ValueError naming every bad value (runs on construction, also of copies)."""
        errors = self.problems()
        if errors:
            raise ValueError("invalid distillation config: " + "; ".join(errors))

    def problems(self) -> list[str]:
        """Every bad value and inconsistency, one message each (empty: the config is valid)."""
        from optical_viz.data import resolve_language

        errors = []

        def check(cond, msg):
            if not cond:
                errors.append(msg)

        check(len(self.languages) > 0, "languages: at least one language is required")
        check(len(set(self.languages)) == len(self.languages), f"languages: duplicates in {self.languages}")
        errors += _unresolved("languages", self.languages, resolve_language)
        errors += check_bitext_sources(self.bitext_sources)
        check(
            self.bitext_split == "all" or set(self.bitext_split.split("+")) <= set(BITEXT_SPLITS),
            f"bitext_split: {self.bitext_split!r} is not train, dev, test, a '+' combination or all",
        )
        check(self.sampling_temperature > 0, f"sampling_temperature must be > 0, got {self.sampling_temperature}")
        check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        check(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        check(self.max_length >= 4, f"max_length must be >= 4, got {self.max_length}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(0 <= self.warmup_steps, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0 or null, got {self.grad_clip}")
        check(self.train_layers is None or self.train_layers >= 0, f"train_layers must be >= 0 or null, got {self.train_layers}")
        check(self.dropout is None or 0 <= self.dropout < 1, f"dropout must be in [0, 1) or null, got {self.dropout}")
        check(self.num_threads is None or self.num_threads >= 1, f"num_threads must be >= 1 or null, got {self.num_threads}")
        check(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        check(self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        check(self.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        outside = [s for s in self.snapshots if not 1 <= s < self.steps]
        check(not outside, f"snapshots: steps {outside} are not in [1, steps={self.steps}) (the final student is always written)")
        check(len(set(self.snapshots)) == len(self.snapshots), f"snapshots: duplicates in {self.snapshots}")
        check(self.length_buckets >= 1, f"length_buckets must be >= 1 (1: no regrouping), got {self.length_buckets}")
        check(self.start.pairs >= 1, f"start.pairs must be >= 1, got {self.start.pairs}")
        check(self.start.ridge > 0, f"start.ridge must be > 0, got {self.start.ridge}")
        check(self.teacher_cache_mb >= 0, f"teacher_cache_mb must be >= 0 (0: no cache), got {self.teacher_cache_mb}")
        bad = [t for t in self.loss.terms if t not in LOSSES]
        check(not bad, f"loss.name: {bad} not among {list(LOSSES)} (combine with '+', e.g. ot+contrastive)")
        extra = sorted(set(self.loss.weights) - set(self.loss.terms))
        check(not extra, f"loss.weights: {extra} are not terms of loss {self.loss.name!r}")
        try:
            self.loss.ot.check()
        except ValueError as exc:
            errors.append(f"loss.ot: {exc}")
        check(self.loss.contrastive.temperature > 0, f"loss.contrastive.temperature must be > 0, got {self.loss.contrastive.temperature}")
        check(self.eval.every >= 0 and self.eval.heldout_every >= 0, "eval.every and eval.heldout_every must be >= 0")
        check(2 <= self.eval.heldout_sentences <= 99,  # the translation gap needs a non-matching pair
              f"eval.heldout_sentences must be in [2, 99], got {self.eval.heldout_sentences}")
        # as retrieval.evaluate, which would otherwise reject it at the first evaluation
        check(self.eval.every == 0 or self.eval.task == "flores" or self.eval.split in (None, "all"),
              f"eval.split: {self.eval.split!r} only applies to task flores (eval.task is {self.eval.task!r}); set it to null")
        errors += _unresolved("eval.langs", self.eval.langs or [], resolve_language)
        return errors


def _unresolved(field: str, codes: list[str], resolve) -> list[str]:
    out = []
    for code in codes:
        try:
            resolve(code)
        except (KeyError, ValueError) as exc:
            out.append(f"{field}: unknown language {code!r}: {exc}")
    return out


def _plain(value):
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


# ----------------------------------------------------------------------------- helpers


def deep_merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` applied; nested mappings merge key by key (a plain ``|`` would
    replace a whole section, e.g. reset every ``eval`` key but the one given)."""
    out = dict(base)
    for k, v in changes.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_yaml(path: str | os.PathLike, what: str = "config") -> dict:
    """The mapping of a YAML file. Every problem is one ``ValueError`` line naming the file
    (``FileNotFoundError`` for a missing one): not UTF-8 text, a YAML syntax error (with its
    line and column), or a top level that is not a mapping."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text file (byte {exc.start} is not UTF-8); expected a YAML {what} "
                         "such as configs/quick.yaml") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{path}: not valid YAML{where}: {problem}; expected a YAML {what}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of {what} keys at the top level, got {type(data).__name__}")
    return data


def parse_yaml(cls, path: str | os.PathLike, what: str = "config"):
    """A YAML file validated into the pydantic dataclass ``cls`` (:func:`load_yaml`, then
    :func:`parse`); a bad value is one ValueError line that starts with the file's path."""
    data = load_yaml(path, what=what)
    try:
        return parse(cls, data, what=what)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def parse(cls, data, what: str = "config"):
    """``data`` (a mapping) validated into the pydantic dataclass ``cls``; a ValueError of one
    line naming every bad field (unknown keys with the closest valid key)."""
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected a mapping, got {data!r}")
    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as exc:
        raise ValueError(format_errors(exc, cls)) from None


def format_errors(exc: ValidationError, cls) -> str:
    """One line: ``field: problem`` per error, joined by "; "."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(x) for x in err["loc"])
        kind, given = err["type"], err.get("input")
        if kind in ("unexpected_keyword_argument", "extra_forbidden"):
            known = _field_names(cls, err["loc"][:-1])
            close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            parts.append(f"{loc}: unknown key; {hint}")
        elif kind == "literal_error":
            parts.append(f"{loc}: {given!r} is not one of {err['ctx']['expected']}")
        elif kind in _EXPECTED:
            parts.append(f"{loc}: expected {_EXPECTED[kind]}, got {given!r}")
        elif kind == "value_error":
            msg = str(err["ctx"]["error"])
            parts.append(f"{loc}: {msg}" if loc else msg)
        else:
            parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "string_type": "a string", "bool_type": "true or false",
    "float_type": "a number", "list_type": "a list", "dict_type": "a mapping", "dataclass_type": "a mapping",
    "missing_argument": "a value", "missing": "a value",
}


def _field_names(cls, loc: tuple) -> list[str]:
    """The field names of the (nested) dataclass at ``loc`` under ``cls`` (list indices and
    mapping keys in ``loc`` are stepped over)."""
    for key in loc:
        fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        if key in fields:
            cls = _dataclass_in(typing.get_type_hints(cls, include_extras=True)[key])
    return [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []


def _dataclass_in(tp):
    """The dataclass inside a type such as ``Optional[List[X]]`` or ``Dict[str, X | str]``."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        found = _dataclass_in(arg)
        if found is not None:
            return found
    return None
