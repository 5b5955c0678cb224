"""Loaders against the real data sets, checked with independent readers (pandas, plain file reads)."""
from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest

from optical_viz.data import (
    CorruptDataError,
    MissingDataError,
    languages,
    load_bitext,
    load_flores,
    load_word_alignment,
    load_xquad,
    load_xquad_r,
    word_alignment_pairs,
)
from optical_viz.data.languages import MAFAND_CODES, TATOEBA_CODES


def _lines(path):
    return path.read_text(encoding="utf-8").rstrip("\n").split("\n")


# --------------------------------------------------------------------------- FLORES


@pytest.mark.parametrize("split, n", [("train", 701), ("dev", 99), ("test", 204), ("dev+test", 303), ("all", 1004)])
def test_flores_split_sizes(data_root, split, n):
    fl = load_flores("yor_Latn", split, root=data_root)
    assert fl.lang == "yor_Latn" and fl.split == split
    assert len(fl.ids) == len(fl.texts) == len(fl.categories) == n
    assert fl.ids == sorted(set(fl.ids))


def test_flores_matches_pandas_and_undoes_csv_quoting(data_root):
    frames = [pd.read_csv(data_root / "flores200/annotated/eng_Latn" / f"{s}.tsv", sep="\t") for s in ("train", "dev", "test")]
    ref = pd.concat(frames).sort_values("index_id")
    fl = load_flores("en", "all", root=data_root)
    assert fl.ids == ref["index_id"].tolist()
    assert fl.texts == ref["text"].tolist()
    assert fl.categories == ref["category"].tolist()
    quoted = fl.texts[fl.ids.index(76)]  # stored as "...was the ""settled law of the land"", ..."
    assert '"settled law of the land"' in quoted and not quoted.startswith('"')


def test_flores_bitext_is_aligned_by_index_id(data_root):
    bt = load_bitext("yo", "flores", "dev", root=data_root)
    yor, eng = load_flores("yor_Latn", "dev", root=data_root), load_flores("eng_Latn", "dev", root=data_root)
    assert (bt.lang, bt.tgt_lang, len(bt)) == ("yor_Latn", "eng_Latn", 99)
    assert bt.src == yor.texts and bt.tgt == eng.texts and yor.ids == eng.ids
    fr = load_bitext("yor", "flores", "dev", root=data_root, pivot="fr")
    assert fr.tgt_lang == "fra_Latn" and fr.src == bt.src and fr.tgt != bt.tgt


def test_flores_bad_split(data_root):
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        load_flores("yor", "valid", root=data_root)


# --------------------------------------------------------------------------- NLLB-Seed


def test_nllb_seed(data_root):
    langs = languages("nllb_seed", root=data_root)
    assert len(langs) == 40 and "eng_Latn" not in langs and "zgh_Tfng" in langs
    bt = load_bitext("zgh", "nllb_seed", root=data_root)
    seed = data_root / "nllb_seed/seed"
    assert bt.src == _lines(seed / "zgh_Tfng") and bt.tgt == _lines(seed / "eng_Latn")
    assert len(bt) == 6193 and bt.split == "train"
    with pytest.raises(ValueError, match="unknown split 'test'"):
        load_bitext("zgh", "nllb_seed", "test", root=data_root)
    with pytest.raises(ValueError, match="English only"):
        load_bitext("zgh", "nllb_seed", root=data_root, pivot="fra_Latn")


# --------------------------------------------------------------------------- MAFAND-MT


