"""The pre-registered protocol, stage by stage: tuning on dev, then the test set, once.

``results/full/protocol.yaml`` (``configs/protocol-quick.yaml`` at the quick scale) fixes what
runs. This module turns it into runs of the grid (:class:`~optical_viz.experiments.grid.Run`,
trained and scored by :func:`~optical_viz.experiments.run.run_grid` like any grid) and drives
the stages::

    stage      runs                                                        scored on
    rq1-dev    OT variants, contrastive temperature x lr, MSE lr (seed 0)  XQuAD-R dev questions, every checkpoint
    rq1-dev2   the OT stage-1 winner at the stage-2 learning rates         idem
    rq2-dev    the best RQ1 configurations of OT and contrastive, size 20  FLORES dev, both directions
    rq1-test   every arm x seed (refused until its tuning is finished)     XQuAD-R / XQuAD test questions, MaxSim subset
    rq2-test   every arm x size x seed                                     FLORES test: trained and unseen languages

After each dev stage ``tuning.csv`` is rebuilt from the dev result files (one row per
configuration, dev score at every checkpoint); the winners are read from it, never from a
test number (:mod:`.selection`). Dev results live under ``<results>/tuning/<question>/``,
test results under ``<results>/<question>/`` (what :mod:`.protocol_report` reads).

The other jobs live next door: the typed protocol in :mod:`optical_viz.protocol`, the
configurations tried in :mod:`.settings`, their distill configs in :mod:`.stage_configs`, the
scale probe in :mod:`.scale_probe`, what runs are scored on in :mod:`.protocol_evals`,
disk pruning in :mod:`.pruning`.

>>> p = load_stage_protocol("quick")
>>> [r.run_id for r in stage_runs(p, "rq1-dev", "runs", "results", probe=False)][:1]   # doctest: +SKIP
['rq1-xquad-ot-published-lr0.0001-s0']
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

from optical_viz.config import DistillConfig
from optical_viz.experiments.grid import EvalSpec, Run, RunOptions
from optical_viz.experiments.protocol_evals import dev_evaluations, test_evaluations
from optical_viz.experiments.protocol_report import write_protocol_reports
from optical_viz.experiments.pruning import prune_after_stage
from optical_viz.experiments.run import format_plan, run_grid, status, write_timings
from optical_viz.experiments.scale_probe import probe_reference, scale_probe_weights
from optical_viz.experiments.selection import (
    arm_setting,
    rq2_candidates,
    tuning_rows,
    tuning_table,
    winners,
    write_tuning_csv,
)
from optical_viz.experiments.settings import Setting, dev_settings
from optical_viz.experiments.stage_configs import RQ1_CONFIG, base_config, rq2_base_config, setting_config, unseen_languages
from optical_viz.protocol import Protocol, load_stage_protocol, require_tuned

__all__ = ["STAGES", "RQ1_LANGSET", "load_stage_protocol", "make_run", "stage_runs", "shard_runs", "run_options",
           "run_stage", "reproduce_protocol", "ProtocolResult"]

STAGES = ("rq1-dev", "rq1-dev2", "rq2-dev", "rq1-test", "rq2-test")
RQ1_LANGSET = "xquad"  # the language set of configs/rq1.yaml in run ids


# ----------------------------------------------------------------------------- runs


def make_run(p: Protocol, question: str, langset: str, base: DistillConfig, s: Setting | None, seed: int,
             evaluations: list[EvalSpec], runs_dir: Path, *, arm: str | None = None, unseen=(), root=None,
             results_dir: Path | None = None, probe: bool = True) -> Run:
    """One run. Its directory is named by the configuration (question, language set, setting,
    seed), not by the arm, so a test arm whose seed-0 run equals a dev run reuses its student.
    probe: compute the scale-probe weights of a combined loss (False: a plan only, weights 1)."""
    if s is None:
        return Run(question, langset, arm or "zero-shot", 0, list(base.languages), None, evaluations, list(unseen))
    train_id = f"{question}-{langset}-{s.run_key}-s{seed}"
    weights = None
    if s.p.get("weights") == "scale_probe" and probe:
        cfg0 = setting_config(base, s, 0, runs_dir / train_id, None)
        cache = (results_dir or runs_dir) / "scale_probe.json"
        weights = scale_probe_weights(cfg0, probe_reference(p, s.p["loss"]), int(p.scale_probe.batches),
                                      root=root, cache=cache)
    config = setting_config(base, s, seed, runs_dir / train_id, weights)
    method, variant = (arm, "") if arm else (s.method, s.label)
    return Run(question, langset, method, seed, list(config.languages), config, evaluations, list(unseen), variant=variant)


def stage_runs(p: Protocol, stage: str, runs_dir: str | os.PathLike, results_dir: str | os.PathLike,
               root=None, probe: bool = True) -> list[Run]:
    """The runs of ``stage`` (one of :data:`STAGES`). ValueError when an earlier stage it
    depends on is not finished (a test stage: :func:`optical_viz.protocol.require_tuned`).
    probe: False for a plan only (no scale probe: combined losses show weights 1)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    runs_dir, results_dir = Path(runs_dir), Path(results_dir)
    table = tuning_table(results_dir)
    won = winners(p, table)
    seed0 = int(p.tuning.seed)
    rq1_base = base_config(p, RQ1_CONFIG, None)
    kw = dict(root=root, results_dir=results_dir, probe=probe)
    if stage in ("rq1-dev", "rq1-dev2"):
        if stage == "rq1-dev2" and "ot-stage1" not in won:
            raise ValueError("stage rq1-dev2 needs the OT stage-1 winner: finish stage rq1-dev first")
        settings = dev_settings(p, "rq1" if stage == "rq1-dev" else "rq1-dev2", won)
        evs = dev_evaluations(p, "rq1", root=root)
        return [make_run(p, "rq1", RQ1_LANGSET, rq1_base, s, seed0, evs, runs_dir, **kw) for s in settings]
    if stage == "rq2-dev":
        size = int(p.tuning.rq2.size)
        base = rq2_base_config(p, size)
        settings = [s for m in p.tuning.rq2.methods for s in rq2_candidates(p, table, m)]
        if len(settings) < sum(p.tuning.rq2.budget.values()):
            raise ValueError("stage rq2-dev needs the RQ1 tuning of OT and contrastive: finish rq1-dev and rq1-dev2 first")
        evs = dev_evaluations(p, "rq2", root=root)
        return [make_run(p, "rq2", f"n{size}", base, s, seed0, evs, runs_dir, **kw) for s in settings]

    question = stage.split("-")[0]
    spec = p.test.question(question)
    rows = tuning_rows(table)
    for arm in spec.arms.values():
        require_tuned(p, question, arm.method, rows)

    def setting(name: str) -> Setting | None:
        arm = spec.arms[name]
        s = arm_setting(arm, won, question)
        if s is None and arm.method != "zero-shot":
            raise ValueError(f"stage {stage} needs the winner of {arm.method!r}: finish its dev stages first")
        return s

    evs = test_evaluations(p, question, root=root)
    runs = []
    if question == "rq1":
        for seed in spec.seeds:
            for name in spec.arms:
                s = setting(name)
                if s is None and seed != spec.seeds[0]:
                    continue
                runs.append(make_run(p, "rq1", RQ1_LANGSET, rq1_base, s, seed, evs, runs_dir, arm=name, **kw))
        return runs
    unseen = unseen_languages(p)
    sizes = [int(x) for x in spec.sizes]
    for seed in spec.seeds:
        for size in sizes:
            base = rq2_base_config(p, size)
            for name in spec.arms:
                s = setting(name)
                if s is None and (seed != spec.seeds[0] or size != max(sizes)):
                    continue  # zero-shot: one model, scored on the largest set's languages and the unseen
                langset = "all" if s is None else f"n{size}"
                runs.append(make_run(p, "rq2", langset, base, s, seed, evs, runs_dir, arm=name, unseen=unseen, **kw))
    return runs


