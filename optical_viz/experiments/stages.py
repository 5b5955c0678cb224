"""The pre-registered protocol, stage by stage: tuning on dev, then the test set, once.

``results/full/protocol.yaml`` (``configs/protocol-quick.yaml`` at the quick scale) fixes what
runs. This module turns it into runs of the grid (:class:`~optical_viz.experiments.grid.Run`,
trained and scored by :func:`~optical_viz.experiments.run.run_grid` like any grid)::

    stage      runs                                                        scored on
    rq1-dev    OT variants, contrastive temperature x lr, MSE lr (seed 0)  XQuAD-R dev questions, every checkpoint
    rq1-dev2   the OT stage-1 winner at the stage-2 learning rates         idem
    rq2-dev    the best RQ1 configurations of OT and contrastive, size 20  FLORES dev, both directions
    rq1-test   every arm x seed (refused until its tuning is finished)     XQuAD-R / XQuAD test questions, MaxSim subset
    rq2-test   every arm x size x seed                                     FLORES test: trained and unseen languages

After each dev stage ``tuning.csv`` is rebuilt from the dev result files (one row per
configuration, dev score at every checkpoint); the winners are read from it, never from a
test number. Dev results live under ``<results>/tuning/<question>/``, test results under
``<results>/<question>/`` (what the summaries and figures read).

>>> p = load_stage_protocol("quick")
>>> [s.run_key for s in dev_settings(p, "rq1")][:2]      # doctest: +SKIP
['ot-published-lr0.0001', 'ot-middle_layer_sentence-lr0.0001']
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from optical_viz import paths
from optical_viz import protocol as protocol_mod
from optical_viz.config import DistillConfig, deep_merge, load_yaml
from optical_viz.experiments.grid import EvalSpec, Run
from optical_viz.rundir import atomic_write

STAGES = ("rq1-dev", "rq1-dev2", "rq2-dev", "rq1-test", "rq2-test")
PROTOCOLS = {
    "full": protocol_mod.PROTOCOL_PATH,  # the pre-registered one (CPU scale)
    "quick": paths.REPO_ROOT / "configs" / "protocol-quick.yaml",  # CI size
    "gpu": paths.REPO_ROOT / "configs" / "gpu" / "protocol.yaml",  # one GPU: 3000 steps, batch 128, 5 seeds
}
RQ1_LANGSET = "xquad"
MAXSIM_SEED = 2026  # budget.cuts: the fixed MaxSim subset of the test questions  # the language set of configs/rq1.yaml in run ids
# the hyperparameters a configuration may set, in tuning.csv's column order
HYPERPARAMETERS = ("loss", "lr", "temperature", *protocol_mod.OT_FIELDS, "weights")


# ----------------------------------------------------------------------------- protocol


@dataclasses.dataclass
class StageProtocol:
    """A protocol as the stages use it.

    doc: the YAML (checked by :func:`optical_viz.protocol.validate_protocol`).
    limits: quick-scale cuts (``max_languages``, ``max_unseen``, ``max_queries``,
        ``max_candidates``); empty at full scale.
    """

    scale: str
    path: Path
    doc: dict
    limits: dict

    @property
    def checkpoints(self) -> list[int]:
        return list(self.doc["training"]["checkpoints"])


def load_stage_protocol(scale: str = "full", path: str | os.PathLike | None = None) -> StageProtocol:
    """The protocol of ``scale`` ("full": the pre-registered one; "quick": the CI-sized copy)."""
    if path is None:
        if scale not in PROTOCOLS:
            raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(PROTOCOLS)} or give a protocol path")
        path = PROTOCOLS[scale]
    doc = protocol_mod.load_protocol(path)
    return StageProtocol(scale, Path(path), doc, dict(doc.get("limits") or {}))


# ----------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class Setting:
    """One trained configuration: a method, the name of its variant and its hyperparameters.

    params: ``loss`` (the loss name), ``lr``, ``temperature`` (contrastive), the OT fields
    of :data:`optical_viz.protocol.OT_FIELDS` and ``weights`` ("scale_probe" or None).
    """

    method: str
    variant: str
    params: tuple  # sorted (key, value) pairs: hashable, and equal settings compare equal

    @classmethod
    def make(cls, method: str, variant: str, **params) -> "Setting":
        return cls(method, variant, tuple(sorted(params.items())))

    @property
    def p(self) -> dict:
        return dict(self.params)

    @property
    def label(self) -> str:
        """The setting within its method: ``published-lr0.0001``, ``t0.05-lr0.0002``, ``lr0.0001``."""
        return f"{self.variant}-lr{self.p['lr']:g}" if self.variant else f"lr{self.p['lr']:g}"

    @property
    def run_key(self) -> str:
        """The configuration's part of a run id: ``ot-published-lr0.0001``, ``mse-lr0.0001``."""
        return f"{self.method}-{self.label}"


