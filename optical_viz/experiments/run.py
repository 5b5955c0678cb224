"""The run loop of the grid: provenance, what is left to do, training, evaluation, resume.

Each evaluation is written as ``<run-id>.<eval>.json`` (config, code version, machine,
scale, seed, timings, metrics with 95% CIs) and ``.npz`` (per-query values), atomically, as
soon as it is done; a run whose student exists is not trained again, an interrupted
training resumes from its last checkpoint, an evaluation whose JSON exists is skipped.
:func:`reproduce` runs what is missing, then rebuilds every summary, table and figure from
the result files (:mod:`.report`, :mod:`.figures`).
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optical_viz import paths
from optical_viz.experiments.evaluation import eval_langs, evaluate_alignment_model, evaluate_model
from optical_viz.experiments.figures import make_figures
from optical_viz.experiments.grid import ALIGNMENT, EvalSpec, GridSpec, Run, RunOptions, build_grid
from optical_viz.experiments.report import aggregate, collect, findings, paired_tests, question_table, result_files
from optical_viz.rundir import atomic_write


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


# queries per language of each evaluation task, for the printed estimate (FLORES: by split)
_QUERIES_PER_LANGUAGE = {"xquad-r": 1190, "xquad": 1190, "tatoeba": 1000, "alignment": 248}
_FLORES_SPLIT_SENTENCES = {"all": 1004, "train": 701, "dev": 99, "test": 204, "dev+test": 303}


def _queries(run: Run, ev: EvalSpec) -> int:
    """How many query sentences an evaluation encodes (per language, times languages)."""
    if ev.task == "flores":
        per_lang = _FLORES_SPLIT_SENTENCES[ev.split]
    else:
        per_lang = len(ev.query_ids) if ev.query_ids is not None else _QUERIES_PER_LANGUAGE.get(ev.task, 1000)
    if ev.max_queries is not None:
        per_lang = min(per_lang, ev.max_queries)
    n_langs = len(run.unseen if ev.langs == "unseen" else run.languages) + bool(ev.include_english)
    return n_langs * per_lang


def estimate_seconds(options: RunOptions, st: GridStatus, root=None) -> float:
    """A rough estimate of the remaining time from the grid's ``estimate`` costs.

    Keys of ``options.estimate``: ``seconds_per_step`` (``seconds_per_step_heavy`` for a loss
    with an mse term), ``seconds_per_model``, ``sentences_per_second`` (encoding;
    ``sentences_per_second_<task>`` for one task, e.g. ``sentences_per_second_flores``).
    """
    e = {"seconds_per_step": 1.0, "sentences_per_second": 50.0, "seconds_per_model": 10.0, **options.estimate}
    total = 0.0
    for r in st.to_train:
        heavy = "mse" in r.config.loss.name
        step = e.get("seconds_per_step_heavy", e["seconds_per_step"]) if heavy else e["seconds_per_step"]
        total += r.config.steps * step + e["seconds_per_model"]
    for run, ev in st.to_evaluate:
        rate = e.get(f"sentences_per_second_{ev.task}", e["sentences_per_second"])
        total += _queries(run, ev) / rate * (3 if ev.scoring == "maxsim" else 1)
    return total


def format_plan(options: RunOptions, runs: list[Run], st: GridStatus) -> str:
    """The plan printed before a grid starts (and by ``--dry-run``)."""
    lines = [f"optical-viz reproduce --scale {options.scale}: {len(runs)} runs "
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
                 f"({len(st.done)} evaluations already done); estimated {estimate_seconds(options, st) / 60:.1f} min "
                 f"({options.scale} scale)")
    return "\n".join(lines)


def run_grid(
    options: RunOptions,
    runs: list[Run],
    results_dir: str | os.PathLike,
    *,
    root=None,
    progress: bool = True,
    keep_going: bool = True,
    log=print,
) -> list[dict]:
    """Train and evaluate whatever is missing; returns one timing record per run touched.

    options: the grid's options (``scale``, ``n_bootstrap``, ``prune``, ``precision``): a
    grid file's :attr:`~optical_viz.experiments.grid.GridSpec.run_options` or a protocol's;
    the runs need not come from a grid file (the protocol stages build their own).

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
    default = load_encoder(precision=options.precision)
    teachers = {None: default}  # config.teacher -> Encoder: a student is scored against the teacher it learnt from
    teacher_cache = EmbeddingCache()  # on disk: the teachers' embeddings are shared by all runs (keyed by model)
    records = []
    bar = tqdm(todo, desc=f"reproduce {options.scale}", unit="run", disable=not progress, file=sys.stdout)
    for run in bar:
        bar.set_postfix_str(run.run_id)
        rec = {"run_id": run.run_id, "train_s": None, "eval_s": {}}
        try:
            if run.trained:
                run_dir = Path(run.config.output_dir)
                timing_file = run_dir / "grid_timing.json"
                if not (run_dir / "student" / "config.json").is_file():
                    resume = (run_dir / "config.yaml").is_file()
                    log(f"{'resuming' if resume else 'training'} {run.run_id} ({run.config.loss.name}, "
                        f"{len(run.languages)} languages, {run.config.steps} steps)")
                    t0 = time.perf_counter()
                    distill(run.config, resume=resume, root=root, progress=progress)
                    prior = json.loads(timing_file.read_text()).get("train_s", 0.0) if timing_file.is_file() else 0.0
                    atomic_write(timing_file, json.dumps({"train_s": prior + time.perf_counter() - t0}))
                rec["train_s"] = json.loads(timing_file.read_text())["train_s"] if timing_file.is_file() else None
            students = {}  # model directory -> (Encoder, its in-memory cache), loaded once per run
            teacher_name = run.config.teacher if run.trained else None
            if teacher_name not in teachers:
                teachers[teacher_name] = load_encoder(teacher_name, precision=options.precision)
            teacher = teachers[teacher_name]
            for ev in run.evaluations:
                out = run.result_path(results_dir, ev)
                if out.is_file():
                    continue
                if run.trained:
                    student_dir = _student_dir(run, ev)
                    if student_dir not in students:
                        students[student_dir] = (load_encoder(student_dir, precision=options.precision),
                                                 EmbeddingCache(":memory:"))
                    student, student_cache = students[student_dir]
                elif run.model is not None:  # a zero-shot run of another model (both sides)
                    if run.model not in teachers:
                        teachers[run.model] = load_encoder(run.model, precision=options.precision)
                    student, student_cache = teachers[run.model], teacher_cache
                    teacher = student
                else:
                    student, student_cache = default, teacher_cache
                t0 = time.perf_counter()
                if ev.task == ALIGNMENT:  # corpus-level AER, no per-query values
                    langs, measured, subsets, arrays = [ev.pair], evaluate_alignment_model(ev, student, root, teacher=teacher), {}, {}
                    headline = ", ".join(f"{r['method']} AER {r['aer']:.3f}" for r in measured["results"])
                else:
                    langs = eval_langs(run, ev, root)
                    result = evaluate_model(ev, student, teacher, langs, teacher_cache=teacher_cache,
                                            student_cache=student_cache, n_bootstrap=options.n_bootstrap, root=root)
                    measured = {k: v for k, v in result.report.to_json().items() if k in ("task", "scoring", "split", "results")}
                    subsets = result.subsets
                    arrays = {f"{l}|{d}|{m}": v.astype(np.float32)
                              for (l, d), qm in result.report.per_query.items() for m, v in qm.values.items()}
                    headline = _headline(result.report.frame)
                eval_s = time.perf_counter() - t0
                rec["eval_s"][ev.name] = eval_s
                doc = {
                    "scale": options.scale,
                    "question": run.question,
                    "run_id": run.run_id,
                    "method": run.method,
                    "variant": run.variant,
                    "langset": run.langset,
                    "n_languages": len(run.languages),
                    "seed": run.seed,
                    "languages": run.languages,
                    "evaluation": dataclasses.asdict(ev) | {"name": ev.name, "langs_evaluated": langs},
                    "subsets": {f"{l}|{d}": list(v) for (l, d), v in subsets.items()},
                    "config": run.config.to_dict() if run.config is not None else None,
                    "student": str(student_dir) if run.trained else (run.model or "default model (zero-shot)"),
                    "teacher": teacher_name if teacher_name is not None else (run.model or "default model"),
                    "precision": teacher.precision,  # as computed ("auto" resolved on this machine)
                    "code": code,
                    "machine": machine,
                    "timings": {"train_s": rec["train_s"], "eval_s": round(eval_s, 2)},
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    **measured,
                }
                atomic_write(out.with_suffix(".npz"), lambda f: np.savez_compressed(f, **arrays))
                atomic_write(out, json.dumps(doc, indent=1, default=_json_default) + "\n")
                log(f"  {run.run_id} {ev.name}: {headline} ({eval_s:.0f} s)")
            if run.trained:  # snapshots are only for this run's evaluations; prune drops the rest
                keep_training_log(run, results_dir)
                drop = [*Path(run.config.output_dir).glob("student-step-*")]
                drop += [Path(run.config.output_dir) / sub for sub in ("student", "checkpoints")] if options.prune else []
                for path in drop:
                    shutil.rmtree(path, ignore_errors=True)
        except Exception as exc:  # one broken run must not stop a grid of hours
            if not keep_going:
                raise
            rec["error"] = f"{type(exc).__name__}: {exc}"
            log(f"FAILED {run.run_id}: {rec['error']}")
        records.append(rec)
    bar.close()
    return records