def shard_runs(runs: list[Run], shard: tuple[int, int]) -> list[Run]:
    """Runs ``i, i + n, ...`` of ``shard = (i, n)``, counting runs that share a training
    directory as one (so two processes never train the same run)."""
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {i}/{n}")
    keys = list(dict.fromkeys(r.config.output_dir if r.trained else r.run_id for r in runs))
    mine = set(keys[i::n])
    return [r for r in runs if (r.config.output_dir if r.trained else r.run_id) in mine]


# ----------------------------------------------------------------------------- running


def run_options(p: Protocol) -> RunOptions:
    """What :func:`~optical_viz.experiments.run.run_grid` needs of the protocol besides its runs.
    Students are pruned after a stage (:func:`reproduce_protocol`), never per run: a test arm's
    seed-0 run is a dev run's student."""
    return RunOptions(scale=p.scale, n_bootstrap=int(p.statistics.bootstrap.n), prune=False,
                      precision=p.metrics.precision, estimate=_estimate_costs(p))


def _estimate_costs(p: Protocol) -> dict[str, float]:
    """The protocol's budget numbers as the printed plan's ``estimate`` costs (per process)."""
    if p.budget is None:
        return {}
    b = p.budget
    steps, rates = b.seconds_per_step, b.rates_per_s
    costs = {"seconds_per_step": steps.get("light"), "seconds_per_step_heavy": steps.get("heavy"),
             "seconds_per_model": b.overhead_per_run_s,
             "sentences_per_second_xquad-r": rates.get("xquad_r_dense"),
             "sentences_per_second_xquad": rates.get("xquad_r_dense"),
             "sentences_per_second_flores": rates.get("flores")}
    return {k: float(v) for k, v in costs.items() if v is not None}