def test_mafand_english_and_french_centred_pairs(data_root):
    assert len(languages("mafand", root=data_root)) == 15
    assert languages("mafand", root=data_root, pivot="fr") == [
        "bam_Latn", "bbj_Latn", "ewe_Latn", "fon_Latn", "mos_Latn", "wol_Latn"]
    base = data_root / "mafand_mt/data/text_files"
    bt = load_bitext("sw", "mafand", "train", root=data_root)
    assert bt.lang == "swh_Latn" and bt.src == _lines(base / "en-swa/train.swa") and bt.tgt == _lines(base / "en-swa/train.en")
    luo = load_bitext("luo", "mafand", "all", root=data_root)  # folder en_luo, with an underscore
    assert len(luo) == sum(len(_lines(base / f"en_luo/{s}.luo")) for s in ("train", "dev", "test"))
    with pytest.raises(ValueError, match=r"fra_Latn \(folder fr-wol\).*pivot='fra_Latn'"):
        load_bitext("wol", "mafand", root=data_root)
    wol = load_bitext("wol", "mafand", "dev", root=data_root, pivot="fra_Latn")
    assert wol.tgt_lang == "fra_Latn" and wol.tgt == _lines(base / "fr-wol/dev.fr")
    with pytest.raises(ValueError, match="no train split for amh_Ethi .*available: dev, test"):
        load_bitext("amh", "mafand", "train", root=data_root)
    with_train = languages("mafand", root=data_root, split="train")
    assert set(languages("mafand", root=data_root)) - set(with_train) == {
        "amh_Ethi", "kin_Latn", "nya_Latn", "sna_Latn", "xho_Latn"}
    for lang in with_train:  # the filter agrees with the files on disk
        native = {v: k for k, v in MAFAND_CODES.items()}[lang]
        assert list(base.glob(f"*[-_]{native}/train.{native}"))
    assert languages("mafand", root=data_root, split="dev+test") == languages("mafand", root=data_root)


def test_languages_split_and_source_errors(data_root):
    assert len(languages("flores", root=data_root, split="dev+test")) == 204
    assert len(languages("nllb_seed", root=data_root, split="train")) == 40
    with pytest.raises(ValueError, match="unknown split 'test': expected one of train"):
        languages("nllb_seed", root=data_root, split="test")
    with pytest.raises(ValueError, match="word_alignment_pairs"):
        languages("word_alignment", root=data_root)
    with pytest.raises(ValueError, match="unknown data set 'opus'"):
        languages("opus", root=data_root)


# --------------------------------------------------------------------------- Tatoeba


def test_tatoeba(data_root):
    files = sorted(p.name for p in (data_root / "tatoeba").glob("tatoeba.*-eng.*") if not p.name.endswith(".eng"))
    native = [re.match(r"tatoeba\.(\w+)-eng", f)[1] for f in files]
    assert sorted(native) == sorted(TATOEBA_CODES)  # every file is mapped
    assert languages("tatoeba", root=data_root) == sorted(TATOEBA_CODES.values())
    for code, native_code in [("cmn", "cmn"), ("ara", "ara"), ("sq", "sqi"), ("lfn", "lfn")]:
        bt = load_bitext(code, "tatoeba", root=data_root)
        assert bt.split == "test" and bt.lang == TATOEBA_CODES[native_code]
        assert bt.src == _lines(data_root / f"tatoeba/tatoeba.{native_code}-eng.{native_code}")
        assert bt.tgt == _lines(data_root / f"tatoeba/tatoeba.{native_code}-eng.eng")
    with pytest.raises(ValueError, match="unknown split 'train'.*test"):
        load_bitext("deu", "tatoeba", "train", root=data_root)
    with pytest.raises(ValueError, match="tatoeba: language 'yor'.*not available"):
        load_bitext("yor", "tatoeba", root=data_root)


def test_unknown_source(data_root):
    with pytest.raises(ValueError, match="unknown bitext source 'opus'"):
        load_bitext("yor", "opus", root=data_root)


# --------------------------------------------------------------------------- XQuAD / XQuAD-R


def test_xquad_is_parallel(data_root):
    assert len(languages("xquad", root=data_root)) == 12
    en, zh = load_xquad("en", root=data_root), load_xquad("zho_Hans", root=data_root)
    assert zh.lang == "zho_Hans"
    for x in (en, zh):
        assert len(x.paragraphs) == 240 and len(x.questions) == 1190
        for q in x.questions:
            assert x.paragraphs[q.paragraph][q.answer_start:].startswith(q.answer)
    assert [q.id for q in en.questions] == [q.id for q in zh.questions]
    assert [q.paragraph for q in en.questions] == [q.paragraph for q in zh.questions]
    raw = json.loads((data_root / "xquad/xquad.en.json").read_text())
    assert en.questions[0].text == raw["data"][0]["paragraphs"][0]["qas"][0]["question"]


