"""The pre-registered RQ3 protocol (issue 26, ``results/optical/protocol.yaml``): OPTICAL's own
regime, an English-only retriever (all-MiniLM-L6-v2) teaching a multilingual student
(multilingual-e5-small) across tokenizers.

The YAML is read into typed sections (pydantic dataclasses, ``extra="forbid"``, as
:mod:`optical_viz.config`): a wrong type, an unknown key or a broken rule is a ``ValueError``
of one line that names the key, e.g. ``protocol.yaml: training.steps: at least 1000 steps, got 200``.
:func:`load_optical_protocol` reads and checks it; :func:`estimate` recomputes the compute
estimate that the file states.

>>> p = load_optical_protocol()
>>> p.training.steps >= 1000, p.models.teacher.name
(True, 'all-MiniLM-L6-v2')
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from pathlib import Path

from pydantic import model_validator
from pydantic.dataclasses import dataclass

from optical_viz import paths
from optical_viz.config import STRICT, Bool, Float, Int, OTConfig, Str, choice, load_yaml, parse
from optical_viz.linear_map import START_METHODS

__all__ = ["OPTICAL_PROTOCOL_PATH", "OpticalProtocol", "OTTuningConfig", "load_optical_protocol", "validate_optical_protocol",
           "estimate", "placeholders", "MIN_STEPS"]

OPTICAL_PROTOCOL_PATH = paths.REPO_ROOT / "results" / "optical" / "protocol.yaml"
MIN_STEPS = 1000  # issue 26: long enough for a student to move into another model's space
ARM_METHODS = ("teacher_only", "zero-shot", "mse", "contrastive", "ot", "ot+mse")
ALLOWED_PRECISIONS = ("fp32", "auto")  # bf16 on a CPU without native bf16 (AVX2 only) is 6-7x slower
TIE = 0.1  # dev points: a smaller difference of dev scores is a tie, won by the configuration listed first
OT_LR = 1.0e-4  # tuning.methods.ot: "lr 1e-4" (the protocol's comment; a configuration may set its own lr)


def _fail(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


@dataclass(config=STRICT)
class Model:
    """One encoder: ``name``, where it comes from, what it encodes."""

    name: Str
    source: Str
    encodes: choice(("english", "non_english", "both"))
    hidden_size: Int
    tokenizer: Str
    trained: Bool


@dataclass(config=STRICT)
class Models:
    teacher: Model
    student: Model
    evaluation: Str  # which model encodes which side at evaluation

    @model_validator(mode="after")
    def _check(self):
        _fail(not self.teacher.trained, "teacher.trained: the teacher is frozen")
        _fail(self.teacher.encodes == "english", "teacher.encodes: the teacher encodes the English side")
        _fail(self.teacher.hidden_size == self.student.hidden_size,
              f"student.hidden_size: {self.student.hidden_size} != the teacher's {self.teacher.hidden_size}")
        return self


@dataclass(config=STRICT)
class Start:
    """How every trained arm leaves chance (part of the method, the same for every arm): the
    ``start`` section of each run's DistillConfig (:class:`optical_viz.config.StartConfig`),
    with the dev pilots that chose it (``evidence``, files of the repository)."""

    method: choice(START_METHODS)
    pairs: Int
    ridge: Float
    trainable: Bool  # the map keeps training with the student
    same_for_every_arm: Bool
    evidence: typing.List[Str]
    finding: Str  # what the pilots showed, in a sentence or two

    @model_validator(mode="after")
    def _check(self):
        _fail(self.same_for_every_arm, "same_for_every_arm: the start must be the same for every arm")
        _fail(self.method != "none", "method: a cross-model run needs a start (linear_map); 'none' leaves it at chance")
        _fail(self.pairs >= 1 and self.ridge > 0, f"pairs / ridge: pairs >= 1 and ridge > 0, got {self.pairs}, {self.ridge}")
        _fail(bool(self.evidence), "evidence: name the pilot files that chose the start")
        missing = [e for e in self.evidence if not (paths.REPO_ROOT / e).is_file()]
        _fail(not missing, f"evidence: {missing} are not files of the repository")
        return self

    def config(self) -> dict:
        """The ``start`` section of a run's DistillConfig."""
        return {"method": self.method, "pairs": self.pairs, "ridge": self.ridge}