def training_log_path(run: Run, results_dir: str | os.PathLike) -> Path:
    """Where a trained run's ``metrics.jsonl`` is kept with the results:
    ``<results>/<question>/training/<run directory name>.metrics.jsonl`` (runs that share a
    training directory share it)."""
    return Path(results_dir) / run.question / "training" / f"{Path(run.config.output_dir).name}.metrics.jsonl"


def keep_training_log(run: Run, results_dir: str | os.PathLike) -> Path | None:
    """Copy a finished run's training log (loss terms, held-out signal, OT convergence per
    step) next to its results, so that it outlives the run directory; None when there is
    no finished run to copy from."""
    src = Path(run.config.output_dir) / "metrics.jsonl"
    if not ((Path(run.config.output_dir) / "student" / "config.json").is_file() and src.is_file()):
        return None
    out = training_log_path(run, results_dir)
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, src.read_bytes())
    return out


def _student_dir(run: Run, ev: EvalSpec) -> Path:
    """The model directory ``ev`` scores: the final student, or its snapshot at ``ev.at_step``."""
    run_dir = Path(run.config.output_dir)
    if ev.at_step is None or ev.at_step == run.config.steps:
        return run_dir / "student"
    if ev.at_step not in run.config.snapshots:
        raise ValueError(f"{run.run_id}: evaluation {ev.name} scores step {ev.at_step}, which is not among the "
                         f"config's snapshots {run.config.snapshots}")
    path = run_dir / f"student-step-{ev.at_step}"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{run.run_id}: snapshot {path} is missing (pruned?); delete {run_dir / 'student'} "
                                "to train the run again")
    return path


