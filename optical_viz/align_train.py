"""Alignment fine-tuning on bitext: awesome-align's self-training objective, OT plans as targets.

For a translation pair, the model being trained gives token states ``x`` (T, H) and ``y``
(S, H) at ``layer``; the targets are the hard links ``A`` (T, S) that the toolkit's aligner
reads off the (detached) states with ``method`` / ``extraction`` (by default the
leave-one-pair-out setting of :mod:`optical_viz.alignment`); the loss is the self-training
objective of awesome-align (Dou & Neubig 2021, "SO"), with both softmaxes of the raw
similarity ``x . y`` (the "dot" plan)::

    L = -1 / (2 |A|) * sum_ts A_ts * (log softmax_s(x . y)_ts + log softmax_t(x . y)_ts)

so that the softmax extraction of the "dot" plan, and the argmax of the similarity, agree
with the OT links. Only content tokens (tokens of a word) take part. Trained on bitext
(``bitext_sources``, as in a distillation config: the RQ1 FLORES train split by default),
never on a gold word-alignment set. The student directory opens with ``load_encoder``,
``optical-viz align --model`` and ``optical-viz evaluate alignment --model``.

>>> cfg = AlignTrainConfig.from_yaml("configs/align-train.yaml")
>>> res = align_train(cfg, "runs/align")                 # doctest: +SKIP
>>> res.student_dir, res.losses[:2]                        # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import typing
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from pydantic.dataclasses import dataclass as _pdataclass

from optical_viz.config import STRICT, BitextSource, Float, Int, Str, choice, parse, parse_yaml
from optical_viz.options import ALIGNERS, EXTRACTIONS, AlignConfig

__all__ = ["AlignTrainConfig", "AlignTrainResult", "self_training_loss", "link_targets", "align_train"]

MAX_PAIRS = 20_000  # the budget: at most 20k bitext pairs


@dataclasses.dataclass
class AlignTrainResult:
    """student_dir: the model directory; losses: the training loss of each step."""

    student_dir: Path
    losses: list[float]
    pairs: int


@_pdataclass(config=STRICT)
class AlignTrainConfig:
    """One alignment fine-tuning run (YAML on disk, saved next to the student).

    model: the model to fine-tune (None: the converted default model); languages and
    bitext_sources / bitext_split: the training bitext as in a distillation config (never a
    gold set); max_pairs: bitext pairs used (<= 20,000, shuffled with ``seed``); layer,
    method, eps, extraction, threshold: the aligner that makes the targets (None: that of
    ``AlignConfig()``, the setting ``optical-viz align`` uses; see :meth:`resolved`); prefix:
    the input prefix ("" as the aligner reads).
    """

    languages: typing.List[Str]
    bitext_sources: typing.List[BitextSource] = dataclasses.field(default_factory=lambda: ["flores"])
    bitext_split: Str = "train"
    model: Optional[Str] = None
    max_pairs: Int = MAX_PAIRS
    layer: Optional[Int] = None
    method: Optional[choice(ALIGNERS)] = None
    eps: Optional[Float] = None
    extraction: Optional[choice(EXTRACTIONS)] = None
    threshold: Optional[Float] = None
    prefix: Str = ""
    batch_size: Int = 8
    max_length: Int = 64
    steps: Int = 200
    lr: Float = 2e-5
    weight_decay: Float = 0.0
    freeze_embeddings: bool = True
    seed: Int = 0

    def __post_init__(self):
        if not 1 <= self.max_pairs <= MAX_PAIRS:
            raise ValueError(f"max_pairs must be in [1, {MAX_PAIRS}], got {self.max_pairs}")
        for name in ("batch_size", "steps", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    @classmethod
    def from_dict(cls, data: dict) -> "AlignTrainConfig":
        return parse(cls, data, what="alignment fine-tuning config")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "AlignTrainConfig":
        return parse_yaml(cls, path, what="alignment fine-tuning config")

    def resolved(self) -> AlignConfig:
        """The aligner that makes the targets: ``AlignConfig()`` with this config's method, eps,
        layer, extraction and threshold where they are given."""
        return AlignConfig.with_options(method=self.method, eps=self.eps, layer=self.layer, extraction=self.extraction,
                                        threshold=self.threshold)


# --------------------------------------------------------------------------- the objective


def self_training_loss(x: Tensor, y: Tensor, x_mask: Tensor, y_mask: Tensor, targets: Tensor) -> Tensor:
    """awesome-align's self-training loss (scalar) for a batch.

    x (B, T, H), y (B, S, H) token states; x_mask (B, T), y_mask (B, S) bool, True on the
    tokens that take part; targets (B, T, S) {0, 1}, zero outside the masks.
    Returns -sum(A * (log softmax over S + log softmax over T)) / (2 |A|) of the logits x . y
    (0 when there is no target link).
    """
    if x.dim() != 3 or y.dim() != 3 or targets.shape != (x.shape[0], x.shape[1], y.shape[1]):
        raise ValueError(f"x (B, T, H), y (B, S, H), targets (B, T, S) expected, got {tuple(x.shape)}, "
                         f"{tuple(y.shape)}, {tuple(targets.shape)}")
    pair = x_mask[:, :, None] & y_mask[:, None, :]  # (B, T, S)
    logits = torch.einsum("bth,bsh->bts", x, y).masked_fill(~pair, -1e4)  # (B, T, S); -1e4: no 0 * -inf
    rows = torch.log_softmax(logits, dim=2)  # over target tokens
    cols = torch.log_softmax(logits, dim=1)  # over source tokens
    a = targets.to(logits.dtype) * pair
    n = a.sum()
    if n == 0:
        return logits.sum() * 0.0
    return -(a * (rows + cols)).sum() / (2 * n)


def link_targets(x: Tensor, y: Tensor, x_mask: Tensor, y_mask: Tensor, method: str, eps: float, extraction: str,
                 threshold: float | None = None, **solver_kw) -> Tensor:
    """(B, T, S) float {0, 1}: the hard links of the toolkit's aligner on detached states
    (content tokens only, as in :func:`optical_viz.alignment.plans`)."""
    from optical_viz.alignment import extract_links, plans

    with torch.no_grad():
        p = plans(x.detach().float(), y.detach().float(), x_mask, y_mask, method, eps, **solver_kw)  # (B, T, S)
    out = torch.zeros(p.shape, dtype=x.dtype, device=x.device)
    for i in range(p.shape[0]):
        ti, si = x_mask[i].nonzero().squeeze(1), y_mask[i].nonzero().squeeze(1)  # content positions
        if len(ti) == 0 or len(si) == 0:
            continue
        sub = p[i][ti][:, si]  # (t, s) content tokens only
        for t, s in extract_links(sub, extraction, threshold):
            out[i, ti[t], si[s]] = 1.0
    return out


# --------------------------------------------------------------------------- training


def _bitext(config: AlignTrainConfig, root=None) -> list[tuple[str, str]]:
    """(language side, English) pairs of every configured language, shuffled, at most max_pairs."""
    from optical_viz.data.training import load_training_data

    corpora = load_training_data(config, root)
    pairs = [(s, t) for c in corpora for s, t in zip(c.src, c.tgt) if s.strip() and t.strip()]
    random.Random(config.seed).shuffle(pairs)
    return pairs[: config.max_pairs]


def align_train(config: AlignTrainConfig, out: str | os.PathLike, *, steps: int | None = None, root=None,
                progress: bool = True) -> AlignTrainResult:
    """Fine-tune ``config.model`` for ``steps`` (default ``config.steps``) and write the student
    directory ``out/student`` (with ``align_train.yaml``, ``metrics.jsonl``)."""
    from tqdm.auto import tqdm

    from optical_viz.convert import write_sentence_transformers_files
    from optical_viz.encoder import load_encoder
    from optical_viz.paths import TRAINING_INFO
    from optical_viz.rundir import atomic_directory

    torch.manual_seed(config.seed)
    steps = config.steps if steps is None else steps
    s = config.resolved()
    pairs = _bitext(config, root)
    if not pairs:
        raise ValueError("no bitext pair to train on")
    enc = load_encoder(config.model)
    model = enc.model
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    if config.freeze_embeddings and hasattr(model, "embeddings"):
        for p in model.embeddings.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    losses = []
    order = list(range(len(pairs)))
    k = 0
    log = open(out / "metrics.jsonl", "w", encoding="utf-8")
    try:
        for step in tqdm(range(steps), desc="align-train", disable=not progress):
            batch = [pairs[order[(k + j) % len(order)]] for j in range(config.batch_size)]
            k += config.batch_size
            loss = _step_loss(enc, batch, s, config)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            log.write(json.dumps({"step": step + 1, "loss": losses[-1]}) + "\n")
            log.flush()
    finally:
        log.close()
    model.eval()
    with atomic_directory(out / "student") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        enc.tokenizer.save_pretrained(tmp)
        write_sentence_transformers_files(tmp, hidden_size=enc.hidden_size, prefix=enc.prefix, max_length=enc.max_length)
        info = {"languages": list(config.languages), "bitext_sources": list(config.bitext_sources),
                "bitext_split": config.bitext_split, "loss": "align-self-training", "steps": steps,
                "pairs": len(pairs), "aligner": s.to_dict(), "student_init": config.model,
                "seed": config.seed, "prefix": enc.prefix}
        (tmp / TRAINING_INFO).write_text(json.dumps(info, indent=1) + "\n")
        import yaml

        saved = {**dataclasses.asdict(config), "steps": steps}  # the steps run, --steps included
        (tmp / "align_train.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    return AlignTrainResult(out / "student", losses, len(pairs))


def _step_loss(enc, batch: list[tuple[str, str]], s: AlignConfig, config: AlignTrainConfig) -> Tensor:
    """The self-training loss of one batch of (source, English) pairs, with gradients."""
    srcs, tgts = [b[0] for b in batch], [b[1] for b in batch]
    states, masks = [], []
    for texts in (srcs, tgts):
        tok = enc.tokenizer([config.prefix + t for t in texts], add_special_tokens=True, truncation=True,
                            max_length=config.max_length, padding=True, return_tensors="pt")
        content = enc.content_mask(texts, max_length=config.max_length, prefix=config.prefix)  # (B, T) bool
        h = enc.hidden_states(tok["input_ids"], tok["attention_mask"].bool(), s.layer)  # (B, T, H)
        states.append(h)
        masks.append(content[:, : h.shape[1]].to(h.device))
    (x, y), (xm, ym) = states, masks
    targets = link_targets(x, y, xm, ym, s.method, s.eps, s.extraction, s.threshold, **s.solver_kw)
    return self_training_loss(x, y, xm, ym, targets)


def loss_on(config: AlignTrainConfig, enc, batch: list[tuple[str, str]]) -> float:
    """The self-training loss of ``batch`` under ``enc`` (no gradients): a check of training."""
    with torch.no_grad():
        return float(_step_loss(enc, batch, config.resolved(), config))
