"""RQ3, OPTICAL's own regime (``results/optical/protocol.yaml``), stage by stage: an English-only
teacher (all-MiniLM-L6-v2) teaches multilingual-e5-small across tokenizers.

    stage      runs                                                         scored on
    rq3-dev    every tuning configuration (OT 6, contrastive 6, MSE 2),     XQuAD-R dev questions and FLORES dev
               seed 0, student snapshots at every checkpoint                (low-resource), every checkpoint
    rq3-test   every arm x seed (refused until rq3-dev is finished)          every test set of ``test.sets``, once
    rq3-scale  sizes 5 and 50 x {mse, contrastive_best, ot_best} x seeds     FLORES test: trained and unseen
               (test and scaling runs train extend_to steps when the extension rule fired)

Every trained run: teacher all-MiniLM-L6-v2 (frozen), student e5-small with the protocol's
``start`` (linear map), fp32; the student encodes the non-English side, the teacher the English
side (retrieval.evaluate with the teacher of the run's config). Runs are the grid's
:class:`~optical_viz.experiments.grid.Run`, trained and scored by
:func:`~optical_viz.experiments.run.run_grid` (finished trainings and evaluations are skipped,
an interrupted training resumes); :func:`optical_viz.experiments.stages.shard_runs` splits a
stage between processes. After rq3-dev: ``tuning.csv`` (dev score at every checkpoint, the
learning curve), the winners by the protocol's rule, and ``extend.json``: the extension rule,
decided once and never recomputed.

A *scale* (:class:`OpticalScale`, ``configs/optical-quick.yaml``) shrinks the protocol for a
smoke test (languages, steps, seeds, query cuts, models) without touching the protocol.
"""
from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import os
import typing
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic.dataclasses import dataclass

from optical_viz import paths
from optical_viz.config import STRICT, DistillConfig, Float, Int, Str, deep_merge, load_yaml, parse
from optical_viz.experiments.grid import ZERO_SHOT, EvalSpec, Run, RunOptions
from optical_viz.experiments.protocol_evals import rq1_question_ids
from optical_viz.experiments.run import code_version
from optical_viz.experiments.scale_probe import scale_probe_weights
from optical_viz.experiments.settings import HYPERPARAMETERS, Setting
from optical_viz.experiments.stage_configs import setting_config
from optical_viz.experiments.stages import run_shard, shard_runs
from optical_viz.optical_protocol import TIE, OpticalProtocol, load_optical_protocol
from optical_viz.protocol import load_stage_protocol
from optical_viz.rundir import atomic_write

__all__ = ["STAGES", "QUESTION", "OpticalScale", "load_optical_scale", "dev_settings", "stage_runs",
           "tuning_table", "winners", "extend_decision", "reproduce_optical", "OpticalResult", "stage_counts"]

STAGES = ("rq3-dev", "rq3-test", "rq3-scale")
QUESTION = "rq3"
QUICK_SCALE_PATH = paths.REPO_ROOT / "configs" / "optical-quick.yaml"
BASE_CONFIG = "configs/rq1.yaml"  # the schedule fields every run shares (sampling, optimiser, loss defaults)
XQUAD_R_GROUP = 11  # train_languages: the first 11 (RQ1's) train on FLORES train; the rest on NLLB-Seed + MAFAND
PROBE = {"batches": 20, "reference": "mse"}  # results/full/protocol.yaml scale_probe (ot+mse: mse keeps weight 1)


