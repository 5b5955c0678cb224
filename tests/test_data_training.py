"""The bitext sampler of optical_viz.data.training: deterministic, resumable, epoch-covering,
with the language probabilities its sampling modes promise."""
from __future__ import annotations

import json

import numpy as np
import pytest

from optical_viz.data.training import BitextSampler, Corpus


def _corpora():
    return [Corpus("aaa_Latn", ["x"], [f"a{i}" for i in range(7)], [f"A{i}" for i in range(7)]),
            Corpus("bbb_Latn", ["x"], [f"b{i}" for i in range(30)], [f"B{i}" for i in range(30)])]


def test_sampler_is_deterministic_resumable_and_covers_epochs():
    s = BitextSampler(_corpora(), batch_size=6, seed=3, sampling="uniform", temperature=1.0)
    batches = [s.next_batch() for _ in range(20)]
    s2 = BitextSampler(_corpora(), batch_size=6, seed=3, sampling="uniform", temperature=1.0)
    for _ in range(8):
        s2.next_batch()
    state = json.loads(json.dumps(s2.state_dict()))
    s3 = BitextSampler(_corpora(), batch_size=6, seed=3, sampling="uniform", temperature=1.0)
    s3.load_state_dict(state)
    assert [s3.next_batch() for _ in range(12)] == batches[8:]
    # within an epoch a language's examples come without replacement
    a = [src for b in batches for lang, src, _ in b if lang == "aaa_Latn"]
    assert len(a) >= 14 and sorted(a[:7]) == sorted(f"a{i}" for i in range(7)) == sorted(a[7:14])
    assert all(src[1:] == tgt[1:] for b in batches for _, src, tgt in b)  # pairs stay aligned


def test_length_buckets_regroup_the_same_pairs_with_less_padding_and_resume():
    def sampler(k):
        return BitextSampler(_corpora(), batch_size=4, seed=3, sampling="uniform", temperature=1.0, length_buckets=k,
                             length=lambda pair: len(pair[1]))

    k, steps = 4, 12
    s = sampler(1)
    plain = [s.next_batch() for _ in range(steps)]
    s = sampler(k)
    bucketed = [s.next_batch() for _ in range(steps)]
    for g in range(0, steps, k):  # each k steps: the same pairs, only regrouped
        assert sorted(p for b in bucketed[g : g + k] for p in b) == sorted(p for b in plain[g : g + k] for p in b)
    assert bucketed != plain

    def padded(batches):  # positions of batches padded to their longest source
        return sum(len(b) * max(len(p[1]) for p in b) for b in batches)

    assert padded(bucketed) < padded(plain)
    for stop in (5, 8):  # mid-group and at a group boundary
        s2 = sampler(k)
        for _ in range(stop):
            s2.next_batch()
        s3 = sampler(k)
        s3.load_state_dict(json.loads(json.dumps(s2.state_dict())))
        assert [s3.next_batch() for _ in range(steps - stop)] == bucketed[stop:]
    with pytest.raises(ValueError, match="length_buckets must be >= 1"):
        sampler(0)


def test_sampler_language_probabilities():
    uni = BitextSampler(_corpora(), 4, 0, "uniform", 1.0).probs
    prop = BitextSampler(_corpora(), 4, 0, "proportional", 1.0).probs
    temp = BitextSampler(_corpora(), 4, 0, "temperature", 5.0).probs
    np.testing.assert_allclose(uni, [0.5, 0.5])
    np.testing.assert_allclose(prop, [7 / 37, 30 / 37])
    ref = np.array([7, 30]) ** 0.2
    np.testing.assert_allclose(temp, ref / ref.sum())
    s = BitextSampler(_corpora(), 8, 1, "proportional", 1.0)
    langs = [l for _ in range(500) for l, _, _ in s.next_batch()]
    assert abs(langs.count("bbb_Latn") / len(langs) - 30 / 37) < 0.02