def run_shard(stage: str, shard, opts: RunOptions, runs: list[Run], where, *, dry_run=False, root=None,
              progress=True, log=print) -> list[dict]:
    """Print the plan of a stage's ``runs`` (this ``shard``'s part) and train and score what is
    missing of them through :func:`run_grid` (nothing when ``dry_run``), results under
    ``where``; the warnings of texts cut at max_length are silenced (the data layer reports
    them). The one path of both protocols' drivers (RQ1/RQ2 here, RQ3 in optical_stages)."""
    log(f"stage {stage} (shard {shard[0]}/{shard[1]}): " + format_plan(opts, runs, status(runs, where)))
    if dry_run:
        return []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*truncat", category=UserWarning)
        return run_grid(opts, runs, where, root=root, progress=progress, log=log)


def run_stage(p: Protocol, stage: str, *, runs_dir, results_dir, shard=(0, 1), root=None, dry_run=False,
              progress=True, log=print) -> list[dict]:
    """Train and score what is missing of one stage (``shard``: this process's part); a dev
    stage then rewrites ``tuning.csv``. Returns run_grid's timing records."""
    runs = shard_runs(stage_runs(p, stage, runs_dir, results_dir, root=root, probe=not dry_run), shard)
    where = Path(results_dir) / ("tuning" if stage.endswith(("-dev", "-dev2")) else "")
    records = run_shard(stage, shard, run_options(p), runs, where, dry_run=dry_run, root=root, progress=progress,
                        log=log)
    if dry_run:
        return []
    if where != Path(results_dir):
        write_tuning_csv(results_dir)
    return records


@dataclasses.dataclass
class ProtocolResult:
    """What :func:`reproduce_protocol` did: the stages run, the timing records, failed runs,
    and the stage it stopped before (None: every stage asked for ran)."""

    stages: list[str]
    records: list[dict]
    failed: list[str]
    stopped_before: str | None
    reports: list[Path]


def reproduce_protocol(p: Protocol, *, runs_dir, results_dir, figures_dir, stages=None, shard=(0, 1),
                       root=None, dry_run=False, progress=True, log=print) -> ProtocolResult:
    """Run ``stages`` (default: all, in order) of the protocol, then rebuild the reports.

    A stage whose prerequisites are not finished (e.g. the test stage before tuning, or the
    other shard still training) stops the sequence with a message; run it again later: what
    exists is skipped. Reports (summaries, tables, figures, the protocol's statistics) are
    rebuilt from the test result files whenever some exist, by the ``0/N`` shard only.
    """
    stages = list(stages or STAGES)
    done, records, stopped = [], [], None
    for stage in [s for s in STAGES if s in stages]:
        try:
            stage_records = run_stage(p, stage, runs_dir=runs_dir, results_dir=results_dir, shard=shard, root=root,
                                      dry_run=dry_run, progress=progress, log=log)
        except ValueError as exc:
            if "needs" not in str(exc) and "refused" not in str(exc):
                raise
            log(f"stage {stage} cannot start yet: {exc}")
            stopped = stage
            break
        records += stage_records
        done.append(stage)
        # limits.prune (quick): one process only (another shard may still read a student)
        if not dry_run and p.limits.prune and shard[1] == 1 and not any("error" in r for r in stage_records):
            prune_after_stage(stage, runs_dir)
    failed = [r["run_id"] for r in records if "error" in r]
    for r in records:
        if "error" in r:
            log(f"FAILED {r['run_id']}: {r['error']}")
    reports: list[Path] = []
    if not dry_run and shard[0] == 0 and any(Path(results_dir).glob("rq*/*.json")):
        # the protocol's own reports only (the grid file's summaries, "tied when intervals
        # overlap" findings and figures answer another design: reproduce --grid writes those)
        reports = [write_timings(results_dir), *write_protocol_reports(p, results_dir, figures_dir)]
    return ProtocolResult(done, records, failed, stopped, reports)
