"""The rebuilt tokenizer gives exactly the ids of the original multilingual-e5-small tokenizer."""
from __future__ import annotations

import csv
import unicodedata
from pathlib import Path

import pytest

N_PER_VARIETY = 50
SPLITS = ("dev.tsv", "test.tsv", "train.tsv")  # the first 50 sentences, in this order


def flores_first_sentences(data_root: Path, n: int = N_PER_VARIETY) -> dict[str, list[str]]:
    """variety -> its first ``n`` FLORES sentences (dev, then test, then train)."""
    root = data_root / "flores200" / "annotated"
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        texts: list[str] = []
        for split in SPLITS:
            with open(d / split, newline="", encoding="utf-8") as f:
                texts += [row["text"] for row in csv.DictReader(f, delimiter="\t")]
            if len(texts) >= n:
                break
        out[d.name] = texts[:n]
    return out


@pytest.fixture(scope="module")
def flores(data_root) -> dict[str, list[str]]:
    out = flores_first_sentences(data_root)
    assert len(out) == 205 and all(len(v) == N_PER_VARIETY for v in out.values())
    return out


@pytest.fixture(scope="module")
def ours(default_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir)


@pytest.fixture(scope="module")
def reference(reference_tokenizer_path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(reference_tokenizer_path))


def _mismatches(ours, reference, texts: list[str]) -> list[str]:
    got = ours(texts)["input_ids"]
    want = [e.ids for e in reference.encode_batch(texts)]
    return [t for t, a, b in zip(texts, got, want) if a != b]


@pytest.mark.parametrize("form", ["as-is", "NFD"])
def test_flores_ids_identical_to_the_original(flores, ours, reference, form):
    texts = [t for v in flores.values() for t in v]
    if form == "NFD":
        texts = [unicodedata.normalize("NFD", t) for t in texts]
        assert sum(t != u for t, u in zip(texts, (x for v in flores.values() for x in v))) > 1000
    bad = _mismatches(ours, reference, texts)
    assert len(texts) == 205 * N_PER_VARIETY
    assert bad == [], f"{len(bad)} of {len(texts)} differ, e.g. {bad[:3]!r}"


EDGE_CASES = [
    "",
    " ",
    "  two  leading and trailing  ",
    "tab\tnew\nline\r\nform\x0cfeed",
    "control\x01\x02\x7f chars",
    "zero\u200bwidth\u200c\u200djoiners\ufeff",
    "ﬁ ﬂ ｆｕｌｌｗｉｄｔｈ ① ㍿ ⅷ",
    "e\u0301 e\u0300\u0323 e\u0323\u0300 \u1100\u1161\u11a8 \u0cad\u0cc6\u0cd5",
    "ا\u0651\u0650 ع\u0650\u0651",
    "<s> <mask> </s> <pad>",
    "a" * 300,
    "🙂👍🏽 emoji 🇳🇬",
    "\u2581already metaspace",
]


def test_edge_cases_identical_to_the_original(ours, reference):
    assert _mismatches(ours, reference, EDGE_CASES) == []


def test_vocabulary_and_scores_are_the_original(default_model_dir, reference_tokenizer_path):
    import json

    ours = json.loads((default_model_dir / "tokenizer.json").read_text())["model"]
    ref = json.loads(reference_tokenizer_path.read_text())["model"]
    assert [p for p, _ in ours["vocab"]] == [p for p, _ in ref["vocab"]]
    assert max(abs(a - b) for (_, a), (_, b) in zip(ours["vocab"], ref["vocab"])) < 1e-6
    assert ours["unk_id"] == ref["unk_id"] == 3