def _headline(frame) -> str:
    """Recall@1 of the pooled (or only) row per direction, for the log."""
    parts = []
    for direction, d in frame.groupby("direction", sort=False):
        row = d[d["lang"] == "all"] if (d["lang"] == "all").any() else d
        parts.append(f"{direction} R@1 {100 * row['recall@1'].mean():.1f}")
    return ", ".join(parts)


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
    log(format_plan(spec.run_options, runs, st))
    if dry_run:
        return ReproduceResult(runs, 0, 0, len(st.done), [], [], None, [], time.perf_counter() - start)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*truncat", category=UserWarning)
        records = run_grid(spec.run_options, runs, results_dir, root=root, progress=progress, log=log)
    failed = [r["run_id"] for r in records if "error" in r]
    summary_csv, figures = write_reports(results_dir, figures_dir, spec.scale, n_bootstrap=spec.n_bootstrap,
                                         titles=spec.titles)
    seconds = time.perf_counter() - start
    log(f"{len(records)} runs touched ({len(st.to_train)} trained, {len(st.to_evaluate)} evaluations, "
        f"{len(st.done)} skipped) in {seconds / 60:.1f} min; results in {results_dir}, figures in {figures_dir}")
    for r in records:
        if "error" in r:
            log(f"FAILED {r['run_id']}: {r['error']}")
    return ReproduceResult(runs, len(st.to_train), len(st.to_evaluate), len(st.done), records, failed, summary_csv,
                           figures, seconds)


def write_reports(results_dir, figures_dir, scale: str, *, n_bootstrap: int = 1000,
                  titles: dict | None = None) -> tuple[Path, list[Path]]:
    """Summaries, paired tests, tables, findings, timings and figures, rebuilt from every
    result file under ``results_dir/<question>/`` -> (summary.csv, figure files)."""
    results_dir, figures_dir = Path(results_dir), Path(figures_dir)
    summary = collect(results_dir)
    if summary.empty:
        raise ValueError(f"no result files under {results_dir}")
    summary_csv = results_dir / "summary.csv"
    atomic_write(summary_csv, summary.to_csv(index=False, float_format="%.6g"))
    methods = aggregate(results_dir, n_bootstrap=n_bootstrap)
    atomic_write(results_dir / "summary_methods.csv", methods.to_csv(index=False, float_format="%.6g"))
    tests = {}
    for q in methods["question"].unique():  # every question that has results, whatever its name
        tests[q] = paired_tests(results_dir, question=q)
        if not tests[q].empty:
            atomic_write(results_dir / f"{q}_paired_tests.csv", tests[q].to_csv(index=False, float_format="%.6g"))
        table = question_table(methods, q, scale)
        if table:
            atomic_write(results_dir / f"{q}_table.md", table)
    atomic_write(results_dir / "findings.md", findings(methods, tests, scale))
    write_timings(results_dir)
    return summary_csv, make_figures(methods, figures_dir, scale, titles=titles or {})


def write_timings(results_dir) -> Path:
    """``<results>/timings.json``: per run, training seconds and evaluation seconds per evaluation."""
    return atomic_write(Path(results_dir) / "timings.json", json.dumps(_timings(Path(results_dir)), indent=1) + "\n")


def _timings(results_dir: Path) -> dict:
    """Per run: training seconds and evaluation seconds per evaluation, from the result files."""
    out: dict = {}
    for path in result_files(results_dir):
        doc = json.loads(path.read_text())
        r = out.setdefault(doc["run_id"], {"train_s": doc["timings"]["train_s"], "eval_s": {}})
        r["eval_s"][doc["evaluation"]["name"]] = doc["timings"]["eval_s"]
    return out