@dataclass(config=STRICT)
class Data:
    train_languages: typing.List[Str]
    train_sources: typing.Dict[str, Str]  # language group -> bitext source
    dev: typing.List[Str]
    test: typing.List[Str]
    unseen_languages: Str  # a config listing them

    @model_validator(mode="after")
    def _check(self):
        _fail(len(set(self.train_languages)) == len(self.train_languages), "train_languages: a language is listed twice")
        _fail(not any("test" in d for d in self.dev), f"dev: a dev set names a test split: {self.dev}")
        return self


@dataclass(config=STRICT)
class Training:
    steps: Int
    checkpoints: typing.List[Int]
    batch_size: Int
    max_length: Int
    warmup_steps: Int
    extend_rule: Str
    extend_to: Int
    precision: choice(ALLOWED_PRECISIONS)

    @model_validator(mode="after")
    def _check(self):
        _fail(self.steps >= MIN_STEPS, f"steps: at least {MIN_STEPS} steps, got {self.steps}")
        _fail(self.checkpoints == sorted(self.checkpoints) and self.checkpoints[-1:] == [self.steps],
              f"checkpoints: increasing and ending at steps ({self.steps}), got {self.checkpoints}")
        _fail(len(self.checkpoints) >= 3, f"checkpoints: a learning curve needs >= 3 points, got {self.checkpoints}")
        _fail(self.extend_to > self.steps, f"extend_to: must exceed steps ({self.steps}), got {self.extend_to}")
        return self


@dataclass(config=STRICT)
class OTTuningConfig:
    """One OT dev configuration: the OT fields of :class:`optical_viz.config.OTConfig` it sets,
    its loss (``ot``, or ``ot+mse`` with the sentence term), the term weights (``scale_probe``:
    by the scale probe of results/full/protocol.yaml) and its learning rate."""

    objective: Str
    plan: Str
    eps: Float
    eps_mode: Str
    eps_scaling: typing.Optional[Float]
    marginals: Str
    rho: typing.Optional[Float]
    layer: Int
    loss: choice(("ot", "ot+mse")) = "ot"
    weights: typing.Optional[choice(("scale_probe",))] = None
    lr: Float = OT_LR

    def ot(self) -> dict:
        """The loss.ot fields of a run's DistillConfig."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("loss", "weights", "lr")}


@dataclass(config=STRICT)
class MethodTuning:
    """A method's dev budget: ``configs`` named settings (OT) or a ``grid`` (contrastive, MSE)."""

    budget: Int
    grid: typing.Optional[typing.Dict[str, typing.List[Float]]] = None
    configs: typing.Optional[typing.Dict[str, typing.Dict[str, typing.Any]]] = None

    @property
    def size(self) -> int:
        if self.configs is not None:
            return len(self.configs)
        return math.prod(len(v) for v in (self.grid or {}).values())

    def ot_configs(self) -> dict[str, OTTuningConfig]:
        """The named OT configurations, typed, in the file's order."""
        out = {}
        for name, cfg in (self.configs or {}).items():
            try:
                out[name] = parse(OTTuningConfig, cfg, what=f"configs.{name}")
            except ValueError as exc:
                raise ValueError(f"configs.{name}.{exc}") from None
        return out

    def axis(self, key: str) -> list[float]:
        """The values of one axis of the ``grid`` (e.g. ``lr``); ValueError naming it when absent."""
        if not self.grid or key not in self.grid:
            raise ValueError(f"grid.{key}: not an axis of this method's grid ({sorted(self.grid or {})})")
        return [float(v) for v in self.grid[key]]