def _ot_setting(variant: str, fields: dict, lr: float) -> Setting:
    ot = {k: fields[k] for k in protocol_mod.OT_FIELDS}
    return Setting.make("ot", variant, loss=fields.get("loss", "ot"), lr=float(lr), weights=fields.get("weights"), **ot)


def dev_settings(p: StageProtocol, question: str, winners: dict | None = None) -> list[Setting]:
    """The dev configurations of a stage, in the protocol's order (ties go to the first).

    question: "rq1" (stage 1: OT variants at the base lr, contrastive grid, MSE grid),
    "rq1-dev2" (the OT stage-1 winner at the stage-2 lrs; needs ``winners["ot-stage1"]``).
    """
    t = p.doc["tuning"]["rq1"]
    if question == "rq1":
        out = [_ot_setting(name, v, t["ot"]["lr"]) for name, v in t["ot"]["variants"].items()]
        grid = t["contrastive"]["grid"]
        out += [Setting.make("contrastive", f"t{temp:g}", loss="contrastive", lr=float(lr), temperature=float(temp))
                for temp, lr in itertools.product(grid["temperature"], grid["lr"])]
        out += [Setting.make("mse", "", loss="mse", lr=float(lr)) for lr in t["mse"]["grid"]["lr"]]
        return out
    if question == "rq1-dev2":
        best = winners["ot-stage1"]
        return [dataclasses.replace(best, params=tuple(sorted({**best.p, "lr": float(lr)}.items())))
                for lr in t["ot"]["stage2_lr"]]
    raise ValueError(f"no dev settings for {question!r}")


def combined_setting(ot: Setting, contrastive: Setting) -> Setting:
    """OT (best) + contrastive (best): OT's fields and lr, contrastive's temperature, terms
    weighed by the scale probe (an OT-best made of ot+mse keeps only its OT term)."""
    params = {**ot.p, "loss": "ot+contrastive", "temperature": contrastive.p["temperature"], "weights": "scale_probe"}
    return Setting.make("ot+contrastive", f"{ot.variant}+{contrastive.variant}", **params)


# ----------------------------------------------------------------------------- runs


def _base_config(p: StageProtocol, config_path: str | os.PathLike, n_languages: int | None) -> DistillConfig:
    base = DistillConfig.from_yaml(paths.REPO_ROOT / config_path)
    limit = p.limits.get("max_languages")
    n = min(x for x in (n_languages, limit, len(base.languages)) if x is not None)
    t = p.doc["training"]
    checkpoints = p.checkpoints
    every = int(np.gcd.reduce(checkpoints))  # the monitor logs at every checkpoint
    changes = {
        "languages": base.languages[:n], "steps": t["steps"], "warmup_steps": t["warmup_steps"],
        "batch_size": t["batch_size"], "max_length": t["max_length"], "lr": t["lr"],
        "snapshots": [c for c in checkpoints if c < t["steps"]],
        "eval": {"heldout_every": every}, **(p.doc.get("distill_overrides") or {}),
    }
    return DistillConfig.from_dict(deep_merge(base.to_dict(), changes))


def setting_config(base: DistillConfig, s: Setting, seed: int, output_dir: Path, weights: dict | None) -> DistillConfig:
    """``base`` with the setting's loss, hyperparameters and seed."""
    q = s.p
    loss: dict = {"name": q["loss"], "weights": weights or {}}
    if "objective" in q:
        loss["ot"] = {k: q[k] for k in protocol_mod.OT_FIELDS}
    if "temperature" in q:
        loss["contrastive"] = {"temperature": q["temperature"]}
    d = deep_merge(base.to_dict(), {"loss": loss, "lr": q["lr"], "seed": seed, "output_dir": str(output_dir)})
    return DistillConfig.from_dict(d)