@pytest.mark.parametrize("lang, candidates", [("en", 1180), ("th", 852), ("zh", 1196), ("ar", 1222), ("de", 1276)])
def test_xquad_r_candidates_and_gold(data_root, lang, candidates):
    r = load_xquad_r(lang, root=data_root)
    assert len(r.sentences) == len(r.sentence_paragraph) == candidates  # the LAReQA README's table
    assert len(r.questions) == 1190 and len(r.paragraphs) == 240
    x = load_xquad(lang, root=data_root)
    for q, xq in zip(r.questions, x.questions, strict=True):
        assert (q.id, q.text) == (xq.id, xq.text)
        assert r.sentence_paragraph[q.gold] == xq.paragraph
        sentence = r.sentences[q.gold]
        start = r.paragraphs[xq.paragraph].find(sentence)  # independent of sentence_breaks
        assert start <= xq.answer_start < start + len(sentence)


# --------------------------------------------------------------------------- word alignment


@pytest.mark.parametrize("pair, n", [("enfr", 447), ("roen", 248), ("ro-en", 248), ("deen", 100)])
def test_word_alignment_counts_match_the_gold_file(data_root, pair, n):
    gold = load_word_alignment(pair, root=data_root)
    key = pair.replace("-", "")
    folder = "word_alignment_deen" if key == "deen" else "word_alignment"
    raw = _lines(data_root / f"{folder}/{key}.gold")
    assert len(gold) == len(raw) == n
    assert sum(len(g.sure) for g in gold) == sum(len(re.findall(r"\d+-\d+", line)) for line in raw)
    assert sum(len(g.possible) for g in gold) == sum(len(line.split()) for line in raw)
    for g in gold:
        assert g.sure <= g.possible
        assert all(0 <= i < len(g.src) and 0 <= j < len(g.tgt) for i, j in g.possible)


def test_the_three_gold_sets_are_listed(data_root):
    assert word_alignment_pairs(root=data_root) == ["deen", "enfr", "roen"]
    de = load_word_alignment("de-en", root=data_root)
    assert de[1].src[:3] == ["bei", "der", "zweiten"] and de[1].tgt[:2] == ["the", "second"]
    assert (1, 0) in de[1].sure and de[1].sure == de[1].possible  # "2-1": der - the; sure links only
    assert sum(len(g.sure) for g in de) == 1232  # 1,233 upstream, one past its sentence dropped


def test_word_alignment_example(data_root):
    first = load_word_alignment("roen", root=data_root)[0]  # "ajunge ! ||| that 's enough !" / "2-4 1-3"
    assert first.src == ["ajunge", "!"] and first.tgt == ["that", "'s", "enough", "!"]
    assert first.sure == first.possible == {(0, 2), (1, 3)}
    enfr = load_word_alignment("enfr", root=data_root)
    assert any(g.possible - g.sure for g in enfr)  # en-fr has possible (p) links


def test_any_pair_with_both_files_is_found(tmp_path):
    wa = tmp_path / "word_alignment"
    wa.mkdir()
    (wa / "deen.src-tgt").write_text("das Haus ||| the house\nja ||| yes\n")
    (wa / "deen.gold").write_text("1-1 2p2\n1-1\n")
    (wa / "jaen.src-tgt").write_text("x ||| y\n")  # no jaen.gold: not a pair
    assert word_alignment_pairs(root=tmp_path) == ["deen"]
    gold = load_word_alignment("de-en", root=tmp_path)
    assert gold[0].sure == {(0, 0)} and gold[0].possible == {(0, 0), (1, 1)}
    with pytest.raises(ValueError, match="no pair 'jaen'.*available: deen"):
        load_word_alignment("jaen", root=tmp_path)
    (wa / "deen.gold").write_text("1-1 3-2\n1-1\n")  # word 3 does not exist
    with pytest.raises(CorruptDataError, match=r"deen\.gold: line 1: link '3-2'.*not in data/manifest\.tsv") as info:
        load_word_alignment("deen", root=tmp_path)
    assert "data fetch" not in str(info.value)  # a file of the user's own: fetching cannot fix it
    (wa / "deen.gold").write_text("1-1\n")  # one line short
    with pytest.raises(CorruptDataError, match="1 lines, but its parallel file deen.src-tgt has 2"):
        load_word_alignment("deen", root=tmp_path)


