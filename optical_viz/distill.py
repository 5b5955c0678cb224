"""Cross-lingual distillation: a frozen teacher, a trainable student, one loss to compare.

The teacher (frozen, eval mode) embeds the English side of a bitext; the student (a
trainable copy of the same encoder or of another one; with another, ``start: {method:
linear_map}`` first maps it into the teacher's space) embeds the low-resource side; a loss from
:mod:`optical_viz.losses` pulls the two together. Everything that defines a run lives
in one :class:`DistillConfig`, saved as ``RUN/config.yaml`` next to its results.

>>> cfg = DistillConfig.from_yaml("configs/quick.yaml")
>>> run = distill(cfg)                       # doctest: +SKIP
>>> run.student_dir                           # a model directory that load_encoder opens

Single steps (benchmarks, experiments): ``trainer = build_trainer(cfg)`` gives a
:class:`Trainer` on the CPU; ``trainer.train_step()`` takes an optimizer step,
``trainer.compute_loss(pairs)`` returns a :class:`StepLoss`, and
``trainer.loss_from_states(trainer.batch_states(pairs))`` splits it into the forwards and the
losses (``trainer.ot_term`` is the configured OT loss alone).

The training bitext (:mod:`optical_viz.data.training`), the two models and the teacher cache
(:mod:`optical_viz.models`), the held-out signal (:mod:`optical_viz.monitor`) and the checks of
a run directory (:mod:`optical_viz.rundir`) live in their own modules; their public names are
importable from here too.

Run directory (other modules rely on it)::

    RUN/config.yaml           the resolved configuration
    RUN/metrics.jsonl         one JSON object per line: "step", loss terms ("loss", "loss_ot",
                              ...), at step 0 with a start "start_pairs", "start_mse_before",
                              "start_mse_after" (the fitted linear map), "lr",
                              "examples_per_s", "step_time_s", OT diagnostics
                              ("ot_converged", "ot_plan_entropy", "ot_plan_cost", "ot_eps"),
                              "teacher_cache_hit" (share of the batch's English sentences whose
                              teacher states were cached; absent with teacher_cache_mb 0),
                              evaluation rows ("eval"), and at step 0, every
                              eval.heldout_every steps and at the end the held-out signal on
                              FLORES dev (HeldoutScores): "heldout_cosine" (translation
                              pairs), "translation_gap" (pairs minus non-matching pairs),
                              "dev_recall@1" (L->en among the held-out English sentences),
                              each averaged over languages, with "<key>_by_lang" dicts
    RUN/checkpoints/step-N/   student.safetensors (trainable tensors), optimizer.pt,
                              scheduler.pt, rng.pt, trainer_state.json, SHA256SUMS;
                              written atomically (a directory renamed into place); the
                              last ``keep_checkpoints`` while training, the last one once
                              the run has finished
    RUN/.lock                 while a run writes: its pid (see optical_viz.rundir.RunLock)
    RUN/student/              the final student model directory, with
                              optical_viz_training.json {"languages", "bitext_sources", ...}
    RUN/student-step-N/       the student after step N, for each N in ``config.snapshots``
                              (the same files as RUN/student/; written atomically, once)

Resuming (``resume=True``) restores the model, optimizer, scheduler, the torch / numpy /
python RNG states and the sampler position from the last checkpoint, so that the metrics
equal those of an uninterrupted run (same seed, CPU). Each checkpoint is verified against
its SHA256SUMS first; a damaged one is reported and the previous intact one used. One
process at a time writes a run directory: a second is refused with the holder's pid. Several processes (``accelerate
launch --num_processes 2 --cpu``) split each global batch between them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "OTConfig",
    "ContrastiveConfig",
    "LossConfig",
    "EvalConfig",
    "DistillConfig",
    "DistillResult",
    "BitextSampler",
    "Trainer",
    "BatchStates",
    "StepLoss",
    "ot_term",
    "TeacherCache",
    "Corpus",
    "latest_checkpoint",
    "build_trainer",
    "HeldoutScores",
    "heldout_scores",
    "distill",
    "load_training_data",
]

from optical_viz import unpad  # noqa: E402
from optical_viz.geometry import plan_entropy  # noqa: E402
from optical_viz.rundir import (  # noqa: E402,F401
    RunLock,
    atomic_directory,
    atomic_write,
    latest_checkpoint,
    list_checkpoints,
    prepare_run_dir,
    read_metrics,
)

# Normalised plan entropy above which the trainer warns that eps is too large for the costs
NEAR_UNIFORM = 0.95
# Fraction of converged OT problems in a step below which the trainer warns (once per run)
MIN_CONVERGED = 0.95


# ----------------------------------------------------------------------------- config
# The config sections live in optical_viz.config (typed, strict); re-exported here.
from optical_viz.config import (  # noqa: E402
    ContrastiveConfig,
    DistillConfig,
    EvalConfig,
    LossConfig,
    OTConfig,
)


# ----------------------------------------------------------------------------- data, models, held-out signal
# Each in its own module; re-exported here (tests, notebooks and benchmarks import them from here).
from optical_viz.data.training import BitextSampler, Corpus, load_training_data  # noqa: E402
from optical_viz.models import (  # noqa: E402
    Models,
    TeacherCache,
    apply_start,
    load_models,
    save_student,
    set_checkpointing,
    tokenize,
)
from optical_viz.monitor import HELDOUT_KEYS, HeldoutScores, heldout_scores  # noqa: E402


# ----------------------------------------------------------------------------- trainer


@dataclass
class DistillResult:
    """What :func:`distill` produced. ``student_dir`` is None when stopped by ``max_steps``."""

    run_dir: Path
    student_dir: Path | None
    steps: int
    metrics: list[dict]


class _Ticker:
    """Adds the seconds since the previous call to ``timings[name]`` (no-op without timings)."""

    def __init__(self, timings: dict | None):
        self.timings = timings
        self.t = time.perf_counter()

    def __call__(self, name: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[name] = self.timings.get(name, 0.0) + now - self.t
            self.t = now


def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


@dataclass
class BatchStates:
    """The hidden states of one batch of B (lang, source, English) pairs, as the losses read them.

    student: {layer: (B, T, H)} the student's states of the sources (float; bf16 under autocast).
    student_mask: (B, T) bool, True on real tokens (padding False).
    teacher: {layer: (B, S, H)} the frozen teacher's states of the English sides (no gradient).
    teacher_mask: (B, S) bool.
    student_weights, teacher_weights: (B, T), (B, S) float OT marginals over content tokens
        (``loss.ot.marginals: content``), else None (uniform over real tokens).
    english, english_mask: (B, T', H) last-layer student states of the English sides and
        their (B, T') bool mask, for the MSE term; None without it.
    The layers are -1 and, with an OT term, ``loss.ot.layer``.
    """

    student: dict
    student_mask: object
    teacher: dict
    teacher_mask: object
    student_weights: object = None
    teacher_weights: object = None
    english: object = None
    english_mask: object = None


@dataclass
class StepLoss:
    """The loss of a batch: ``total`` (0-d tensor, the weighted sum that is minimised) and
    ``terms`` ({"ot" | "contrastive" | "mse": 0-d tensor}, unweighted)."""

    total: object
    terms: dict


def ot_term(states: BatchStates, settings: OTConfig):
    """The OT loss that a trainer with ``loss.ot = settings`` minimises on a batch's states ->
    :class:`optical_viz.losses.OTLoss` (``.loss`` the scalar, ``.plan``, ``.converged``, ...).

    :func:`optical_viz.losses.ot_loss` with ``settings`` between the student's and the
    teacher's tokens at ``settings.layer`` (in float32), with the batch's token weights (content
    tokens for ``marginals: content``, see :meth:`Trainer.batch_states`). Sinkhorn's warnings of
    unconverged problems are silenced: the trainer counts them in the metrics (``ot_converged``).
    """
    from optical_viz import losses

    layer = settings.layer
    with warnings.catch_warnings():  # counted in the metrics instead of a warning per step
        warnings.filterwarnings("ignore", message="sinkhorn", category=RuntimeWarning)
        return losses.ot_loss(
            states.student[layer].float(), states.teacher[layer].float(), states.student_mask, states.teacher_mask,
            settings, student_weights=states.student_weights, teacher_weights=states.teacher_weights,
        )


class Trainer:
    """The training state of one distillation run: models, optimizer, schedule, sampler.

    :func:`distill` drives it; :func:`build_trainer` makes one on the CPU for benchmarks and
    experiments. ``train_step()`` takes one optimizer step on the next batch of ``sampler``;
    ``compute_loss(pairs)`` = ``loss_from_states(batch_states(pairs))`` is its loss.
    """

    def __init__(self, config: DistillConfig, run_dir: Path, corpora, models: Models, accelerator, root=None,
                 start=None):
        import torch

        self.torch = torch
        self.root = root
        self.cfg = config
        self.run_dir = run_dir
        self.acc = accelerator
        self.device = accelerator.device
        self.teacher = models.teacher
        self.student = models.student  # with config.start's linear map already on it
        self.start = start  # the optical_viz.linear_map.LinearMapFit of the start, None without one
        set_checkpointing(self.student.model, config.checkpointing())
        self.sampler = BitextSampler(corpora, config.batch_size, config.seed, config.sampling, config.sampling_temperature,
                                     length_buckets=config.length_buckets, length=self._pair_length)
        params = [p for p in self.student.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr,
        )
        self.model, self.optimizer = accelerator.prepare(self.student.model, opt)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(config.warmup_steps, config.steps))
        self.step = 0
        self._warned_convergence = False
        self.metrics: list[dict] = []
        self._heldout_en = None
        self.teacher_cache = TeacherCache(config.teacher_cache_mb * 2**20) if config.teacher_cache_mb else None
        self.last_cache_hit = None  # share of the last batch's English sentences served by the cache
        # the last batch's (real, padded) token counts per side: {"student": (r, p), "teacher": (r, p)}
        self.last_tokens: dict[str, tuple[int, int]] = {}

    # --- one step

    def _pair_length(self, pair: tuple[str, str, str]) -> tuple[int, int]:
        """(source tokens, English tokens) of a pair as the models see them (truncated): the
        sort key of ``length_buckets``."""
        n = self.cfg.max_length
        src = len(self.student.tokenizer(self.student.prefix + pair[1], truncation=True, max_length=n)["input_ids"])
        tgt = len(self.teacher.tokenizer(self.teacher.prefix + pair[2], truncation=True, max_length=n)["input_ids"])
        return src, tgt

    def _hidden(self, model, ids, mask, layers: set[int]):
        if self.cfg.unpad and unpad.supports(model):
            states = unpad.hidden_states(model, ids, mask)  # the same states, real tokens only
        else:
            states = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        return {l: states[l] for l in layers}

    def _teacher_hidden(self, texts: list[str], layers: set[int], tick):
        """The teacher's hidden states of ``texts`` -> ({layer: (B, S, H)}, mask (B, S) long).

        Without a cache: one forward of the padded batch. With one: a forward of the distinct
        sentences it lacks only, then the batch re-assembled from the per-sentence entries
        (right-padded with zeros; the mask says which tokens are real, as the tokenizer's does).
        """
        torch = self.torch
        cache = self.teacher_cache
        if cache is None:
            ids, mask = tokenize(self.teacher, texts, self.cfg.max_length, self.device)  # (B, S)
            tick("tokenize")
            with torch.no_grad(), self.acc.autocast():
                hidden = self._hidden(self.teacher.model, ids, mask, layers)  # layer -> (B, S, H)
            return hidden, mask
        order = sorted(layers)
        cache.check((self.cfg.max_length, tuple(order), self.acc.mixed_precision))
        entries = {t: e for t in dict.fromkeys(texts) if (e := cache.get(t)) is not None}
        misses = [t for t in dict.fromkeys(texts) if t not in entries]
        self.last_cache_hit = sum(t in entries for t in texts) / len(texts)  # before this batch's misses are added
        if misses:
            ids, mask = tokenize(self.teacher, misses, self.cfg.max_length, self.device)  # (M, S')
            tick("tokenize")
            with torch.no_grad(), self.acc.autocast():
                hidden = self._hidden(self.teacher.model, ids, mask, layers)  # layer -> (M, S', H)
            stacked = torch.stack([hidden[l] for l in order], dim=2)  # (M, S', K, H)
            for i, text in enumerate(misses):
                entry = stacked[i][mask[i].bool()].clone()  # (L, K, H); a copy, not a view of the batch
                entries[text] = entry
                cache.put(text, entry)
        else:
            tick("tokenize")
        rows = [entries[t] for t in texts]
        lengths = torch.tensor([len(r) for r in rows], device=self.device)  # (B,)
        padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)  # (B, S, K, H), zeros past each length
        mask = (torch.arange(padded.shape[1], device=self.device)[None, :] < lengths[:, None]).long()  # (B, S)
        return {l: padded[:, :, k].contiguous() for k, l in enumerate(order)}, mask

    def batch_states(self, pairs: list[tuple[str, str, str]], timings: dict | None = None) -> BatchStates:
        """Tokenize a list of (lang, source, English) pairs and run the models -> :class:`BatchStates`.

        The teacher runs without gradients (its states may come from the cache, see
        ``teacher_cache_mb``); the student's states carry gradients unless called under
        ``torch.no_grad()``. timings: if given, seconds per phase are added to it (tokenize,
        teacher_forward, student_forward).
        """
        cfg = self.cfg.loss
        terms = cfg.terms
        tick = _Ticker(timings)
        src = [p[1] for p in pairs]
        tgt = [p[2] for p in pairs]
        B = len(pairs)
        # MSE also needs student(English): one student forward over both sides (DDP allows
        # a single forward per backward)
        student_texts = src + tgt if "mse" in terms else src
        s_ids, s_mask = tokenize(self.student, student_texts, self.cfg.max_length, self.device)  # (B or 2B, T)
        layers = {-1} | ({cfg.ot.layer} if "ot" in terms else set())
        sw = tw = None
        content = "ot" in terms and cfg.ot.marginals == "content"  # no mass on <s>, </s>, prefix pieces
        if content:
            from optical_viz.losses import content_weights

            s_content = self.student.content_mask(src, self.cfg.max_length).to(self.device)  # (B, T)
            t_content = self.teacher.content_mask(tgt, self.cfg.max_length).to(self.device)  # (B, S)
            sw = content_weights(s_mask[:B].bool(), s_content)  # (B, T)
        t_hidden, t_mask = self._teacher_hidden(tgt, layers, tick)  # layer -> (B, S, H); (B, S)
        if content:
            tw = content_weights(t_mask.bool(), t_content)  # (B, S)
        tick("teacher_forward")
        with self.acc.autocast():
            s_hidden = self._hidden(self.model, s_ids, s_mask, layers)  # layer -> (B or 2B, T, H)
        # what each side's forward computed: real tokens and padded positions
        self.last_tokens = {"student": (int(s_mask.sum()), s_mask.numel()), "teacher": (int(t_mask.sum()), t_mask.numel())}
        e_hidden = e_mask = None
        if "mse" in terms:
            e_hidden, e_mask = s_hidden[-1][B:], s_mask[B:].bool()  # (B, T, H), (B, T): student(English)
            s_hidden, s_mask = {l: h[:B] for l, h in s_hidden.items()}, s_mask[:B]
        tick("student_forward")
        return BatchStates(student=s_hidden, student_mask=s_mask.bool(), teacher=t_hidden, teacher_mask=t_mask.bool(),
                           student_weights=sw, teacher_weights=tw, english=e_hidden, english_mask=e_mask)

    def ot_term(self, states: BatchStates):
        """The configured OT loss (``loss.ot``) of ``states``: :func:`ot_term`."""
        return ot_term(states, self.cfg.loss.ot)

    def loss_from_states(self, states: BatchStates, timings: dict | None = None) -> StepLoss:
        """The configured loss terms of a batch's hidden states and their weighted sum.

        timings: if given, the seconds taken are added to ``timings["loss_forward"]``.
        """
        from optical_viz import losses

        cfg = self.cfg.loss
        terms = cfg.terms
        tick = _Ticker(timings)
        out = {}
        if "ot" in terms:
            res = self.ot_term(states)
            out["ot"] = res.loss
            self.last_ot = {
                "ot_converged": float(res.converged.float().mean()),  # fraction of this process's pairs
                "ot_plan_entropy": float(plan_entropy(res.plan).mean()),  # 1: uniform plans, ~0.5: sharp
                "ot_plan_cost": float(res.plan_cost.mean()),  # <P, C> of the student-teacher plans
                "ot_eps": float(res.eps.mean()),  # eps in cost units (relative eps: changes with training)
            }
        if "contrastive" in terms or "mse" in terms:
            s_sent = losses.mean_pool(states.student[-1].float(), states.student_mask)  # (B, H)
            t_sent = losses.mean_pool(states.teacher[-1].float(), states.teacher_mask)  # (B, H)
        if "contrastive" in terms:
            c = cfg.contrastive
            out["contrastive"] = losses.contrastive_loss(s_sent, t_sent, temperature=c.temperature, margin=c.margin, symmetric=c.symmetric)
        if "mse" in terms:
            e_sent = losses.mean_pool(states.english.float(), states.english_mask)  # (B, H)
            out["mse"] = losses.mse_loss(s_sent, e_sent, t_sent)
        total = losses.combine(out, cfg.term_weights())
        tick("loss_forward")
        return StepLoss(total=total, terms=out)

    def compute_loss(self, pairs: list[tuple[str, str, str]], timings: dict | None = None) -> StepLoss:
        """The loss of a list of (lang, source, English) pairs: :meth:`batch_states`, then
        :meth:`loss_from_states`. timings: if given, seconds per phase are added to it
        (tokenize, teacher_forward, student_forward, loss_forward)."""
        return self.loss_from_states(self.batch_states(pairs, timings), timings)

    def train_step(self, timings: dict | None = None) -> dict:
        """One optimizer step on the next global batch -> the metrics record."""
        torch = self.torch
        t0 = time.perf_counter()
        batch = self.sampler.next_batch()
        local = batch[self.acc.process_index :: self.acc.num_processes]
        loss = self.compute_loss(local, timings)
        total, terms = loss.total, loss.terms
        tick = _Ticker(timings)
        self.acc.backward(total)
        tick("backward")
        if self.cfg.grad_clip is not None:
            self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        tick("optimizer")
        self.step += 1
        values = torch.stack([total.detach(), *[v.detach() for v in terms.values()]])
        values = self.acc.reduce(values, reduction="mean") if self.acc.num_processes > 1 else values
        elapsed = time.perf_counter() - t0
        rec = {"step": self.step, "loss": float(values[0])}
        rec.update({f"loss_{k}": float(v) for k, v in zip(terms, values[1:])})
        rec.update({"lr": lr, "examples_per_s": len(batch) / elapsed, "step_time_s": elapsed})
        if self.teacher_cache is not None:
            rec["teacher_cache_hit"] = self.last_cache_hit  # this process's share of its English sentences
        if "ot" in terms:
            rec.update(self.last_ot)
            entropy, conv = self.last_ot["ot_plan_entropy"], self.last_ot["ot_converged"]
            if self.step == 1 and entropy > NEAR_UNIFORM and self.cfg.loss.ot.plan == "sinkhorn":
                warnings.warn(
                    f"OT plans are nearly uniform at step 1 (normalised entropy {entropy:.3f} at "
                    f"loss.ot.eps={self.cfg.loss.ot.eps}): the loss then pulls every student token towards "
                    "the mean teacher token instead of its translation; lower loss.ot.eps",
                    RuntimeWarning,
                    stacklevel=2,
                )
            if conv < MIN_CONVERGED and not self._warned_convergence:
                self._warned_convergence = True  # once per run; every step's fraction is in metrics.jsonl
                warnings.warn(
                    f"step {self.step}: only {conv:.0%} of the OT problems converged within loss.ot.max_iter="
                    f"{self.cfg.loss.ot.max_iter} (tol {self.cfg.loss.ot.tol}): raise max_iter, set "
                    "loss.ot.eps_scaling (e.g. 0.5) or raise eps; the loss is then inexact",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return rec

    # --- evaluation

    def heldout_metrics(self) -> dict:
        """The held-out signal on the first ``eval.heldout_sentences`` FLORES dev pairs of each
        trained language, student(lang) against teacher(English), and its mean over languages:
        ``heldout_cosine``, ``translation_gap`` and ``dev_recall@1`` (see :func:`heldout_scores`),
        each with a ``*_by_lang`` dict."""
        from optical_viz import data

        n = self.cfg.eval.heldout_sentences
        if self._heldout_en is None:
            en = data.load_flores("eng_Latn", split="dev", root=self.root).texts[:n]
            self._heldout_en = self.teacher.embed_sentences(en)  # (n, H), L2-normalised
        was_training = self.student.model.training
        self.student.model.eval()
        per_lang = {}
        try:
            for c in self.sampler.corpora:
                texts = data.load_flores(c.lang, split="dev", root=self.root).texts[:n]
                per_lang[c.lang] = heldout_scores(self.student.embed_sentences(texts), self._heldout_en)  # (n, H) each
        finally:
            self.student.model.train(was_training)
        out = {}
        for key, attr in HELDOUT_KEYS.items():
            by_lang = {lang: getattr(sc, attr) for lang, sc in per_lang.items()}
            out[key] = float(np.mean(list(by_lang.values())))
            out[f"{key}_by_lang"] = by_lang
        return out

    def evaluate(self) -> list[dict]:
        from optical_viz import retrieval

        e = self.cfg.eval
        langs = e.langs or [c.lang for c in self.sampler.corpora]
        was_training = self.student.model.training
        self.student.model.eval()
        try:
            # cache=False: the on-disk cache keys on the weights file, which training does not change
            report = retrieval.evaluate(
                e.task, student=self.student, teacher=self.teacher, langs=langs, split=e.split,
                root=self.root, cache=False, progress=False,
            )
        finally:
            self.student.model.train(was_training)
        return json.loads(report.frame.to_json(orient="records"))

    # --- checkpoints

    def save_student(self, config: DistillConfig, student_dir: Path) -> None:
        """The student as it is now, as a model directory with its training record
        (:func:`optical_viz.models.save_student`)."""
        save_student(self.acc.unwrap_model(self.model), self.student, config, student_dir,
                     corpora=self.sampler.corpora, steps=self.step)

    def save_checkpoint(self) -> Path:
        final = self.run_dir / "checkpoints" / f"step-{self.step}"
        # complete or absent; SHA256SUMS lets a resume catch a file truncated or edited later
        with atomic_directory(final, checksums=True) as tmp:
            self._write_checkpoint(tmp)
        self.drop_checkpoints(keep=self.cfg.keep_checkpoints)
        return final

    def drop_checkpoints(self, keep: int) -> None:
        """Delete all but the ``keep`` latest checkpoints."""
        old = sorted(list_checkpoints(self.run_dir), key=lambda p: int(p.name.split("-")[1]))[:-keep]
        for p in old:
            shutil.rmtree(p, ignore_errors=True)

    def _write_checkpoint(self, tmp: Path) -> None:
        import torch
        from safetensors.torch import save_file

        trainable = {n: p.detach().cpu().contiguous() for n, p in self.student.model.named_parameters() if p.requires_grad}
        save_file(trainable, str(tmp / "student.safetensors"))
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
        rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng.pt")
        state = {"step": self.step, "sampler": self.sampler.state_dict()}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))

    def load_checkpoint(self, path: Path) -> None:
        import torch
        from safetensors.torch import load_file

        tensors = load_file(str(path / "student.safetensors"))
        params = dict(self.student.model.named_parameters())
        missing = [n for n, p in params.items() if p.requires_grad and n not in tensors]
        if missing:
            raise ValueError(f"checkpoint {path} lacks trainable tensors {missing[:5]} (config changed?)")
        with torch.no_grad():
            for n, t in tensors.items():
                params[n].copy_(t)
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
        self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
        rng = torch.load(path / "rng.pt", weights_only=False)
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        state_path = path / "trainer_state.json"
        try:
            state = json.loads(state_path.read_text())
        except ValueError as exc:
            raise ValueError(f"{state_path} is not valid JSON ({exc}); resume from an earlier checkpoint") from None
        self.step = state["step"]
        self.sampler.load_state_dict(state["sampler"])


def distill(
    config: DistillConfig | dict | str | os.PathLike,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    output_dir: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    progress: bool = True,
) -> DistillResult:
    """Train a student as configured; see the module docstring for the run directory.

    config: a :class:`DistillConfig`, a mapping, or a YAML path.
    resume: continue ``output_dir`` from its last checkpoint (metrics equal those of an
        uninterrupted run); without it, an existing non-empty run directory is an error.
    max_steps: stop after this many optimizer steps in total (a checkpoint is written; the
        schedule still follows ``config.steps``), as if interrupted.
    output_dir: overrides ``config.output_dir``. root: the data root.
    """
    import torch

    config = _as_config(config)
    if output_dir is not None:
        config = dataclasses.replace(config, output_dir=str(output_dir))
    config.validate()
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    run_dir = Path(config.output_dir)

    # everything that can fail on bad input fails here, before any training
    corpora = load_training_data(config, root=root)
    from optical_viz import data

    config = dataclasses.replace(config, languages=[c.lang for c in corpora])
    for c in corpora:  # the held-out signal needs FLORES dev for every trained language
        data.load_flores(c.lang, split="dev", root=root)
    # one writer per run directory: the main process holds RUN/.lock for the whole run (the
    # other processes of an `accelerate launch` share it; RANK is set by the launcher)
    main = os.environ.get("RANK", "0") == "0"
    with RunLock(run_dir) if main else contextlib.nullcontext():
        ckpt = prepare_run_dir(config, run_dir, resume)
        if resume and ckpt is None:  # never started, or killed before its first checkpoint
            warnings.warn(f"{run_dir} has no checkpoint to resume from: training starts at step 0", stacklevel=2)
        threads = torch.get_num_threads()
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        try:
            return _distill(config, run_dir, corpora, ckpt, resume, max_steps, root, progress)
        finally:
            torch.set_num_threads(threads)


def _as_config(config) -> DistillConfig:
    if isinstance(config, (str, os.PathLike)):
        return DistillConfig.from_yaml(config)
    if isinstance(config, dict):
        return DistillConfig.from_dict(config)
    return config


def _accelerator(config: DistillConfig, cpu: bool):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedDataParallelKwargs

    from optical_viz.encoder import resolve_precision

    if AcceleratorState._shared_state and PartialState().num_processes == 1:
        # an earlier run in this process (a notebook) fixed the precision of accelerate's
        # singleton state; a single process may start afresh
        AcceleratorState._reset_state()
    precision = resolve_precision(config.precision, "cpu" if cpu else "cuda")  # "auto": bf16 only where native
    return Accelerator(
        cpu=cpu,
        mixed_precision="bf16" if precision == "bf16" else "no",
        # an OT loss on an inner layer leaves the layers above it without gradients
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=_leaves_layers_unused(config))],
    )


def build_trainer(
    config: DistillConfig | dict | str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    corpora: list[Corpus] | None = None,
) -> Trainer:
    """A :class:`Trainer` ready to step, on the CPU, in this process: the models loaded
    (teacher frozen, student trainable as configured), the RNGs seeded with ``config.seed``,
    nothing written (its checkpoints would go to ``config.output_dir``). For benchmarks and
    experiments on single steps; :func:`distill` runs whole trainings. ``config.num_threads``
    is not applied (torch's thread count is the caller's).

    config: a :class:`DistillConfig`, a mapping, or a YAML path. root: the data root.
    corpora: the bitext to draw batches from (default: ``load_training_data(config, root)``).

    >>> trainer = build_trainer("configs/quick.yaml")       # doctest: +SKIP
    >>> rec = trainer.train_step()                           # doctest: +SKIP
    >>> loss = trainer.compute_loss(trainer.sampler.next_batch()).total  # doctest: +SKIP
    """
    config = _as_config(config)
    if corpora is None:
        corpora = load_training_data(config, root=root)
    accelerator = _accelerator(config, cpu=True)
    _seed_everything(config.seed)
    models = load_models(config, accelerator.device)
    start = apply_start(config, models, corpora)
    return Trainer(config, Path(config.output_dir), corpora, models, accelerator, root=root, start=start)


def _distill(config, run_dir, corpora, ckpt, resume, max_steps, root, progress) -> DistillResult:
    import torch

    cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda requested but torch.cuda.is_available() is False")
    accelerator = _accelerator(config, cpu)
    # every process has checked the run directory (in distill) before the main one writes into it
    accelerator.wait_for_everyone()
    _seed_everything(config.seed)
    models = load_models(config, accelerator.device)
    # the start (a fitted linear map): a checkpoint holds the trained map, which replaces it
    start = apply_start(config, models, corpora, fit=ckpt is None)
    trainer = Trainer(config, run_dir, corpora, models, accelerator, root=root, start=start)
    main = accelerator.is_main_process

    metrics_path = run_dir / "metrics.jsonl"
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.to_yaml(run_dir / "config.yaml")
    if ckpt is not None:
        trainer.load_checkpoint(ckpt)
        trainer.metrics = [r for r in read_metrics(run_dir) if r["step"] <= trainer.step]
    elif resume:  # interrupted before the first checkpoint: start over
        trainer.metrics = []
    if main:  # drop records logged after the checkpoint (they will be recomputed)
        atomic_write(metrics_path, "".join(json.dumps(r) + "\n" for r in trainer.metrics))
    accelerator.wait_for_everyone()

    def log(rec: dict) -> None:
        trainer.metrics.append(rec)
        if main:
            with metrics_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")

    if trainer.step == 0 and not trainer.metrics and main:
        fit = trainer.start
        start = {} if fit is None else {"start_pairs": fit.pairs, "start_mse_before": fit.mse_before,
                                        "start_mse_after": fit.mse_after}
        log({"step": 0, **start, **trainer.heldout_metrics()})
    stop = min(config.steps, max_steps) if max_steps is not None else config.steps
    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=trainer.step, desc="distill", disable=not (progress and main), unit="step")
    e = config.eval
    while trainer.step < stop:
        rec = trainer.train_step()
        bar.update(1)
        bar.set_postfix(loss=f"{rec['loss']:.4f}")
        last = trainer.step == config.steps
        if main and (e.heldout_every and trainer.step % e.heldout_every == 0 or last):
            rec.update(trainer.heldout_metrics())
        if main and e.every and (trainer.step % e.every == 0 or last):
            rec["eval"] = trainer.evaluate()
        snapshot = run_dir / f"student-step-{trainer.step}"
        # a resumed run that recomputes step N has the same weights: an existing snapshot stays
        if main and trainer.step in config.snapshots and not snapshot.exists():
            trainer.save_student(config, snapshot)
        if trainer.step % config.log_every == 0 or last or "heldout_cosine" in rec or "eval" in rec:
            log(rec)
        if trainer.step % config.checkpoint_every == 0 or trainer.step == stop:
            accelerator.wait_for_everyone()
            if main:
                trainer.save_checkpoint()
            accelerator.wait_for_everyone()
    bar.close()

    student_dir = None
    if trainer.step >= config.steps:
        student_dir = run_dir / "student"
        if main:
            trainer.save_student(config, student_dir)
            # finished: the student holds the weights; the last checkpoint stays to extend the
            # run (older ones only guard an unfinished run against a damaged latest: ~0.25 GB each)
            trainer.drop_checkpoints(keep=1)
        accelerator.wait_for_everyone()
    written = read_metrics(run_dir) if main else trainer.metrics
    return DistillResult(run_dir=run_dir, student_dir=student_dir, steps=trainer.step, metrics=written)


def _leaves_layers_unused(config: DistillConfig) -> bool:
    return config.loss.terms == ["ot"] and config.loss.ot.layer != -1


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