@dataclass(config=STRICT)
class Tuning:
    seed: Int
    languages: Str
    select: Str
    methods: typing.Dict[str, MethodTuning]

    @model_validator(mode="after")
    def _check(self):
        for name, m in self.methods.items():
            _fail(name in ARM_METHODS, f"methods.{name}: unknown method; known: {', '.join(ARM_METHODS)}")
            _fail(m.size == m.budget, f"methods.{name}.budget: {m.budget} but {m.size} configurations are listed")
        ot = self.methods.get("ot")
        _fail(ot is not None and ot.configs is not None, "methods.ot: the OT configurations must be listed (configs)")
        _fail(ot.budget >= 6, f"methods.ot.budget: at least 6 configurations, got {ot.budget}")
        c = self.methods.get("contrastive")
        _fail(c is not None and c.budget >= 6, "methods.contrastive.budget: at least 6 configurations")
        for name, cfg in ot.configs.items():
            fields = {k: v for k, v in cfg.items() if k not in ("loss", "weights", "lr")}
            try:
                parse(OTConfig, fields, what=f"methods.ot.configs.{name}")
            except ValueError as exc:
                raise ValueError(f"methods.ot.configs.{name}.{exc}") from None
        try:
            ot.ot_configs()
        except ValueError as exc:
            raise ValueError(f"methods.ot.{exc}") from None
        for name in ("contrastive", "mse"):
            _fail(name in self.methods and self.methods[name].grid and "lr" in self.methods[name].grid,
                  f"methods.{name}.grid.lr: the learning rates tried")
        _fail("temperature" in (c.grid or {}), "methods.contrastive.grid.temperature: the temperatures tried")
        return self


@dataclass(config=STRICT)
class Arm:
    method: choice(ARM_METHODS)
    setting: choice(("best", "none"))


@dataclass(config=STRICT)
class Test:
    seeds: typing.List[Int]
    arms: typing.Dict[str, Arm]
    sets: typing.List[Str]
    once: Bool
    refuse_unless_tuned: Bool

    @model_validator(mode="after")
    def _check(self):
        _fail(len(self.seeds) >= 3 and len(set(self.seeds)) == len(self.seeds),
              f"seeds: at least 3 distinct seeds, got {self.seeds}")
        _fail(self.once and self.refuse_unless_tuned, "once / refuse_unless_tuned: both must be true")
        return self


@dataclass(config=STRICT)
class Scaling:
    sizes: typing.Dict[int, Str]
    arms: typing.List[Str]
    seeds: typing.List[Int]
    groups: typing.List[Str]


@dataclass(config=STRICT)
class Statistics:
    primary: Str
    secondary: typing.List[Str]
    interval: Float
    bootstrap_levels: typing.List[Str]
    bootstrap_n: Int
    bootstrap_seed: Int
    pooled_over_sizes: Str
    correction: choice(("holm",))
    alpha: Float
    equivalence_margin: Float
    family: typing.List[typing.List[Str]]

    @model_validator(mode="after")
    def _check(self):
        _fail(self.bootstrap_levels == ["seed", "language", "query"],
              f"bootstrap_levels: seed, language, query; got {self.bootstrap_levels}")
        _fail(self.pooled_over_sizes == "language_clusters",
              f"pooled_over_sizes: a language recurring at several sizes is one unit (language_clusters), got {self.pooled_over_sizes!r}")
        _fail(all(len(c) == 2 for c in self.family), "family: every contrast is a pair of arms")
        return self


@dataclass(config=STRICT)
class Budget:
    """Compute, from step and evaluation times measured with the MiniLM teacher
    (``results/pilots/rq3/``); :func:`estimate` recomputes ``estimate_wall_s``."""

    processes: Int
    seconds_per_step: typing.Dict[str, Float]  # loss kind (light: ot, contrastive; heavy: any mse term) -> s/step
    overhead_per_run_s: Float  # loading both models, fitting the start's map, writing the student
    runs: typing.Dict[str, typing.Dict[str, Int]]  # stage (dev, test, scaling) -> loss kind -> runs of training.steps
    dev_checkpoint_evals: Int  # dev runs x checkpoints
    eval_s_per_checkpoint: Float
    test_models: Int
    eval_s_per_test_model: Float
    scaling_models: Int
    eval_s_per_scaling_model: Float
    estimate_wall_s: Float

    @model_validator(mode="after")
    def _check(self):
        for stage, kinds in self.runs.items():
            unknown = sorted(set(kinds) - set(self.seconds_per_step))
            _fail(not unknown, f"runs.{stage}: loss kinds {unknown} have no seconds_per_step")
        return self