def scale_probe_weights(config: DistillConfig, reference: str, batches: int, root=None, cache: Path | None = None) -> dict:
    """Term weights that give every term of ``config.loss`` the magnitude of ``reference``:
    ``w_t = mean(reference) / mean(t)`` over the first ``batches`` training batches of the
    seed-0 data order, before any update (the protocol's scale probe). Cached in ``cache``
    (a JSON file, keyed by the config's loss and languages) so every run of a stage reuses it."""
    from optical_viz.distill import build_trainer

    key = json.dumps({"loss": config.loss.name, "ot": dataclasses.asdict(config.loss.ot),
                      "contrastive": dataclasses.asdict(config.loss.contrastive), "languages": config.languages,
                      "batch_size": config.batch_size, "max_length": config.max_length, "batches": batches}, sort_keys=True)
    known = json.loads(cache.read_text()) if cache is not None and cache.is_file() else {}
    if key in known:
        return known[key]["weights"]
    import torch

    probe = dataclasses.replace(config, seed=0)
    trainer = build_trainer(probe, root=root)
    sums: dict[str, float] = {}
    with torch.no_grad():
        for _ in range(batches):
            terms = trainer.compute_loss(trainer.sampler.next_batch()).terms
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value) / batches
    if reference not in sums:
        raise ValueError(f"scale probe: the reference term {reference!r} is not a term of loss {config.loss.name!r}")
    weights = {name: sums[reference] / value for name, value in sums.items()}
    if cache is not None:
        known[key] = {"term_means": sums, "weights": weights}
        atomic_write(cache, json.dumps(known, indent=1, sort_keys=True) + "\n")
    return weights


def _probe_reference(p: StageProtocol, loss: str) -> str:
    refs = p.doc["scale_probe"]["reference_term"]
    if loss not in refs:
        raise ValueError(f"the protocol's scale_probe names no reference term for loss {loss!r}")
    return refs[loss]


