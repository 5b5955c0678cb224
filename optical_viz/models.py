"""The teacher and student of a distillation run: loaded, fed, and the student written out.

:func:`load_models` loads both encoders (the teacher frozen in eval mode, the student a
trainable copy with the configured layers frozen); :func:`apply_start` starts the student
as ``config.start`` says (a linear map to the teacher's space); :func:`tokenize` turns texts into
their padded inputs; :class:`TeacherCache` keeps the frozen teacher's hidden states per
English sentence, bounded in bytes; :func:`save_student` writes the trained student as a
model directory (``RUN/student/``) that ``load_encoder`` and sentence-transformers open.
The trainer (:mod:`optical_viz.distill`) is their main user (and re-exports ``TeacherCache``);
tools and tests that build a run's pieces by hand use them too.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from optical_viz.paths import TRAINING_INFO
from optical_viz.rundir import atomic_directory

if TYPE_CHECKING:
    from optical_viz.config import DistillConfig
    from optical_viz.data.training import Corpus
    from optical_viz.encoder import Encoder

__all__ = ["Models", "load_models", "apply_start", "set_checkpointing", "tokenize", "TeacherCache", "save_student"]


@dataclass
class Models:
    """The two encoders of a run (:func:`load_models`)."""

    teacher: object  # optical_viz.encoder.Encoder, frozen
    student: object  # optical_viz.encoder.Encoder, trainable copy


def load_models(config: DistillConfig, device) -> Models:
    """The teacher (frozen, eval mode) and the student (trainable as ``config`` says: frozen
    embeddings, ``train_layers``, ``dropout``) of ``config``, on ``device``; a model that cannot
    be loaded is a FileNotFoundError or ValueError naming its role."""
    import torch

    from optical_viz.encoder import load_encoder

    def load(role: str, name):
        try:
            return load_encoder(name, device=device)
        except OSError as exc:  # a missing directory or a hub id that is not cached
            raise FileNotFoundError(f"{role} model {name!r} cannot be loaded: {exc}") from None
        except ValueError as exc:  # no tokenizer, an unusable pooling, a device that is not there
            raise ValueError(f"{role} model {name!r} cannot be used: {exc}") from None

    for role in ("teacher", "student"):
        name = getattr(config, role)
        if name is not None and ("/" in name or os.sep in name or name.startswith(".")) and not Path(name).expanduser().exists():
            raise FileNotFoundError(f"{role} model directory {name} does not exist")
    teacher = load("teacher", config.teacher)
    student = load("student", config.student if config.student is not None else config.teacher)
    if teacher.hidden_size != student.hidden_size:
        # every loss compares student and teacher vectors (tokens for OT, sentences otherwise)
        raise ValueError(
            f"teacher {teacher.name!r} has hidden size {teacher.hidden_size} but student {student.name!r} has "
            f"{student.hidden_size}: loss {config.loss.name!r} compares their vectors directly; choose a student "
            f"with hidden size {teacher.hidden_size}"
        )
    teacher.model.eval()
    teacher.model.requires_grad_(False)
    if config.dropout is not None:
        for m in student.model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = config.dropout
    student.model.train()
    _select_trainable(student.model, config)
    return Models(teacher, student)


def apply_start(config: DistillConfig, models: Models, corpora, fit: bool = True):
    """Start the student as ``config.start`` says, before its optimizer is made.

    ``linear_map``: fit the map from the student's space to the teacher's on the first
    ``start.pairs`` pairs that a sampler with the run's seed draws from ``corpora`` (a
    sampler of its own: the training batches are those of a run without the start), and put
    it on the student's last layer, trainable. ``fit=False`` (resuming from a checkpoint,
    which holds the trained map) attaches the identity instead. Returns the
    :class:`optical_viz.linear_map.LinearMapFit`, or None (no fit)."""
    import torch

    from optical_viz.data.training import BitextSampler
    from optical_viz.linear_map import attach_linear_map, fit_linear_map

    start = config.start
    if start.method == "none":
        return None
    result = None
    if fit:
        sampler = BitextSampler(corpora, config.batch_size, config.seed, config.sampling, config.sampling_temperature)
        pairs = []
        while len(pairs) < start.pairs:
            pairs += sampler.next_batch()
        pairs = pairs[: start.pairs]
        was = models.student.progress, models.teacher.progress
        models.student.progress = models.teacher.progress = False
        models.student.model.eval()  # dropout off while the map is fitted
        try:
            result = fit_linear_map(models.student, models.teacher, [p[1] for p in pairs], [p[2] for p in pairs],
                                    ridge=start.ridge)
        finally:
            models.student.progress, models.teacher.progress = was
            models.student.model.train()
        weight = result.weight
    else:
        weight = torch.eye(models.student.hidden_size)
    attach_linear_map(models.student, weight)
    models.student.model.train()
    return result


def set_checkpointing(model, on: bool) -> None:
    """Turn activation (gradient) checkpointing of a transformers model on or off."""
    new = hasattr(model, "activation_checkpointing_enable")  # transformers >= 5
    if on:
        model.config.use_cache = False  # an encoder has no cache; avoids transformers' warning
        kw = {"use_reentrant": False}  # works with a frozen embedding table
        if new:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
    elif new:
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()


def _select_trainable(model, config: DistillConfig) -> None:
    """Freeze the word embeddings and/or the lower layers as configured."""
    model.requires_grad_(True)
    for name, p in model.named_parameters():
        if name.endswith("word_embeddings.weight") and config.freeze_embeddings:
            p.requires_grad_(False)
        if "pooler" in name:  # not used by the losses (they read hidden states)
            p.requires_grad_(False)
    if config.train_layers is not None:
        n_layers = model.config.num_hidden_layers
        # the start's linear map (optical_viz.linear_map.MappedModel) sits above the top layer
        keep = {f"layer.{i}." for i in range(n_layers - config.train_layers, n_layers)} | {"linear_map."}
        for name, p in model.named_parameters():
            if not any(k in name for k in keep):
                p.requires_grad_(False)


def tokenize(enc, texts: list[str], max_length: int, device):
    """``enc.prefix + text`` tokenized, truncated to ``max_length`` tokens (``</s>`` kept),
    padded to the longest -> input_ids (B, T) long, attention_mask (B, T) long (1 on real tokens)."""
    batch = enc.tokenizer(
        [enc.prefix + t for t in texts],
        add_special_tokens=True,
        truncation=True,
        max_length=min(max_length, enc.max_length),
        padding=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)



class TeacherCache:
    """The frozen teacher's hidden states per English sentence, in memory, bounded in bytes.

    An entry is ``(L, K, H)``: the sentence's L real tokens (padding trimmed), the K hidden
    layers the loss reads (in ``layers`` order), as the teacher computed them (its dtype and
    device). Entries are valid for one tokenization and one set of layers (``signature``):
    :meth:`check` empties the cache when that changes. Least recently used entries go first
    when ``max_bytes`` would be exceeded; an entry larger than the bound is not kept. Each
    process of a multi-process run has its own cache (nothing is shared).
    """

    def __init__(self, max_bytes: int):
        from collections import OrderedDict

        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.entries: OrderedDict = OrderedDict()  # text -> (L, K, H) tensor
        self.bytes = 0
        self.signature = None
        self.hits = 0
        self.lookups = 0

    def check(self, signature) -> None:
        """Empty the cache unless its entries were made under ``signature`` (e.g. max_length, layers)."""
        if signature != self.signature:
            self.entries.clear()
            self.bytes = 0
            self.signature = signature

    def get(self, text: str):
        self.lookups += 1
        entry = self.entries.get(text)
        if entry is not None:
            self.hits += 1
            self.entries.move_to_end(text)
        return entry

    def put(self, text: str, entry) -> None:
        size = entry.numel() * entry.element_size()
        if size > self.max_bytes or text in self.entries:
            return
        while self.bytes + size > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()
        self.entries[text] = entry
        self.bytes += size

    @property
    def hit_rate(self) -> float:
        """Hits over lookups since the cache was made (0 before any lookup)."""
        return self.hits / self.lookups if self.lookups else 0.0


def save_student(model, student: Encoder, config: DistillConfig, student_dir: Path, *,
                 corpora: list[Corpus], steps: int) -> None:
    """Write the student ``model`` (unwrapped from accelerate; its tokenizer, prefix and length
    are ``student``'s) as a model directory (atomically) that load_encoder and
    sentence-transformers open, with its training record: ``config``, the ``corpora`` it was
    trained on and its ``steps``."""
    with atomic_directory(student_dir) as tmp:
        _write_student(model, student, config, tmp, corpora, steps)


def _write_student(model, student: Encoder, config: DistillConfig, tmp: Path, corpora, steps: int) -> None:
    from optical_viz.convert import write_sentence_transformers_files

    from optical_viz.linear_map import MappedModel, write_dense

    mapped = isinstance(model, MappedModel)
    if mapped:  # the start's linear map: a Dense module after the pooling (it commutes with mean pooling)
        write_dense(tmp, model.linear_map)
        model = model.transformer
    model.save_pretrained(tmp, safe_serialization=True)
    student.tokenizer.save_pretrained(tmp)
    # sentence-transformers files: SentenceTransformer(student_dir) encodes as load_encoder does
    # (mean pooling is what the losses trained, whatever the initial model pooled by)
    write_sentence_transformers_files(
        tmp, hidden_size=model.config.hidden_size, prefix=student.prefix, max_length=student.max_length,
        dense=mapped,
    )
    info = {
        "languages": [c.lang for c in corpora],
        "bitext_sources": list(config.bitext_sources),
        "bitext_files": [f for c in corpora for f in c.files],  # user files: sha256, counts
        "bitext_split": config.bitext_split,
        "loss": config.loss.name,
        "steps": steps,
        "teacher": config.teacher,
        "student_init": config.student if config.student is not None else config.teacher,
        "start": dataclasses.asdict(config.start),
        "seed": config.seed,
        "prefix": student.prefix,  # the input prefix it was trained with ("query: " for e5)
    }
    (tmp / TRAINING_INFO).write_text(json.dumps(info, indent=1) + "\n")