@dataclass(config=STRICT)
class OpticalScale:
    """How much of the protocol runs. ``full``: everything as pre-registered (every field None);
    a quick scale cuts it down (``configs/optical-quick.yaml``). None keeps the protocol's value.

    languages: the training languages (a subset of ``data.train_languages``).
    steps, checkpoints, extend_to, batch_size, max_length, warmup_steps, start_pairs: the schedule.
    test_seeds, scaling_seeds: seeds of the test and scaling arms; scaling_languages: the first
    N languages of each size's config; max_unseen: the first N unseen languages.
    max_queries, max_candidates: per (language, direction) cuts of every retrieval evaluation
    (and max_queries gold pairs of AER). n_bootstrap: resamples of each interval.
    probe_batches: batches of the scale probe. teacher, student: model directories instead of
    all-MiniLM-L6-v2 and the default e5 (tests: tiny random twins).
    """

    scale: Str
    languages: typing.Optional[typing.List[Str]] = None
    steps: typing.Optional[Int] = None
    checkpoints: typing.Optional[typing.List[Int]] = None
    extend_to: typing.Optional[Int] = None
    batch_size: typing.Optional[Int] = None
    max_length: typing.Optional[Int] = None
    warmup_steps: typing.Optional[Int] = None
    start_pairs: typing.Optional[Int] = None
    test_seeds: typing.Optional[typing.List[Int]] = None
    scaling_seeds: typing.Optional[typing.List[Int]] = None
    scaling_languages: typing.Optional[Int] = None
    max_unseen: typing.Optional[Int] = None
    max_queries: typing.Optional[Int] = None
    max_candidates: typing.Optional[Int] = None
    n_bootstrap: typing.Optional[Int] = None
    probe_batches: typing.Optional[Int] = None
    teacher: typing.Optional[Str] = None
    student: typing.Optional[Str] = None


FULL = OpticalScale(scale="full")


def load_optical_scale(scale: str = "full", path: str | os.PathLike | None = None) -> OpticalScale:
    """``full`` (the protocol as registered) or ``quick`` (``configs/optical-quick.yaml``, or ``path``)."""
    if scale == "full" and path is None:
        return FULL
    path = Path(path) if path is not None else QUICK_SCALE_PATH
    return parse(OpticalScale, load_yaml(path, what="optical scale"), what=path.name)


@dataclasses.dataclass
class Plan:
    """The protocol at a scale: every value a stage needs, read once."""

    p: OpticalProtocol
    s: OpticalScale

    @property
    def steps(self) -> int:
        return self.s.steps or self.p.training.steps

    @property
    def checkpoints(self) -> list[int]:
        return list(self.s.checkpoints or self.p.training.checkpoints)

    @property
    def extend_to(self) -> int:
        return self.s.extend_to or self.p.training.extend_to

    @property
    def languages(self) -> list[str]:
        return list(self.s.languages or self.p.data.train_languages)

    @property
    def xquad_r_languages(self) -> list[str]:
        """The ten XQuAD-R languages (RQ1's group without ron_Latn, which is there for AER)."""
        return [x for x in self.p.data.train_languages[:XQUAD_R_GROUP] if x != "ron_Latn"]

    @property
    def low_resource(self) -> list[str]:
        """The trained languages of the NLLB-Seed / MAFAND group (FLORES dev/test primary P2)."""
        return [x for x in self.languages if x in self.p.data.train_languages[XQUAD_R_GROUP:]]

    def teacher(self) -> str:
        from optical_viz.encoder import minilm_model_dir

        return self.s.teacher or str(minilm_model_dir())

    def student(self) -> str:
        """The student's model directory, always named: a config's ``student: null`` means a
        copy of the teacher (self-distillation), not the default e5."""
        from optical_viz.convert import default_model_path

        return self.s.student or str(default_model_path())

    def cuts(self) -> dict:
        return {"max_queries": self.s.max_queries, "max_candidates": self.s.max_candidates}

    def options(self) -> RunOptions:
        """run_grid's options; the printed plan's estimate from the protocol's budget (pilot step times)."""
        b = self.p.budget
        estimate = {"seconds_per_step": b.seconds_per_step["light"], "seconds_per_step_heavy": b.seconds_per_step["heavy"],
                    "seconds_per_model": b.overhead_per_run_s}
        return RunOptions(scale=f"optical-{self.s.scale}", n_bootstrap=self.s.n_bootstrap or self.p.statistics.bootstrap_n,
                          prune=False, precision=self.p.training.precision, estimate=estimate)


# ----------------------------------------------------------------------------- configurations


