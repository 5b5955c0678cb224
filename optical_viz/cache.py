"""On-disk embedding cache, so that every sentence is encoded once per model.

An entry is keyed by ``sha256(identity, kind, layer, prefix, text)``. The identity is
``encoder.identity`` (a hash of the weights file, ``optical_viz.encoder``) plus a hash of
the weights *in memory* (:func:`model_identity`), so a changed model never reuses stale
vectors, whatever its name or path, even a student evaluated in the middle of training. Storage is one SQLite file
(``$OPTICAL_VIZ_HOME/embeddings/cache.sqlite``, safe for concurrent readers and
writers): sentence embeddings as float32, token embeddings of the real tokens as float16
(a (T, H) block per text, about 30 kB for a 40-token sentence of a 384-d model).

>>> cache = EmbeddingCache()
>>> x = cache.sentences(enc, ["Hello.", "Bonjour."], prefix="query: ")    # (2, H) float32
>>> toks = cache.tokens(enc, ["Hello."], prefix="query: ")                # [(T, H) float16]
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import numpy as np
import torch

from optical_viz import paths

__all__ = ["EmbeddingCache", "default_cache_path", "model_identity"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, rows INTEGER, cols INTEGER, dtype TEXT, data BLOB)"
_LOOKUP_CHUNK = 500  # SQLite's default limit on host parameters is 999


def default_cache_path() -> Path:
    return paths.home() / "embeddings" / "cache.sqlite"


_FINGERPRINTS: dict[int, tuple[tuple, str]] = {}


def model_identity(encoder) -> str:
    """``encoder.identity``, plus a blake2b hash of the parameters in memory when the encoder
    has a torch ``model``: weights changed in place (training) change the identity.

    The hash is recomputed only when a parameter's in-place version counter moved
    (about a second for a 118M-parameter model).
    """
    model = getattr(encoder, "model", None)
    if not isinstance(model, torch.nn.Module):
        return encoder.identity
    params = list(model.state_dict(keep_vars=True).items())
    versions = tuple((name, p._version, p.data_ptr()) for name, p in params)
    cached = _FINGERPRINTS.get(id(model))
    if cached is None or cached[0] != versions:
        h = hashlib.blake2b(digest_size=8)
        for name, p in params:
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy())  # no copy
        cached = _FINGERPRINTS[id(model)] = (versions, h.hexdigest())
    return f"{encoder.identity}:{cached[1]}"


class EmbeddingCache:
    """Sentence and token embeddings of an encoder, computed once and kept on disk.

    path: the SQLite file (default ``default_cache_path()``); ``":memory:"`` keeps it in RAM.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path not in (None, ":memory:") else path
        if self.path is None:
            self.path = default_cache_path()
        if self.path != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=60)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.commit()
        self.hits = 0
        self.misses = 0

    # ---- low level -------------------------------------------------------------------
    @staticmethod
    def key(identity: str, kind: str, layer: int, prefix: str, text: str) -> bytes:
        """The 32-byte key of one entry; the fields are separated by NUL bytes."""
        raw = "\0".join([identity, kind, str(layer), prefix, text]).encode("utf-8")
        return hashlib.sha256(raw).digest()

    def get_many(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        """The stored arrays of the keys present (absent keys are left out)."""
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, rows, cols, dtype, data in self._db.execute(
                f"SELECT key, rows, cols, dtype, data FROM emb WHERE key IN ({marks})", chunk
            ):
                found[key] = np.frombuffer(data, dtype=dtype).reshape(rows, cols)
        return found

    def put_many(self, items: dict[bytes, np.ndarray]) -> None:
        """Store 2-D arrays (1-D arrays are stored as one row)."""
        rows = []
        for key, arr in items.items():
            arr = np.ascontiguousarray(arr)
            arr2 = arr.reshape(1, -1) if arr.ndim == 1 else arr
            rows.append((key, arr2.shape[0], arr2.shape[1], arr2.dtype.str, arr2.tobytes()))
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM emb").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    # ---- encoder level ---------------------------------------------------------------
    def sentences(
        self,
        encoder,
        texts: list[str],
        *,
        prefix: str,
        layer: int = -1,
        batch_size: int = 64,
    ) -> torch.Tensor:
        """(N, H) float32 L2-normalised sentence embeddings, as ``encoder.embed_sentences``.

        Only texts not yet cached for this (identity, layer, prefix) are encoded, each once.
        """
        identity = model_identity(encoder)
        keys = [self.key(identity, "sentence", layer, prefix, t) for t in texts]
        found = self.get_many(list(dict.fromkeys(keys)))
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in found))
        self.hits += len(texts) - sum(k not in found for k in keys)
        self.misses += len(missing)
        if missing:
            emb = encoder.embed_sentences(missing, layer=layer, prefix=prefix, batch_size=batch_size, normalize=True)
            new = {
                self.key(identity, "sentence", layer, prefix, t): e.astype(np.float32)
                for t, e in zip(missing, emb.detach().cpu().numpy())
            }
            self.put_many(new)
            found.update({k: v.reshape(1, -1) for k, v in new.items()})
        return torch.from_numpy(np.concatenate([found[k] for k in keys], 0)) if texts else torch.empty(0, 0)

    def tokens(
        self,
        encoder,
        texts: list[str],
        *,
        prefix: str,
        layer: int = -1,
        batch_size: int = 32,
    ) -> list[np.ndarray]:
        """Per text, a (T_i, H) float16 array of the embeddings of its real tokens
        (as ``encoder.embed_tokens(...).embeddings[i][mask[i]]``, prefix and special tokens included)."""
        identity = model_identity(encoder)
        keys = [self.key(identity, "tokens", layer, prefix, t) for t in texts]
        found = self.get_many(list(dict.fromkeys(keys)))
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in found))
        self.hits += len(texts) - sum(k not in found for k in keys)
        self.misses += len(missing)
        if missing:
            batch = encoder.embed_tokens(missing, layer=layer, prefix=prefix, batch_size=batch_size)
            emb = batch.embeddings.detach().cpu()
            new = {
                self.key(identity, "tokens", layer, prefix, t): emb[i][batch.mask[i]].numpy().astype(np.float16)
                for i, t in enumerate(missing)
            }
            self.put_many(new)
            found.update(new)
        return [found[k] for k in keys]
