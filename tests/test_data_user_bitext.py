"""Your own bitext: TSV files and aligned text-file pairs, validated line by line, deduplicated,
their sha256 recorded in the run's provenance."""
from __future__ import annotations

import hashlib
import json

import pytest

from conftest import tiny_distill_config
from optical_viz.data import check_bitext_source, read_bitext_file
from optical_viz.distill import DistillConfig, distill, load_training_data


def _flores_pairs(data_root, lang="yor_Latn", split="dev"):
    from optical_viz.data import load_bitext

    bt = load_bitext(lang, source="flores", split=split, root=data_root)
    return list(zip(bt.src, bt.tgt))


def test_tsv_is_validated_deduplicated_and_hashed(data_root, tmp_path):
    pairs = _flores_pairs(data_root)[:20]
    lines = ["src\ttgt"] + [f"{a}\t{b}" for a, b in pairs]
    lines += [f"{pairs[0][0]}\t{pairs[0][1]}", f"\t{pairs[1][1]}", "Ọ̀rọ̀ kan\tThis English side is far, far longer than its source."]
    f = tmp_path / "yo-en.tsv"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.warns(UserWarning, match=r"21 pairs kept; 1 with an empty side dropped, 1 duplicates dropped, 1 length-ratio"):
        got = read_bitext_file(str(f), "yor_Latn")
    assert (got.pairs, got.empty, got.duplicates, got.ratio_outliers) == (21, 1, 1, 1)
    assert list(zip(got.src, got.tgt))[:20] == [(a.strip(), b.strip()) for a, b in pairs]
    assert got.sha256 == [hashlib.sha256(f.read_bytes()).hexdigest()]
    assert f"{f}:23: empty source side (dropped)" in got.issues  # line 1 is the header
    assert any(i.startswith(f"{f}:24: length ratio") for i in got.issues)


def test_malformed_tsv_names_its_lines(tmp_path):
    f = tmp_path / "bad.tsv"
    f.write_text("a\tb\nno tab here\nx\ty\tz\n")
    with pytest.raises(ValueError, match=r"bad.tsv: 2 line\(s\) without exactly one tab, e.g. line 2 \(0 tabs\), 3 \(2 tabs\)"):
        read_bitext_file(str(f), "yor_Latn")


def test_aligned_files_must_have_equal_lengths(data_root, tmp_path):
    pairs = _flores_pairs(data_root)[:10]
    (tmp_path / "t.yo").write_text("\n".join(a for a, _ in pairs) + "\n")
    (tmp_path / "t.en").write_text("\n".join(b for _, b in pairs[:9]) + "\n")
    entry = {"src": str(tmp_path / "t.yo"), "tgt": str(tmp_path / "t.en"), "lang": "yo"}
    with pytest.raises(ValueError, match=r"t.yo has 10 lines but .*t.en has 9"):
        read_bitext_file(entry, "yor_Latn")
    (tmp_path / "t.en").write_text("\n".join(b for _, b in pairs) + "\n")
    got = read_bitext_file(entry, "yor_Latn")
    assert got.pairs == 10 and len(got.sha256) == 2


def test_config_accepts_paths_and_names_what_is_wrong(tmp_path):
    f = tmp_path / "yo-en.tsv"
    f.write_text("a\tb\n")
    base = dict(languages=["yor_Latn"], output_dir=str(tmp_path / "run"))
    DistillConfig.from_dict({**base, "bitext_sources": ["flores", str(f)]})  # was: not among the named sources
    DistillConfig.from_dict({**base, "bitext_sources": [{"path": str(f), "lang": "yo"}]})
    with pytest.raises(ValueError, match=r"bitext_sources\[1\]: bitext source '.*missing.tsv' is not a file"):
        DistillConfig.from_dict({**base, "bitext_sources": ["flores", str(tmp_path / "missing.tsv")]})
    with pytest.raises(ValueError, match=r"bitext_sources\[0\]: bitext source 'opus' is not a file nor one of the named"):
        DistillConfig.from_dict({**base, "bitext_sources": ["opus"]})
    with pytest.raises(ValueError, match=r"a mapping needs \{path: TSV\}"):
        check_bitext_source({"file": str(f)})


def test_a_file_without_language_needs_a_single_language(tmp_path):
    f = tmp_path / "x.tsv"
    f.write_text("a b c\td e f\n")
    cfg = DistillConfig.from_dict(dict(languages=["yor_Latn", "hau_Latn"], bitext_sources=["flores", str(f)],
                                       output_dir=str(tmp_path / "run")))
    with pytest.raises(ValueError, match=r"does not say its language and the config has 2; write it as \{path: FILE, lang: CODE\}"):
        load_training_data(cfg)


def test_distill_on_your_own_bitext_records_its_sha256(data_root, tmp_path, tiny_model_dir):
    pairs = _flores_pairs(data_root)
    f = tmp_path / "my-yo-en.tsv"
    f.write_text("".join(f"{a}\t{b}\n" for a, b in pairs))
    # the provenance is the point, not the model: a tiny teacher and student train in a second
    cfg = tiny_distill_config(tmp_path / "run", bitext_sources=[str(f)], steps=2, max_length=16,
                              eval={"heldout_sentences": 4}, loss={"name": "contrastive"},
                              teacher=str(tiny_model_dir), student=str(tiny_model_dir))
    corpora = load_training_data(cfg, root=data_root)
    assert len(corpora[0].src) == len(set(pairs))
    result = distill(cfg, root=data_root, progress=False)
    info = json.loads((result.student_dir / "optical_viz_training.json").read_text())
    assert info["bitext_sources"] == [str(f)]
    [rec] = info["bitext_files"]
    assert rec["sha256"] == [hashlib.sha256(f.read_bytes()).hexdigest()] and rec["pairs"] == len(set(pairs))
    assert rec["lang"] == "yor_Latn" and rec["files"] == [str(f)]
