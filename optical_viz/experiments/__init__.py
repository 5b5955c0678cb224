"""The experiment grid behind ``optical-viz reproduce`` (RQ1, RQ2, and any question a grid file adds).

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
    results/<scale>/<question>_paired_tests.csv  OT against contrastive, per language
    results/<scale>/<question>_table.md          headline metrics per method (rq1_table.md: the README's)
    results/<scale>/findings.md                  which method won where, in words
    results/<scale>/timings.json                 training and evaluation seconds per run
    figures/<scale>/<question>_{by_language,average}.{pdf,png}      one language set (RQ1)
    figures/<scale>/<question>_scaling_{seen,unseen}.{pdf,png}      several language sets (RQ2)

A run is trained once (``RUN/student`` exists: skipped; an interrupted run resumes from
its last checkpoint); an evaluation whose JSON exists is skipped. Summaries and figures
are rebuilt from the result files every time, so they always describe what is on disk.

One job per file:

    grid.py             the grid file (GridSpec, QuestionSpec, EvalSpec), its runs (build_grid), RunOptions
    evaluation.py       one model on one evaluation, through optical_viz.retrieval.evaluate
    run.py              provenance, what is left, the run loop with resume, reproduce()
    report.py           summary CSVs, seed aggregation, paired tests, markdown tables, findings
    figures.py          the figures of every question, drawn with optical_viz.plots

The pre-registered protocol (optical_viz.protocol, typed) runs through the same loop:

    settings.py         the configurations a protocol tries (Setting, dev_settings, combined_setting)
    stage_configs.py    the distill config of every protocol run (base_config, setting_config)
    scale_probe.py      the term weights of a combined loss (scale_probe_weights)
    protocol_evals.py   what protocol runs are scored on (dev checkpoints, test metrics)
    selection.py        tuning.csv from the dev results, and the winners read from it
    stages.py           the stage driver: the runs of each stage, shards, reproduce_protocol
    pruning.py          the weights no later stage reads (prune_after_stage)
    protocol_report.py  the test-stage statistics (summaries, Holm families, equivalence, interaction)
    protocol_tables.py  the README's tables of those reports
    statistics.py       hierarchical bootstrap, paired differences, Holm, TOST

Reporting iterates over the questions found in the results: a question added to the grid
file reaches the summaries, tables, findings and figures without code changes.
"""
from optical_viz.experiments.evaluation import Evaluation, eval_langs, evaluate_model
from optical_viz.experiments.figures import METHOD_COLORS, make_figures
from optical_viz.experiments.grid import (
    TRAINING_METHODS,
    ZERO_SHOT,
    EvalSpec,
    GridSpec,
    QuestionSpec,
    Run,
    RunOptions,
    build_grid,
)
from optical_viz.experiments.report import RETRIEVAL_METRICS, aggregate, collect, findings, paired_tests, question_table
from optical_viz.experiments.run import (
    GridStatus,
    ReproduceResult,
    code_version,
    estimate_seconds,
    format_plan,
    keep_training_log,
    reproduce,
    run_grid,
    status,
    training_log_path,
    write_timings,
)

__all__ = [
    "TRAINING_METHODS", "ZERO_SHOT", "RETRIEVAL_METRICS", "METHOD_COLORS",
    "EvalSpec", "QuestionSpec", "GridSpec", "Run", "RunOptions", "build_grid",
    "Evaluation", "evaluate_model", "eval_langs",
    "code_version", "GridStatus", "status", "estimate_seconds", "format_plan", "run_grid",
    "keep_training_log", "training_log_path", "write_timings",
    "collect", "aggregate", "paired_tests", "question_table", "findings", "make_figures",
    "reproduce", "ReproduceResult",
]