@dataclass(config=STRICT)
class OpticalProtocol:
    version: Int
    issue: Int
    question: Str
    status: choice(("pre-registered",))
    deviations: typing.List[typing.Dict[str, Str]]
    models: Models
    start: Start
    data: Data
    training: Training
    tuning: Tuning
    test: Test
    scaling: Scaling
    statistics: Statistics
    budget: Budget

    @model_validator(mode="after")
    def _check(self):
        arms = self.test.arms
        for a, b in self.statistics.family:
            _fail(a in arms and b in arms, f"statistics.family: [{a}, {b}] names an arm not in test.arms")
        for name, arm in arms.items():
            trained = arm.method not in ("teacher_only", "zero-shot")
            _fail(not trained or arm.method in self.tuning.methods or arm.method == "ot+mse",
                  f"test.arms.{name}: method {arm.method!r} has no tuning budget")
        _fail(all(a in arms for a in self.scaling.arms), f"scaling.arms: {self.scaling.arms} must be test arms")
        est = estimate(self)
        _fail(abs(est - self.budget.estimate_wall_s) < 1.0,
              f"budget.estimate_wall_s: {self.budget.estimate_wall_s} but the budget's numbers give {est:.0f}")
        return self


def estimate(p: OpticalProtocol) -> float:
    """Wall seconds of the whole protocol at ``budget.processes`` parallel processes: every
    run's ``training.steps`` at its loss kind's s/step plus its overhead (models, the start's
    fit), the dev checkpoint evaluations, the test and scaling models' evaluations."""
    b, steps = p.budget, p.training.steps
    total = sum(n * (steps * b.seconds_per_step[kind] + b.overhead_per_run_s)
                for stage in b.runs.values() for kind, n in stage.items())
    total += b.dev_checkpoint_evals * b.eval_s_per_checkpoint
    total += b.test_models * b.eval_s_per_test_model + b.scaling_models * b.eval_s_per_scaling_model
    return total / b.processes


def load_optical_protocol(path: str | os.PathLike | None = None) -> OpticalProtocol:
    """Read and check ``results/optical/protocol.yaml`` (or ``path``).

    Raises:
        ValueError: one line naming the file and every key that is missing, mistyped or
            breaks a rule of the protocol (e.g. ``training.steps``).
    """
    path = Path(path) if path is not None else OPTICAL_PROTOCOL_PATH
    return validate_optical_protocol(load_yaml(path, "protocol"), where=path.name)


PLACEHOLDER = re.compile(r"^__[A-Z0-9_]+__$")  # a value of the draft still to be filled in


def placeholders(raw, prefix: str = "") -> dict[str, str]:
    """The dotted keys of ``raw`` whose value is still a draft placeholder (``__NAME__``) -> that value."""
    if isinstance(raw, dict):
        return {k: v for key, item in raw.items() for k, v in placeholders(item, f"{prefix}{key}.").items()}
    if isinstance(raw, list):
        return {k: v for i, item in enumerate(raw) for k, v in placeholders(item, f"{prefix[:-1]}[{i}].").items()}
    return {prefix[:-1]: raw} if isinstance(raw, str) and PLACEHOLDER.match(raw) else {}


def validate_optical_protocol(raw: dict, where: str = "protocol.yaml") -> OpticalProtocol:
    """``raw`` (the YAML's mapping) checked into an :class:`OpticalProtocol`.

    Raises:
        ValueError: ``"<where>: <key>: <problem>"`` for every key at fault; a value left as a
            placeholder (``__NAME__``) names its key first.
    """
    todo = placeholders(raw)
    if todo:
        raise ValueError(f"{where}: " + "; ".join(f"{k}: still the placeholder {v}" for k, v in todo.items())
                         + " (fill it in before the protocol is committed)")
    try:
        return parse(OpticalProtocol, raw, what=where)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def as_dict(p: OpticalProtocol) -> dict:
    """The protocol as plain data (to save next to a run's results)."""
    return dataclasses.asdict(p)