def dev_settings(p: OpticalProtocol) -> list[Setting]:
    """The dev configurations, in the protocol's order (OT, contrastive temperature x lr, MSE lr)."""
    methods = p.tuning.methods
    out = [Setting.make("ot", name, loss=c.loss, lr=float(c.lr), weights=c.weights, **c.ot())
           for name, c in methods["ot"].ot_configs().items()]
    c = methods["contrastive"]
    out += [Setting.make("contrastive", f"t{t:g}", loss="contrastive", lr=lr, temperature=t)
            for t, lr in itertools.product(c.axis("temperature"), c.axis("lr"))]
    out += [Setting.make("mse", "", loss="mse", lr=lr) for lr in methods["mse"].axis("lr")]
    return out


def _bitext_files(plan: Plan, langs: list[str], out_dir: Path, root=None) -> list[dict]:
    """``bitext_sources`` entries of the main training set: one TSV per language, written once
    under ``out_dir`` (RQ1's languages: FLORES train; the low-resource ones: NLLB-Seed + MAFAND,
    all splits, no FLORES sentence: ``data.train_sources``)."""
    from optical_viz import data

    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for lang in langs:
        path = out_dir / f"{lang}.tsv"
        if not path.is_file():
            if lang in plan.p.data.train_languages[:XQUAD_R_GROUP]:
                parts = [("flores", "train")]
            else:
                parts = [("nllb_seed", "all"), ("mafand", "all")]
            rows = []
            for source, split in parts:
                try:
                    bt = data.load_bitext(lang, source=source, split=split, root=root)
                except ValueError:  # this source has no such language
                    continue
                rows += [f"{' '.join(a.split())}\t{' '.join(b.split())}" for a, b in zip(bt.src, bt.tgt)
                         if a.strip() and b.strip()]
            if not rows:
                raise ValueError(f"data.train_languages: no bitext of {lang} in {parts}")
            atomic_write(path, "\n".join(rows) + "\n")
        entries.append({"path": str(path), "lang": lang})
    return entries


def base_config(plan: Plan, langs: list[str], bitext: dict, output_dir: Path) -> DistillConfig:
    """A run config: ``configs/rq1.yaml``'s schedule with the protocol's models, start,
    training length, batch, precision and the dev checkpoints as snapshots."""
    base = DistillConfig.from_yaml(paths.REPO_ROOT / BASE_CONFIG)
    t = plan.p.training
    start = plan.p.start.config() | ({"pairs": plan.s.start_pairs} if plan.s.start_pairs else {})
    changes = {"languages": langs, **bitext, "teacher": plan.teacher(), "student": plan.student(),
               "steps": plan.steps, "warmup_steps": plan.s.warmup_steps or t.warmup_steps,
               "batch_size": plan.s.batch_size or t.batch_size, "max_length": plan.s.max_length or t.max_length,
               "snapshots": [c for c in plan.checkpoints if c < plan.steps], "start": start,
               "precision": t.precision, "num_threads": 1, "output_dir": str(output_dir)}
    return DistillConfig.from_dict(deep_merge(base.to_dict(), changes))


def _train_config(plan: Plan, base: DistillConfig, s: Setting, seed: int, output_dir: Path, results_dir: Path,
                  root=None, probe: bool = True) -> DistillConfig:
    weights = None
    if s.p.get("weights") == "scale_probe" and probe:
        cfg0 = setting_config(base, s, 0, output_dir, None)
        weights = scale_probe_weights(cfg0, PROBE["reference"], plan.s.probe_batches or PROBE["batches"], root=root,
                                      cache=results_dir / "scale_probe.json")
    return setting_config(base, s, seed, output_dir, weights)


