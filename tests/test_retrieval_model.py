"""Retrieval with the real default model on real data (two languages, FLORES dev)."""
from __future__ import annotations

import pytest

from optical_viz.cache import EmbeddingCache
from optical_viz.retrieval import compare, evaluate

# encoding 297 sentences: ~35 s of CPU on 2 free cores (220 s wall on a 5x oversubscribed machine)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flores_reports(encoder, data_root, tmp_path_factory):
    cache = EmbeddingCache(tmp_path_factory.mktemp("cache") / "cache.sqlite")  # cold: really encodes
    kw = dict(encoder=encoder, langs=["fr", "yo"], split="dev", root=data_root, cache=cache,
              n_bootstrap=300, progress=False)
    dense = evaluate("flores", **kw)
    misses = cache.misses
    again = evaluate("flores", **kw)
    return dense, again, misses, cache


def test_flores_dev_two_languages(flores_reports):
    dense, _, misses, _ = flores_reports
    assert misses == 3 * 99  # French, Yoruba and English dev sentences, each encoded once
    f = dense.frame.set_index(["lang", "direction"])
    assert list(f["n"]) == [99, 99, 99, 99, 198, 198]
    # e5-small retrieves French translations almost perfectly; Yoruba is harder but far above chance (1/99)
    assert f.loc[("fra_Latn", "xx->en"), "recall@1"] >= 0.95
    assert f.loc[("fra_Latn", "en->xx"), "recall@1"] >= 0.95
    assert 0.3 < f.loc[("yor_Latn", "xx->en"), "recall@1"] < f.loc[("fra_Latn", "xx->en"), "recall@1"]
    for (lang, direction), row in f.iterrows():
        lo, hi = row["recall@1_ci"]
        assert lo <= row["recall@1"] <= hi
        assert row["recall@1"] <= row["recall@5"] <= row["recall@10"]
        assert row["recall@1"] <= row["mrr@10"] <= row["recall@10"]


def test_second_run_comes_from_the_cache_with_identical_numbers(flores_reports):
    dense, again, misses, cache = flores_reports
    assert cache.misses == misses  # nothing re-encoded
    assert dense.frame["recall@1"].tolist() == again.frame["recall@1"].tolist()
    cmp = compare(dense, again)
    assert (cmp["p_value"] == 1.0).all()


def test_paired_test_separates_french_from_yoruba(flores_reports):
    """Different systems on the same queries: here French vs Yoruba queries for the same English
    targets (row i is the same sentence); French is clearly better."""
    from optical_viz.retrieval import paired_test

    dense = flores_reports[0]
    fra = dense.per_query[("fra_Latn", "xx->en")]["recall@1"]
    yor = dense.per_query[("yor_Latn", "xx->en")]["recall@1"]
    t = paired_test(yor, fra)
    assert t.delta > 0 and t.p_value < 0.01