def make_run(p: StageProtocol, question: str, langset: str, base: DistillConfig, s: Setting | None, seed: int,
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
        weights = scale_probe_weights(cfg0, _probe_reference(p, s.p["loss"]), int(p.doc["scale_probe"]["batches"]),
                                      root=root, cache=cache)
    config = setting_config(base, s, seed, runs_dir / train_id, weights)
    method, variant = (arm, "") if arm else (s.method, s.label)
    return Run(question, langset, method, seed, list(config.languages), config, evaluations, list(unseen), variant=variant)


# ----------------------------------------------------------------------------- evaluations


def rq1_question_ids(p: StageProtocol, split: str, set_name: str = "xquad_r", root=None) -> list[str]:
    """The question ids of the dev or test articles (read from the English file)."""
    articles = set(p.doc["splits"]["rq1"][f"{split}_articles"])
    by_id = protocol_mod.question_articles(set_name, "eng_Latn", root=root)
    return sorted(q for q, a in by_id.items() if a in articles)


def _cut(p: StageProtocol, **fields) -> dict:
    """Quick-scale query / candidate limits."""
    return {k: p.limits[k] for k in ("max_queries", "max_candidates") if k in p.limits} | fields


def dev_evaluations(p: StageProtocol, question: str, root=None) -> list[EvalSpec]:
    """The dev score at every checkpoint: RQ1 XQuAD-R L->en on the dev questions; RQ2 FLORES dev."""
    steps = p.doc["training"]["steps"]
    out = []
    for c in p.checkpoints:
        at = None if c == steps else c
        if question == "rq1":
            out.append(EvalSpec(task="xquad-r", directions=["xx->en"], query_ids=rq1_question_ids(p, "dev", root=root),
                                at_step=at, label=f"xquad-r.dev@{c}", **_cut(p)))
        else:
            out.append(EvalSpec(task="flores", split="dev", at_step=at, label=f"flores.dev@{c}", **_cut(p)))
    return out


def test_evaluations(p: StageProtocol, question: str, root=None) -> list[EvalSpec]:
    """What every test model is scored on (the protocol's primary and secondary metrics)."""
    if question == "rq1":
        test_ids = rq1_question_ids(p, "test", root=root)
        n_maxsim = next(m["max_queries"] for m in p.doc["metrics"]["secondary"] if m.get("scoring") == "maxsim")
        maxsim_ids = protocol_mod.maxsim_subset(test_ids, n_maxsim, seed=MAXSIM_SEED)
        aer = [EvalSpec(task="alignment", pair=m["pair"], align_methods=m["methods"], layer=m["layer"],
                        max_queries=p.limits.get("max_queries"))
               for m in p.doc["metrics"]["secondary"] if m.get("name") == "aer"]
        return aer + [
            EvalSpec(task="xquad-r", directions=["xx->en"], query_ids=test_ids, label="xquad-r.test", **_cut(p)),
            EvalSpec(task="xquad-r", langs="english", directions=["xx->en"], query_ids=test_ids,
                     label="xquad-r.test.english", **_cut(p)),
            EvalSpec(task="xquad", include_english=True, query_ids=rq1_question_ids(p, "test", "xquad", root=root),
                     label="xquad.test", **_cut(p)),
            EvalSpec(task="xquad-r", scoring="maxsim", directions=["xx->en"], query_ids=maxsim_ids,
                     label="xquad-r.maxsim.test", **_cut(p)),
        ]
    return [
        EvalSpec(task="flores", split="test", label="flores.test", **_cut(p)),
        EvalSpec(task="flores", split="test", langs="unseen", label="flores.test.unseen", **_cut(p)),
    ]


# ----------------------------------------------------------------------------- tuning.csv


def _dev_score(doc: dict) -> float:
    """Recall@1 in points, the mean over (language, direction) rows (pooled rows excluded)."""
    rows = [r for r in doc["results"] if r["lang"] != "all"]
    return 100.0 * float(np.mean([r["recall@1"] for r in rows]))


def _setting_of(doc: dict) -> Setting:
    """The configuration of a dev result, read back from its stored distill config."""
    cfg, method = doc["config"], doc["method"]
    loss = cfg["loss"]
    params: dict = {"loss": loss["name"], "lr": float(cfg["lr"])}
    if method == "ot":
        params |= {k: loss["ot"][k] for k in protocol_mod.OT_FIELDS}
        params["weights"] = "scale_probe" if loss["weights"] else None
    if method == "contrastive":
        params["temperature"] = float(loss["contrastive"]["temperature"])
    label = doc["variant"]
    variant = label.rsplit("-lr", 1)[0] if "-lr" in label else ""
    return Setting.make(method, variant, **params)


def tuning_table(p: StageProtocol, results_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per dev configuration: question, method, variant, every hyperparameter, the
    dev primary metric at each checkpoint (``dev_r1@N``), ``steps`` (the last checkpoint
    scored), the run id and the code commit. Read from ``<results>/tuning/<question>/``."""
    rows: dict[str, dict] = {}
    for path in sorted((Path(results_dir) / "tuning").glob("*/*.json")):
        doc = json.loads(path.read_text())
        step = int(doc["evaluation"]["label"].rsplit("@", 1)[1])
        s = _setting_of(doc)
        row = rows.setdefault(doc["run_id"], {
            "question": doc["question"], "method": s.method, "variant": s.run_key, "seed": doc["seed"],
            **{k: s.p.get(k) for k in HYPERPARAMETERS},
            "term_weights": json.dumps(doc["config"]["loss"]["weights"], sort_keys=True) or None,
            "steps": 0, "run_id": doc["run_id"], "commit": doc["code"]["commit"],
        })
        row[f"dev_r1@{step}"] = round(_dev_score(doc), 4)
        row["steps"] = max(row["steps"], step)
    frame = pd.DataFrame(list(rows.values()))
    if frame.empty:
        return frame
    score_cols = sorted((c for c in frame if c.startswith("dev_r1@")), key=lambda c: int(c.split("@")[1]))
    return frame[[c for c in frame if not c.startswith("dev_r1@")] + score_cols]


def write_tuning_csv(p: StageProtocol, results_dir: str | os.PathLike) -> Path:
    out = Path(results_dir) / "tuning.csv"
    atomic_write(out, tuning_table(p, results_dir).to_csv(index=False, float_format="%.6g"))
    return out


def ranked(table: pd.DataFrame, settings: list[Setting], question: str, steps: int) -> list[tuple[Setting, float]]:
    """``settings`` that have a dev score at ``steps``, best first; a difference under 0.1
    point is a tie, which goes to the setting listed first (the protocol's rule)."""
    col = f"dev_r1@{steps}"
    scored = []
    for order, s in enumerate(settings):
        hit = table[(table["question"] == question) & (table["variant"] == s.run_key)] if col in table else table.iloc[:0]
        if len(hit) and pd.notna(hit[col].iloc[0]):
            scored.append((order, s, float(hit[col].iloc[0])))
    # a stable sort on the score rounded down to the tie width keeps listed order inside a tie
    best_first = []
    for order, s, score in sorted(scored, key=lambda x: x[0]):
        i = 0
        while i < len(best_first) and best_first[i][1] >= score - 0.1 + 1e-12:
            i += 1
        best_first.insert(i, (s, score))
    return best_first


def winners(p: StageProtocol, table: pd.DataFrame) -> dict[str, Setting]:
    """The selected settings known so far (missing keys: their stage is not finished).

    ``ot-stage1``, ``ot``, ``contrastive``, ``mse`` (RQ1 dev); ``rq2-ot``, ``rq2-contrastive``
    (FLORES dev); ``ot-published`` (always known).
    """
    steps = int(p.doc["tuning"]["steps"])
    out = {"ot-published": _ot_setting("published", p.doc["tuning"]["rq1"]["ot"]["variants"]["published"],
                                       p.doc["tuning"]["rq1"]["ot"]["lr"])}
    if table.empty:
        return out
    stage1 = dev_settings(p, "rq1")
    for method in ("ot", "contrastive", "mse"):
        listed = [s for s in stage1 if s.method == method]
        done = ranked(table, listed, "rq1", steps)
        if len(done) == len(listed):
            out["ot-stage1" if method == "ot" else method] = done[0][0]
    full = _rq1_ranking(p, table, "ot")
    if full:
        out["ot"] = full[0][0]
    for method in ("ot", "contrastive"):
        candidates = rq2_candidates(p, table, method)
        if candidates:
            done = ranked(table, candidates, "rq2", steps)
            if len(done) == len(candidates):
                out[f"rq2-{method}"] = done[0][0]
    return out


def _rq1_ranking(p: StageProtocol, table: pd.DataFrame, method: str) -> list[tuple[Setting, float]]:
    """Every RQ1 dev configuration of ``method`` (OT: its stage-1 variants and the stage-2 runs
    of their winner), best first; empty until all of them are scored."""
    steps = int(p.doc["tuning"]["steps"])
    listed = [s for s in dev_settings(p, "rq1") if s.method == method]
    if method == "ot":
        stage1 = ranked(table, listed, "rq1", steps)
        if len(stage1) < len(listed):
            return []
        listed += dev_settings(p, "rq1-dev2", {"ot-stage1": stage1[0][0]})
    done = ranked(table, listed, "rq1", steps)
    return done if len(done) == len(listed) else []


def rq2_candidates(p: StageProtocol, table: pd.DataFrame, method: str) -> list[Setting]:
    """The best ``candidates_per_method`` RQ1-dev settings of ``method`` (empty until its
    RQ1 tuning is finished)."""
    return [s for s, _ in _rq1_ranking(p, table, method)[: int(p.doc["tuning"]["rq2"]["candidates_per_method"])]]


def _tuning_rows(table: pd.DataFrame) -> list[dict]:
    return table.to_dict("records") if not table.empty else []


# ----------------------------------------------------------------------------- stages


def _rq2_sizes(p: StageProtocol) -> dict[int, str]:
    return {int(k): v for k, v in p.doc["splits"]["rq2"]["sizes"].items()}


def _unseen(p: StageProtocol) -> list[str]:
    langs = load_yaml(paths.REPO_ROOT / p.doc["splits"]["rq2"]["unseen"]["config"], what="language list")["unseen_languages"]
    return list(langs)[: p.limits.get("max_unseen")]


def stage_runs(p: StageProtocol, stage: str, runs_dir: str | os.PathLike, results_dir: str | os.PathLike,
               root=None, probe: bool = True) -> list[Run]:
    """The runs of ``stage`` (one of :data:`STAGES`). ValueError when an earlier stage it
    depends on is not finished (a test stage: :func:`optical_viz.protocol.require_tuned`).
    probe: False for a plan only (no scale probe: combined losses show weights 1)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    runs_dir, results_dir = Path(runs_dir), Path(results_dir)
    table = tuning_table(p, results_dir)
    won = winners(p, table)
    seed0 = int(p.doc["tuning"]["seed"])
    rq1_base = _base_config(p, "configs/rq1.yaml", None)
    kw = dict(root=root, results_dir=results_dir, probe=probe)
    if stage in ("rq1-dev", "rq1-dev2"):
        if stage == "rq1-dev2" and "ot-stage1" not in won:
            raise ValueError("stage rq1-dev2 needs the OT stage-1 winner: finish stage rq1-dev first")
        settings = dev_settings(p, "rq1" if stage == "rq1-dev" else "rq1-dev2", won)
        evs = dev_evaluations(p, "rq1", root=root)
        return [make_run(p, "rq1", RQ1_LANGSET, rq1_base, s, seed0, evs, runs_dir, **kw) for s in settings]
    if stage == "rq2-dev":
        size = int(p.doc["tuning"]["rq2"]["size"])
        base = _base_config(p, _rq2_sizes(p)[size], size)
        settings = [s for m in p.doc["tuning"]["rq2"]["methods"] for s in rq2_candidates(p, table, m)]
        if len(settings) < sum(p.doc["tuning"]["rq2"]["budget"].values()):
            raise ValueError("stage rq2-dev needs the RQ1 tuning of OT and contrastive: finish rq1-dev and rq1-dev2 first")
        evs = dev_evaluations(p, "rq2", root=root)
        return [make_run(p, "rq2", f"n{size}", base, s, seed0, evs, runs_dir, **kw) for s in settings]

    question = stage.split("-")[0]
    spec = p.doc["test"][question]
    rows = _tuning_rows(table)
    for arm in spec["arms"].values():
        protocol_mod.require_tuned(p.doc, question, arm["method"], rows)
    prefix = "" if question == "rq1" else "rq2-"

    def setting(arm: dict) -> Setting | None:
        if arm["method"] == "zero-shot":
            return None
        if arm.get("setting") == "published":
            return won["ot-published"]
        if arm["method"] == "ot+contrastive":
            return combined_setting(won["ot"], won["contrastive"])
        return won[prefix + arm["method"]]

    evs = test_evaluations(p, question, root=root)
    runs = []
    if question == "rq1":
        for seed in spec["seeds"]:
            for name, arm in spec["arms"].items():
                s = setting(arm)
                if s is None and seed != spec["seeds"][0]:
                    continue
                runs.append(make_run(p, "rq1", RQ1_LANGSET, rq1_base, s, seed, evs, runs_dir, arm=name, **kw))
        return runs
    unseen = _unseen(p)
    sizes = [int(x) for x in spec["sizes"]]
    for seed in spec["seeds"]:
        for size in sizes:
            base = _base_config(p, _rq2_sizes(p)[size], size)
            for name, arm in spec["arms"].items():
                s = setting(arm)
                if s is None and (seed != spec["seeds"][0] or size != max(sizes)):
                    continue  # zero-shot: one model, scored on the largest set's languages and the unseen
                langset = "all" if s is None else f"n{size}"
                runs.append(make_run(p, "rq2", langset, base, s, seed, evs, runs_dir, arm=name, unseen=unseen, **kw))
    return runs


# ----------------------------------------------------------------------------- running


@dataclasses.dataclass
class GridOptions:
    """What :func:`~optical_viz.experiments.run.run_grid` needs of a grid besides its runs."""

    scale: str
    n_bootstrap: int
    prune: bool
    precision: str
    estimate: dict = dataclasses.field(default_factory=dict)


def grid_options(p: StageProtocol) -> GridOptions:
    return GridOptions(
        # students are pruned after the last stage (reproduce_protocol), not per run: a test arm's
        # seed-0 run is a dev run's student
        scale=p.scale, n_bootstrap=int(p.doc["statistics"]["bootstrap"]["n"]),
        prune=False, precision=p.doc["metrics"]["precision"],
        estimate=_estimate_costs(p.doc.get("budget", {})),
    )


def _estimate_costs(budget: dict) -> dict[str, float]:
    """The protocol's budget numbers as the printed plan's ``estimate`` costs (per process)."""
    steps, rates = budget.get("seconds_per_step", {}), budget.get("rates_per_s", {})
    costs = {"seconds_per_step": steps.get("light"), "seconds_per_step_heavy": steps.get("heavy"),
             "seconds_per_model": budget.get("overhead_per_run_s"),
             "sentences_per_second_xquad-r": rates.get("xquad_r_dense"),
             "sentences_per_second_xquad": rates.get("xquad_r_dense"),
             "sentences_per_second_flores": rates.get("flores")}
    return {k: float(v) for k, v in costs.items() if v is not None}


def shard_runs(runs: list[Run], shard: tuple[int, int]) -> list[Run]:
    """Runs ``i, i + n, ...`` of ``shard = (i, n)``, counting runs that share a training
    directory as one (so two processes never train the same run)."""
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {i}/{n}")
    keys = list(dict.fromkeys(r.config.output_dir if r.trained else r.run_id for r in runs))
    mine = set(keys[i::n])
    return [r for r in runs if (r.config.output_dir if r.trained else r.run_id) in mine]


def run_stage(p: StageProtocol, stage: str, *, runs_dir, results_dir, shard=(0, 1), root=None, dry_run=False,
              progress=True, log=print) -> list[dict]:
    """Train and score what is missing of one stage (``shard``: this process's part); a dev
    stage then rewrites ``tuning.csv``. Returns run_grid's timing records."""
    from optical_viz.experiments.run import format_plan, run_grid, status

    runs = shard_runs(stage_runs(p, stage, runs_dir, results_dir, root=root, probe=not dry_run), shard)
    where = Path(results_dir) / ("tuning" if stage.endswith(("-dev", "-dev2")) else "")
    opts = grid_options(p)
    log(f"stage {stage} (shard {shard[0]}/{shard[1]}): " + format_plan(opts, runs, status(runs, where)))
    if dry_run:
        return []
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*truncat", category=UserWarning)
        records = run_grid(opts, runs, where, root=root, progress=progress, log=log)
    if where != Path(results_dir):
        write_tuning_csv(p, results_dir)
    return records


def prune_after_stage(stage: str, runs_dir: str | os.PathLike) -> list[Path]:
    """Delete the weights no later stage reads (``limits.prune``, the quick scale, whose CI
    check would otherwise hold ~0.7 GB per run): a finished run's checkpoints (the protocol
    never extends a run), and once a question's test stage has run, that question's students
    (RQ2 reuses no RQ1 student; :func:`make_run` names directories ``<question>-...``). An
    unfinished run keeps its checkpoint. Returns what went."""
    import shutil

    question = stage.split("-")[0]
    gone = []
    for run_dir in sorted(p for p in Path(runs_dir).glob("*") if p.is_dir()):
        if not (run_dir / "student" / "config.json").is_file():
            continue
        drop = [run_dir / "checkpoints"]
        if stage.endswith("-test") and run_dir.name.startswith(f"{question}-"):
            drop.append(run_dir / "student")
        for path in drop:
            if path.exists():
                shutil.rmtree(path)
                gone.append(path)
    return gone


@dataclasses.dataclass
class ProtocolResult:
    """What :func:`reproduce_protocol` did: the stages run, the timing records, failed runs,
    and the stage it stopped before (None: every stage asked for ran)."""

    stages: list[str]
    records: list[dict]
    failed: list[str]
    stopped_before: str | None
    reports: list[Path]


def reproduce_protocol(p: StageProtocol, *, runs_dir, results_dir, figures_dir, stages=None, shard=(0, 1),
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
        if not dry_run and p.limits.get("prune") and shard[1] == 1 and not any("error" in r for r in stage_records):
            prune_after_stage(stage, runs_dir)
    failed = [r["run_id"] for r in records if "error" in r]
    for r in records:
        if "error" in r:
            log(f"FAILED {r['run_id']}: {r['error']}")
    reports: list[Path] = []
    if not dry_run and shard[0] == 0 and any(Path(results_dir).glob("rq*/*.json")):
        # the protocol's own reports only (the grid file's summaries, "tied when intervals
        # overlap" findings and figures answer another design: reproduce --grid writes those)
        from optical_viz.experiments.protocol_report import write_protocol_reports
        from optical_viz.experiments.run import write_timings

        reports = [write_timings(results_dir), *write_protocol_reports(p, results_dir, figures_dir)]
    return ProtocolResult(done, records, failed, stopped, reports)