def _run(plan: Plan, question: str, langset: str, base: DistillConfig, s: Setting, seed: int, evs, runs_dir: Path,
         results_dir: Path, *, arm: str | None = None, steps: int | None = None, unseen=(), root=None,
         probe: bool = True) -> Run:
    """A trained run; its directory is named by its configuration (so a test arm's seed-0 run
    reuses the dev run's student when the schedule is the same)."""
    suffix = f"-{steps}steps" if steps and steps != base.steps else ""
    train_dir = runs_dir / f"{QUESTION}-{langset}-{s.run_key}-s{seed}{suffix}"
    if suffix:
        base = DistillConfig.from_dict(deep_merge(base.to_dict(), {"steps": steps}))
    config = _train_config(plan, base, s, seed, train_dir, results_dir, root=root, probe=probe)
    method, variant = (arm, s.label) if arm else (s.method, s.label)
    return Run(question, langset, method, seed, list(config.languages), config, list(evs), list(unseen), variant=variant)


# ----------------------------------------------------------------------------- evaluations


def dev_evaluations(plan: Plan, root=None) -> list[EvalSpec]:
    """At every checkpoint: XQuAD-R xx->en on RQ1's dev questions, FLORES dev L->eng."""
    ids = rq1_question_ids(load_stage_protocol("full"), "dev", root=root)
    out = []
    for c in plan.checkpoints:
        at = None if c == plan.steps else c
        out.append(EvalSpec(task="xquad-r", directions=["xx->en"], query_ids=ids, at_step=at,
                            label=f"xquad-r.dev@{c}", **plan.cuts()))
        out.append(EvalSpec(task="flores", split="dev", directions=["xx->en"], at_step=at,
                            label=f"flores.dev@{c}", **plan.cuts()))
    return out


def test_evaluations(plan: Plan, root=None) -> list[EvalSpec]:
    """``test.sets``, each scored once (the report keeps each set's languages)."""
    full = load_stage_protocol("full")
    ids = rq1_question_ids(full, "test", root=root)
    cut = plan.cuts()
    by_set = {
        "xquad-r.test": EvalSpec(task="xquad-r", directions=["xx->en"], query_ids=ids, label="xquad-r.test", **cut),
        "flores.test.low_resource": EvalSpec(task="flores", split="test", directions=["xx->en"],
                                             label="flores.test.low_resource", **cut),
        "flores.test.unseen": EvalSpec(task="flores", split="test", langs="unseen", directions=["xx->en"],
                                       label="flores.test.unseen", **cut),
        "xquad.test": EvalSpec(task="xquad", directions=["xx->en"], query_ids=rq1_question_ids(full, "test", "xquad", root=root),
                               label="xquad.test", **cut),
        "xquad-r.test.english": EvalSpec(task="xquad-r", langs="english", directions=["xx->en"], query_ids=ids,
                                         english_by="student", label="xquad-r.test.english", **cut),
        "aer.roen": EvalSpec(task="alignment", pair="roen", layer=-1, english_by="teacher",
                             max_queries=plan.s.max_queries, label="aer.roen"),
    }
    unknown = [x for x in plan.p.test.sets if x not in by_set]
    if unknown:
        raise ValueError(f"test.sets: {unknown} have no evaluation; known: {', '.join(by_set)}")
    return [by_set[x] for x in plan.p.test.sets]


def scaling_evaluations(plan: Plan) -> list[EvalSpec]:
    cut = plan.cuts()
    return [EvalSpec(task="flores", split="test", directions=["xx->en"], label="flores.test", **cut),
            EvalSpec(task="flores", split="test", langs="unseen", directions=["xx->en"], label="flores.test.unseen", **cut)]


def unseen_languages(plan: Plan) -> list[str]:
    langs = load_yaml(paths.REPO_ROOT / plan.p.data.unseen_languages, what="language list")["unseen_languages"]
    return list(langs)[: plan.s.max_unseen]


# ----------------------------------------------------------------------------- selection


def _mean_r1(doc: dict, langs: list[str] | None = None) -> float | None:
    rows = [r for r in doc["results"] if r["lang"] != "all" and (langs is None or r["lang"] in langs)]
    return 100.0 * float(np.mean([r["recall@1"] for r in rows])) if rows else None


