"""The embedding cache: each text encoded once per model, invalidated when the model changes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from optical_viz.cache import EmbeddingCache

H = 6


@dataclass
class _Tokens:
    embeddings: torch.Tensor  # (B, T, H)
    mask: torch.Tensor  # (B, T)


class FakeEncoder:
    """Deterministic stand-in for an Encoder: the vectors depend on (weights seed, prefix, text)
    and every call records the texts it had to encode."""

    prefix = "query: "

    def __init__(self, seed: int):
        self.seed = seed
        self.identity = f"fake-{seed}"
        self.name = self.identity
        self.calls: list[str] = []

    def _vec(self, text: str, j: int = 0) -> np.ndarray:
        rng = np.random.default_rng([self.seed, j, *map(ord, text)])
        return rng.normal(size=H)

    def embed_sentences(self, texts, layer=-1, prefix=None, batch_size=64, normalize=True):
        self.calls.extend(texts)
        x = torch.tensor(np.stack([self._vec(prefix + t) for t in texts]), dtype=torch.float32)
        return torch.nn.functional.normalize(x, dim=-1)

    def embed_tokens(self, texts, layer=-1, prefix=None, batch_size=32):
        self.calls.extend(texts)
        lens = [len((prefix + t).split()) for t in texts]
        emb = torch.zeros(len(texts), max(lens), H)
        mask = torch.zeros(len(texts), max(lens), dtype=torch.bool)
        for i, (t, n) in enumerate(zip(texts, lens)):
            emb[i, :n] = torch.tensor(np.stack([self._vec(prefix + t, j) for j in range(n)]), dtype=torch.float32)
            mask[i, :n] = True
        return _Tokens(emb, mask)


def test_sentences_encoded_once_and_reused_from_disk(tmp_path):
    texts = ["a b", "c", "a b", "d e f"]
    enc = FakeEncoder(0)
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    first = cache.sentences(enc, texts, prefix="query: ")
    assert first.shape == (4, H) and first.dtype == torch.float32
    assert enc.calls == ["a b", "c", "d e f"]  # the duplicate is encoded once
    torch.testing.assert_close(first[0], first[2])
    torch.testing.assert_close(first, enc.embed_sentences(texts, prefix="query: "))
    cache.close()

    enc2 = FakeEncoder(0)  # same weights, new process: everything comes from disk
    again = EmbeddingCache(tmp_path / "c.sqlite").sentences(enc2, texts[::-1], prefix="query: ")
    assert enc2.calls == []
    torch.testing.assert_close(again, first.flip(0))


def test_changed_model_prefix_or_layer_is_not_reused(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    old, new = FakeEncoder(0), FakeEncoder(1)
    a = cache.sentences(old, ["x y"], prefix="query: ")
    b = cache.sentences(new, ["x y"], prefix="query: ")
    assert new.calls == ["x y"]
    assert not torch.allclose(a, b)
    torch.testing.assert_close(b, new.embed_sentences(["x y"], prefix="query: "))
    cache.sentences(old, ["x y"], prefix="passage: ")
    cache.sentences(old, ["x y"], prefix="query: ", layer=3)
    assert old.calls == ["x y"] * 3
    assert len(cache) == 4


def test_token_blocks_roundtrip_in_float16(tmp_path):
    enc = FakeEncoder(0)
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    texts = ["one two three", "four"]
    blocks = cache.tokens(enc, texts, prefix="query: ")
    direct = enc.embed_tokens(texts, prefix="query: ")
    assert [b.shape for b in blocks] == [(4, H), (2, H)]  # "query:" is a token of the fake encoder
    assert all(b.dtype == np.float16 for b in blocks)
    for i, b in enumerate(blocks):
        np.testing.assert_allclose(b, direct.embeddings[i][direct.mask[i]].numpy(), atol=2e-3)
    enc.calls.clear()
    again = cache.tokens(enc, texts, prefix="query: ")
    assert enc.calls == []
    for x, y in zip(blocks, again):
        np.testing.assert_array_equal(x, y)


class TorchEncoder(FakeEncoder):
    """A fake whose vectors come from a torch module, like a student being trained."""

    def __init__(self):
        super().__init__(0)
        torch.manual_seed(0)
        self.model = torch.nn.Linear(H, H)

    def embed_sentences(self, texts, layer=-1, prefix=None, batch_size=64, normalize=True):
        x = super().embed_sentences(texts, layer, prefix, batch_size, normalize)
        with torch.no_grad():
            return torch.nn.functional.normalize(self.model(x), dim=-1)


def test_weights_changed_in_memory_are_a_new_model(tmp_path):
    """encoder.identity hashes the weights *file*; a student trained in memory keeps it, so the
    cache must also notice in-place updates of the parameters."""
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    enc = TorchEncoder()
    before = cache.sentences(enc, ["a b"], prefix="query: ")
    assert cache.sentences(enc, ["a b"], prefix="query: ").equal(before) and enc.calls == ["a b"]
    with torch.no_grad():
        enc.model.weight.add_(0.5)  # an optimizer step
    after = cache.sentences(enc, ["a b"], prefix="query: ")
    assert enc.calls == ["a b", "a b"]
    torch.testing.assert_close(after, enc.embed_sentences(["a b"], prefix="query: "))
    assert not torch.allclose(before, after)
    # a fresh copy with the same weights (another process) shares the entries
    twin = TorchEncoder()
    with torch.no_grad():
        twin.model.weight.add_(0.5)
    twin.calls.clear()
    torch.testing.assert_close(cache.sentences(twin, ["a b"], prefix="query: "), after)
    assert twin.calls == []