def test_word_alignment_tokens_are_split_on_ascii_spaces_only(tmp_path, data_root):
    """Bug 6: awesome-align's format separates tokens by ASCII spaces; a full-width space (U+3000)
    is a token of its own and a no-break space (U+00A0) is inside a token."""
    wa = tmp_path / "word_alignment"
    wa.mkdir()
    # 私 は <U+3000> 学生 です 。 ||| I am a student .   (6 x 5 tokens; 6-5 links the full stops)
    (wa / "jaen.src-tgt").write_text("私 は \u3000 学生 です 。 ||| I am a student .\n10\u00a0000 円 ||| 10,000  yen\n",
                                     encoding="utf-8")
    (wa / "jaen.gold").write_text("1-1 2-2 4-4 5p2 6-5\n1-1 2-2\n")
    first, second = load_word_alignment("ja-en", root=tmp_path)
    assert first.src == ["私", "は", "\u3000", "学生", "です", "。"] and first.tgt == ["I", "am", "a", "student", "."]
    assert (5, 4) in first.sure and (4, 1) in first.possible - first.sure
    assert second.src == ["10\u00a0000", "円"] and second.tgt == ["10,000", "yen"]  # two ASCII spaces: one gap
    # the real gold files are unchanged by the rule (no other whitespace in them)
    for pair in ("enfr", "roen"):
        for g, line in zip(load_word_alignment(pair, root=data_root), _lines(data_root / f"word_alignment/{pair}.src-tgt")):
            assert g.src + g.tgt == line.replace("|||", " ").split()


def test_a_bad_line_of_a_manifest_file_still_advises_fetch(tmp_path, data_root):
    wa = tmp_path / "word_alignment"
    shutil.copytree(data_root / "word_alignment", wa)
    gold = wa / "roen.gold"
    gold.write_text(gold.read_text().replace("2-4 1-3", "2-4 1-9", 1))
    with pytest.raises(CorruptDataError, match="fix: optical-viz data fetch word_alignment"):
        load_word_alignment("roen", root=tmp_path)


# --------------------------------------------------------------------------- missing / corrupt files


@pytest.fixture
def small_flores(tmp_path, data_root):
    """A data root holding FLORES for yor_Latn and eng_Latn only."""
    for lang in ("yor_Latn", "eng_Latn"):
        shutil.copytree(data_root / "flores200/annotated" / lang, tmp_path / "flores200/annotated" / lang)
    return tmp_path


def test_missing_file_names_file_set_and_fix(small_flores):
    (small_flores / "flores200/annotated/yor_Latn/dev.tsv").unlink()
    with pytest.raises(MissingDataError) as info:
        load_bitext("yor", "flores", "dev", root=small_flores)
    msg = str(info.value)
    assert "flores200/annotated/yor_Latn/dev.tsv" in msg and "flores200:" in msg
    assert f"optical-viz data fetch flores200 --root {small_flores}" in msg
    assert info.value.set == "flores200" and info.value.fix in msg
    assert isinstance(info.value, FileNotFoundError)


def test_corrupt_file_is_detected_by_checksum(small_flores):
    path = small_flores / "flores200/annotated/eng_Latn/dev.tsv"
    data = bytearray(path.read_bytes())
    data[-2] = ord("#")  # same size, different content
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match=r"flores200: corrupt file .*eng_Latn/dev\.tsv .*checksum.*optical-viz data fetch flores200"):
        load_flores("eng", "dev", root=small_flores)
    assert len(load_flores("yor", "dev", root=small_flores)) == 99  # the intact file still loads


def test_missing_language_folder_is_a_missing_file(small_flores):
    """fra_Latn is in the manifest but not on disk: the error names its file and the fix."""
    with pytest.raises(MissingDataError, match=r"fra_Latn/dev\.tsv.*optical-viz data fetch flores200"):
        load_bitext("yor", "flores", "dev", root=small_flores, pivot="fra_Latn")
    assert languages("flores", root=small_flores) == ["yor_Latn"]  # what is on disk


@pytest.mark.parametrize(
    "call",
    [lambda r: load_bitext("deu", "tatoeba", root=r), lambda r: load_xquad("en", root=r),
     lambda r: languages("nllb_seed", root=r), lambda r: word_alignment_pairs(root=r)],
)
def test_missing_set_folder(tmp_path, call):
    with pytest.raises(MissingDataError, match=r"the set folder .* is missing.*fix: optical-viz data fetch \w+"):
        call(tmp_path)