def tuning_table(plan: Plan, results_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per dev configuration (in the protocol's order): method, variant, every
    hyperparameter, ``dev_xquad_r@N``, ``dev_flores@N`` (low-resource languages) and ``dev@N``
    (their mean: the dev score) at every checkpoint, ``steps`` (the last checkpoint with
    both), run id, teacher, commit. Read from ``<results>/tuning/rq3/`` (dev files only)."""
    from optical_viz.data import resolve_language

    low = {resolve_language(x) for x in plan.low_resource} | set(plan.low_resource)
    rows = []
    for s in dev_settings(plan.p):
        run_id = f"{QUESTION}-all-{s.run_key}-s{plan.p.tuning.seed}"
        row = {"question": QUESTION, "method": s.method, "variant": s.run_key, "seed": plan.p.tuning.seed,
               **{k: s.p.get(k) for k in HYPERPARAMETERS}, "steps": 0, "run_id": run_id}
        for c in plan.checkpoints:
            scores = []
            for name, col, langs in (("xquad-r", "dev_xquad_r", None), ("flores", "dev_flores", low)):
                path = Path(results_dir) / "tuning" / QUESTION / f"{run_id}.{name}.dev@{c}.json"
                if not path.is_file():
                    continue
                doc = json.loads(path.read_text())
                row |= {"teacher": doc["teacher"], "commit": doc["code"]["commit"],
                        "term_weights": json.dumps(doc["config"]["loss"]["weights"], sort_keys=True)}
                v = _mean_r1(doc, langs)
                if v is not None:
                    row[f"{col}@{c}"] = round(v, 4)
                    scores.append(v)
            if len(scores) and all((Path(results_dir) / "tuning" / QUESTION / f"{run_id}.{n}.dev@{c}.json").is_file()
                                   for n in ("xquad-r", "flores")):
                row[f"dev@{c}"] = round(float(np.mean(scores)), 4)
                row["steps"] = c
        rows.append(row)
    return pd.DataFrame(rows)


def write_tuning_csv(plan: Plan, results_dir) -> Path:
    return atomic_write(Path(results_dir) / "tuning.csv",
                        tuning_table(plan, results_dir).to_csv(index=False, float_format="%.4f"))


def winners(plan: Plan, table: pd.DataFrame) -> dict[str, Setting]:
    """method -> its dev winner (highest ``dev@<steps>``; within :data:`TIE`, the first listed);
    only methods whose every configuration is scored at the last step."""
    final = f"dev@{plan.steps}"
    settings = {s.run_key: s for s in dev_settings(plan.p)}
    out = {}
    for method, rows in table.groupby("method", sort=False):
        if final not in rows or rows[final].isna().any():
            continue
        best = rows[final].max()
        first = rows[rows[final] >= best - TIE].iloc[0]
        out[method] = settings[first["variant"]]
    return out


def require_tuned(plan: Plan, table: pd.DataFrame, stage: str) -> dict[str, Setting]:
    """The winners; ValueError (``refused``) unless every method's tuning is finished."""
    won = winners(plan, table)
    missing = [m for m in plan.p.tuning.methods if m not in won]
    if missing:
        raise ValueError(f"stage {stage} refused: the tuning of {', '.join(missing)} is not finished "
                         "(test.refuse_unless_tuned): run stage rq3-dev first")
    return won


def extend_decision(plan: Plan, results_dir, table: pd.DataFrame | None = None) -> dict:
    """``training.extend_rule``, decided once after tuning (``<results>/extend.json``, never
    recomputed): every method winner's dev gain from the checkpoint before the last
    (500) to the last (1000); any gain >= 1.0 point -> every test run trains ``extend_to`` steps."""
    path = Path(results_dir) / "extend.json"
    if path.is_file():
        return json.loads(path.read_text())
    table = tuning_table(plan, results_dir) if table is None else table
    won = require_tuned(plan, table, "rq3-test")
    before, last = plan.checkpoints[-2], plan.checkpoints[-1]
    gains = {}
    for method, s in won.items():
        row = table[table["variant"] == s.run_key].iloc[0]
        gains[method] = {"winner": s.run_key, f"dev@{before}": row[f"dev@{before}"], f"dev@{last}": row[f"dev@{last}"],
                         "gain": round(float(row[f"dev@{last}"] - row[f"dev@{before}"]), 4)}
    extend = any(g["gain"] >= 1.0 for g in gains.values())
    doc = {"rule": plan.p.training.extend_rule, "from_step": before, "to_step": last, "gains": gains,
           "extend": extend, "test_steps": plan.extend_to if extend else plan.steps,
           "decided": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "code": code_version()}
    atomic_write(path, json.dumps(doc, indent=1) + "\n")
    return doc


def _ot_plus_mse(ot: Setting) -> Setting:
    """ot_best + the MSE sentence term, scale-probed (ot_best itself when it has the term)."""
    if ot.p["loss"] == "ot+mse":
        return ot
    return Setting.make("ot", f"{ot.variant}+mse", **(ot.p | {"loss": "ot+mse", "weights": "scale_probe"}))


# ----------------------------------------------------------------------------- runs


def stage_runs(plan: Plan, stage: str, runs_dir, results_dir, root=None, probe: bool = True) -> list[Run]:
    """The runs of ``stage``; ValueError when it needs an unfinished earlier stage."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    runs_dir, results_dir = Path(runs_dir), Path(results_dir)
    kw = dict(root=root, probe=probe)
    if stage == "rq3-dev":
        base = base_config(plan, plan.languages, {"bitext_sources": _bitext_files(plan, plan.languages, runs_dir / "bitext", root),
                                                  "bitext_split": "train"}, runs_dir)
        evs = dev_evaluations(plan, root=root)
        return [_run(plan, QUESTION, "all", base, s, plan.p.tuning.seed, evs, runs_dir, results_dir, **kw)
                for s in dev_settings(plan.p)]
    table = tuning_table(plan, results_dir)
    won = require_tuned(plan, table, stage)
    arms = {"mse": won["mse"], "contrastive_best": won["contrastive"], "ot_best": won["ot"],
            "ot_best+mse": _ot_plus_mse(won["ot"])}
    if stage == "rq3-test":
        steps = extend_decision(plan, results_dir, table)["test_steps"]
        base = base_config(plan, plan.languages, {"bitext_sources": _bitext_files(plan, plan.languages, runs_dir / "bitext", root),
                                                  "bitext_split": "train"}, runs_dir)
        evs, unseen = test_evaluations(plan, root=root), unseen_languages(plan)
        runs = []
        seeds = plan.s.test_seeds or plan.p.test.seeds
        for name, arm in plan.p.test.arms.items():
            if arm.method == "teacher_only":
                runs.append(Run(QUESTION, "all", ZERO_SHOT, 0, plan.languages, None, evs, unseen,
                                variant="teacher_only", model=plan.teacher()))
            elif arm.method == "zero-shot":
                runs.append(Run(QUESTION, "all", ZERO_SHOT, 0, plan.languages, None, evs, unseen,
                                variant="e5_untrained", model=plan.student()))
            else:
                runs += [_run(plan, QUESTION, "all", base, arms[name], seed, evs, runs_dir, results_dir, arm=name,
                              steps=steps, unseen=unseen, **kw) for seed in seeds]
        return runs
    # the extension rule covers the scaling runs too (budget: "test and scaling runs to 2000 steps")
    steps = extend_decision(plan, results_dir, table)["test_steps"]
    runs = []
    evs, unseen = scaling_evaluations(plan), unseen_languages(plan)
    for size, config in plan.p.scaling.sizes.items():
        cfg = DistillConfig.from_yaml(paths.REPO_ROOT / config)
        langs = list(cfg.languages)[: plan.s.scaling_languages]
        base = base_config(plan, langs, {"bitext_sources": list(cfg.bitext_sources), "bitext_split": cfg.bitext_split},
                           runs_dir)
        for seed in plan.s.scaling_seeds or plan.p.scaling.seeds:
            runs += [_run(plan, "rq3-scale", f"n{size}", base, arms[name], seed, evs, runs_dir, results_dir, arm=name,
                          steps=steps, unseen=unseen, **kw) for name in plan.p.scaling.arms]
    return runs


def stage_counts(plan: Plan, runs_dir, results_dir, root=None) -> dict:
    """Trainings (distinct run directories) and evaluations of each stage, without running it
    (a test or scaling stage before tuning: counted from the protocol, winners unknown)."""
    out = {}
    for stage in STAGES:
        try:
            runs = stage_runs(plan, stage, runs_dir, results_dir, root=root, probe=False)
        except ValueError:
            runs = None
        if runs is not None:
            dirs = {r.config.output_dir for r in runs if r.trained}
            out[stage] = {"trainings": len(dirs), "models": len(runs),
                          "evaluations": sum(len(r.evaluations) for r in runs)}
    return out


# ----------------------------------------------------------------------------- driver


@dataclasses.dataclass
class OpticalResult:
    """What :func:`reproduce_optical` did: stages run, timing records, failed runs, the stage
    it stopped before (None: every stage asked for ran) and the report files rebuilt."""

    stages: list[str]
    records: list[dict]
    failed: list[str]
    stopped_before: str | None
    reports: list[Path] = dataclasses.field(default_factory=list)


def run_stage(plan: Plan, stage: str, *, runs_dir, results_dir, shard=(0, 1), root=None, dry_run=False,
              progress=True, log=print) -> list[dict]:
    """Train and score what is missing of one stage (this shard's part); rq3-dev then rewrites
    ``tuning.csv`` and, once every configuration is scored, decides the extension rule."""
    runs = shard_runs(stage_runs(plan, stage, runs_dir, results_dir, root=root, probe=not dry_run), shard)
    where = Path(results_dir) / ("tuning" if stage == "rq3-dev" else "")
    records = run_shard(stage, shard, plan.options(), runs, where, dry_run=dry_run, root=root, progress=progress,
                        log=log)
    if dry_run:
        return []
    if stage == "rq3-dev":
        table = tuning_table(plan, results_dir)
        atomic_write(Path(results_dir) / "tuning.csv", table.to_csv(index=False, float_format="%.4f"))
        if len(winners(plan, table)) == len(plan.p.tuning.methods):
            log(f"extension rule: {json.dumps(extend_decision(plan, results_dir, table)['extend'])}")
    return records


def reproduce_optical(plan: Plan, *, runs_dir, results_dir, figures_dir=None, stages=None, shard=(0, 1), root=None,
                      dry_run=False, progress=True, log=print) -> OpticalResult:
    """Run ``stages`` (default: all, in order); a stage whose prerequisites are not finished
    stops the sequence with a message (run it again later: what exists is skipped). Then the
    ``0/N`` shard rebuilds the report (:mod:`.optical_report`) from the test result files, when
    some exist (figures under ``figures_dir``, default ``<results>/figures``)."""
    done, records, stopped = [], [], None
    for stage in [s for s in STAGES if s in (stages or STAGES)]:
        try:
            recs = run_stage(plan, stage, runs_dir=runs_dir, results_dir=results_dir, shard=shard, root=root,
                             dry_run=dry_run, progress=progress, log=log)
        except ValueError as exc:
            if "refused" not in str(exc):
                raise
            log(f"stage {stage} cannot start yet: {exc}")
            stopped = stage
            break
        records += recs
        done.append(stage)
    failed = [r["run_id"] for r in records if "error" in r]
    for r in records:
        if "error" in r:
            log(f"FAILED {r['run_id']}: {r['error']}")
    reports: list[Path] = []
    if not dry_run and shard[0] == 0 and any(Path(results_dir).glob(f"{QUESTION}*/*.json")):
        from optical_viz.experiments.optical_report import write_optical_reports

        reports = write_optical_reports(plan, results_dir, figures_dir or Path(results_dir) / "figures")
    return OpticalResult(done, records, failed, stopped, reports)


def load_plan(scale: str = "full", protocol_path=None, scale_path=None) -> Plan:
    return Plan(load_optical_protocol(protocol_path), load_optical_scale(scale, scale_path))
