"""Retrieval tasks end to end on the real data sets, with a lexical stand-in encoder
(fast, deterministic, no model needed) so that the data -> problems -> metrics wiring is
checked against brute force. tests/test_retrieval_model.py runs the real model."""
from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from optical_viz.cache import EmbeddingCache
from optical_viz.retrieval import (
    build_problems,
    compare,
    evaluate,
    load_clir,
    resolve_task_languages,
)

H = 512


class LexicalEncoder:
    """Bag of hashed character trigrams (of the text after the prefix): an encoder-shaped
    stand-in whose cosine rewards shared words, names and numbers."""

    prefix = "query: "

    def __init__(self, name="lexical"):
        self.name = self.identity = name
        self.calls: list[tuple[str, str]] = []  # (prefix, text)

    def embed_sentences(self, texts, layer=-1, prefix=None, batch_size=64, normalize=True):
        self.calls.extend((prefix, t) for t in texts)
        out = torch.zeros(len(texts), H)
        for i, t in enumerate(texts):
            s = f"  {t.lower()}  "
            for k in range(len(s) - 2):
                out[i, zlib.crc32(s[k : k + 3].encode()) % H] += 1
        return torch.nn.functional.normalize(out, dim=-1)

    def embed_tokens(self, texts, layer=-1, prefix=None, batch_size=32):
        self.calls.extend((prefix, t) for t in texts)
        words = [re.findall(r"\w+", t.lower()) or ["_"] for t in texts]
        T = max(len(w) for w in words)
        emb, mask = torch.zeros(len(texts), T, H), torch.zeros(len(texts), T, dtype=torch.bool)
        for i, ws in enumerate(words):
            emb[i, : len(ws)] = self.embed_sentences(ws, prefix=prefix)
            mask[i, : len(ws)] = True
        del self.calls[-sum(len(w) for w in words) :]
        return type("Batch", (), {"embeddings": emb, "mask": mask})()


@pytest.fixture
def memory_cache():
    return EmbeddingCache(":memory:")


def test_language_resolution_and_errors(data_root):
    assert resolve_task_languages("xquad", "de,zh,eng", root=data_root) == ["deu_Latn", "zho_Hans", "eng_Latn"]
    assert len(resolve_task_languages("xquad-r", "all", root=data_root)) == 11
    assert resolve_task_languages("flores", ["yo", "hau"], root=data_root) == ["yor_Latn", "hau_Latn"]
    assert len(resolve_task_languages("flores", None, root=data_root)) == 204
    with pytest.raises(ValueError, match=r"xquad-r has no language 'ro'.*it has: arb_Arab"):
        resolve_task_languages("xquad-r", ["ro"], root=data_root)
    with pytest.raises(ValueError, match="unknown language code 'qqq'"):
        resolve_task_languages("flores", ["qqq"], root=data_root)
    with pytest.raises(ValueError, match="unknown task 'squad'; choose one of xquad-r"):
        evaluate("squad", encoder=LexicalEncoder(), langs=["de"], root=data_root)


def test_xquad_r_problems_gold_contains_answer(data_root):
    from optical_viz.data import load_xquad

    problems = {(p.lang, p.direction): p for p in build_problems("xquad-r", ["deu_Latn"], root=data_root)}
    to_en, pool = problems[("deu_Latn", "xx->en")], problems[("deu_Latn", "xx->pool")]
    assert len(to_en.queries) == len(pool.queries) == 1190
    en_answers = {q.id: q.answer for q in load_xquad("en", root=data_root).questions}
    de_questions = load_xquad("de", root=data_root).questions
    hits = [en_answers[q.id] in to_en.candidates[rel[0]] for q, rel in zip(de_questions, to_en.relevant)]
    assert np.mean(hits) > 0.97  # the English gold sentence holds the English answer
    # the pool holds every language's sentences; each question has its gold in all 11
    assert all(len(r) == 11 for r in pool.relevant)
    assert len(pool.candidates) > 11 * 1000


def test_xquad_and_flores_with_lexical_encoder(data_root, memory_cache):
    enc = LexicalEncoder()
    rep = evaluate("xquad", encoder=enc, langs=["en", "de"], root=data_root, cache=memory_cache,
                   n_bootstrap=200, progress=False)
    f = rep.frame.set_index("lang")
    assert list(f.index) == ["eng_Latn", "deu_Latn", "all"]
    assert (f["n"] == [1190, 1190, 2380]).all() and (f["direction"] == "xx->en").all()
    # lexical overlap finds English paragraphs for English questions, far above chance (1/240)
    assert f.loc["eng_Latn", "recall@10"] > 0.6 > f.loc["deu_Latn", "recall@10"] > 10 / 240
    lo, hi = f.loc["eng_Latn", "recall@1_ci"]
    assert lo <= f.loc["eng_Latn", "recall@1"] <= hi
    # e5 prefixes: "query: " for questions, "passage: " for paragraphs
    assert {p for p, t in enc.calls} == {"query: ", "passage: "}
    assert sum(p == "passage: " for p, _ in enc.calls) == 240  # English paragraphs encoded once

    fl = evaluate("flores", encoder=enc, langs=["fra_Latn"], split="dev", root=data_root,
                  cache=memory_cache, n_bootstrap=200, progress=False)
    assert fl.split == "dev" and list(fl.frame["direction"]) == ["xx->en", "en->xx"]
    assert (fl.frame["n"] == 99).all()
    assert {p for p, _ in enc.calls[-99 * 2 :]} == {"query: "}  # bitext: "query: " on both sides
    assert (fl.frame["recall@1"] > 0.5).all()


def test_pipeline_matches_brute_force(data_root, memory_cache):
    """evaluate()'s numbers equal a direct computation from the loaders."""
    from optical_viz.data import load_flores

    enc = LexicalEncoder()
    rep = evaluate("flores", encoder=enc, langs=["deu_Latn"], split="dev", root=data_root,
                   cache=memory_cache, n_bootstrap=100, progress=False)
    x = enc.embed_sentences(load_flores("deu_Latn", "dev", data_root).texts, prefix="query: ")
    y = enc.embed_sentences(load_flores("eng_Latn", "dev", data_root).texts, prefix="query: ")
    s = (x @ y.T).numpy()
    for direction, scores in (("xx->en", s), ("en->xx", s.T)):
        ranks = np.array([(np.argsort(-row, kind="stable") == i).nonzero()[0][0] + 1 for i, row in enumerate(scores)])
        row = rep.frame.set_index("direction").loc[direction]
        assert row["recall@1"] == pytest.approx(np.mean(ranks == 1))
        assert row["recall@5"] == pytest.approx(np.mean(ranks <= 5))
        assert row["mrr@10"] == pytest.approx(np.mean(np.where(ranks <= 10, 1 / ranks, 0)))


def test_maxsim_scoring_runs_on_real_data(data_root, memory_cache):
    rep = evaluate("tatoeba", encoder=LexicalEncoder(), langs=["gsw", "ast"], scoring="maxsim", root=data_root,
                   cache=memory_cache, n_bootstrap=100, progress=False)
    assert list(rep.frame["n"]) == [117, 117, 127, 127, 244, 244] and rep.scoring == "maxsim"
    assert (rep.frame["recall@10"] > 0.1).all()


def test_asymmetric_setting_routes_sides(data_root, memory_cache):
    student, teacher = LexicalEncoder("student"), LexicalEncoder("teacher")
    rep = evaluate("flores", student=student, teacher=teacher, langs=["fra_Latn"], split="dev",
                   root=data_root, cache=memory_cache, n_bootstrap=100, progress=False)
    from optical_viz.data import load_flores

    fra = set(load_flores("fra_Latn", "dev", data_root).texts)
    eng = set(load_flores("eng_Latn", "dev", data_root).texts)
    assert {t for _, t in student.calls} == fra  # the student encodes the French side only
    assert {t for _, t in teacher.calls} == eng
    assert rep.model == "student=student teacher=teacher"
    # same model on both sides gives the symmetric result
    sym = evaluate("flores", encoder=student, langs=["fra_Latn"], split="dev", root=data_root,
                   cache=memory_cache, n_bootstrap=100, progress=False)
    same = evaluate("flores", student=student, teacher=student, langs=["fra_Latn"], split="dev",
                    root=data_root, cache=memory_cache, n_bootstrap=100, progress=False)
    np.testing.assert_allclose(sym.frame["recall@1"], same.frame["recall@1"])
    cmp = compare(sym, same)
    assert (cmp["p_value"] == 1.0).all() and (cmp["delta"] == 0).all()


def test_flores_split_defaults_to_dev_test_for_flores_trained_runs(data_root, memory_cache, tmp_path):
    run = tmp_path / "run"
    (run / "student").mkdir(parents=True)
    (run / "student" / "optical_viz_training.json").write_text(
        json.dumps({"languages": ["fra_Latn"], "bitext_sources": ["flores"]})
    )
    enc = LexicalEncoder()
    enc.path = str(run / "student")
    rep = evaluate("flores", encoder=enc, langs=["fra_Latn"], root=data_root, cache=memory_cache,
                   n_bootstrap=50, progress=False)
    assert rep.split == "dev+test" and (rep.frame["n"] == 303).all()
    assert "dev+test" in rep.notes[0]
    (run / "student" / "optical_viz_training.json").write_text(json.dumps({"bitext_sources": ["nllb_seed"]}))
    rep = evaluate("flores", encoder=enc, langs=["fra_Latn"], root=data_root, cache=memory_cache,
                   n_bootstrap=50, progress=False)
    assert rep.split == "all" and (rep.frame["n"] == 1004).all() and rep.notes == []
    doc = rep.to_json()
    assert doc["task"] == "flores" and doc["model"] == "lexical"
    r0 = doc["results"][0]
    assert set(r0) >= {"lang", "direction", "n", "recall@1", "recall@1_ci", "recall@5", "recall@10", "mrr@10"}
    assert "map" not in r0 and json.loads(json.dumps(doc)) == doc



def test_every_flores_task_split_is_a_split_selection_of_the_data():
    """The FLORES task's splits are built on data.loaders.FLORES_SPLITS (the TSVs FLORES ships):
    each one is a selection load_flores reads, and the task rejects others by name."""
    from optical_viz.data import loaders
    from optical_viz.retrieval._tasks import FLORES_TASK_SPLITS, build_problems

    assert set(loaders.FLORES_SPLITS) < set(FLORES_TASK_SPLITS)
    for split in FLORES_TASK_SPLITS:
        assert set(loaders._split_names(split, loaders.FLORES_SPLITS)) <= set(loaders.FLORES_SPLITS)
    with pytest.raises(ValueError, match="unknown FLORES split 'train\\+dev'; choose one of all, train, dev, test, dev\\+test"):
        build_problems("flores", ["fra_Latn"], split="train+dev")


def _write_clir(folder, queries, passages, qrels, name="queries.tsv"):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("qid\ttext\n" + "".join(f"{k}\t{v}\n" for k, v in queries.items()))
    (folder / "passages.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in passages.items()))
    (folder / "qrels.tsv").write_text("".join(f"{q} 0 {p} {r}\n" for q, p, r in qrels))


def test_clir_collection(tmp_path, memory_cache):
    passages = {"p1": "the red fox jumps", "p2": "a blue whale swims", "p3": "red apples and blue plums",
                "p4": "nothing related here"}
    queries = {"q1": "red fox", "q2": "blue whale", "q3": "no judgement"}
    qrels = [("q1", "p1", 2), ("q1", "p3", 1), ("q2", "p2", 1), ("q2", "p4", 0)]
    _write_clir(tmp_path / "c", queries, passages, qrels)
    col = load_clir(tmp_path / "c")
    assert col.qrels == {"q1": {"p1", "p3"}, "q2": {"p2"}}  # relevance 0 is not relevant
    enc = LexicalEncoder()
    rep = evaluate("clir", encoder=enc, langs=None, root=tmp_path / "c", cache=memory_cache,
                   n_bootstrap=50, progress=False)
    row = rep.frame.iloc[0]
    assert row["n"] == 2  # q3 has no judgement
    # brute force: rank the four passages for q1 and q2
    p = enc.embed_sentences(list(passages.values()), prefix="passage: ")
    q = enc.embed_sentences(["red fox", "blue whale"], prefix="query: ")
    order = [list(np.argsort(-(q @ p.T)[i].numpy(), kind="stable")) for i in range(2)]
    ap1 = np.mean([(k + 1) / r for k, r in enumerate(sorted([order[0].index(0) + 1, order[0].index(2) + 1]))])
    ap2 = 1 / (order[1].index(1) + 1)
    assert row["map"] == pytest.approx((ap1 + ap2) / 2)
    # per-language query files share passages and judgements
    _write_clir(tmp_path / "m", {"q1": "renard rouge"}, passages, qrels[:1], name="queries.fr.tsv")
    _write_clir(tmp_path / "m", {"q1": "red fox"}, passages, qrels[:1], name="queries.en.tsv")
    rep = evaluate("clir", encoder=enc, langs="all", root=tmp_path / "m", cache=memory_cache,
                   n_bootstrap=50, progress=False)
    assert list(rep.frame["lang"]) == ["en", "fr", "all"]
    with pytest.raises(ValueError, match="no queries in \\['de'\\]; it has: en, fr"):
        evaluate("clir", encoder=enc, langs=["de"], root=tmp_path / "m", cache=memory_cache)
    _write_clir(tmp_path / "e", {}, passages, [])
    with pytest.raises(ValueError, match="query set is empty"):
        evaluate("clir", encoder=enc, langs=None, root=tmp_path / "e", cache=memory_cache)


@pytest.mark.parametrize(
    "file,text,match",
    [
        ("queries.tsv", "qid\ttext\nq1\tred fox\nq2 blue whale\n",
         r"queries\.tsv:3: expected 'qid<TAB>text' \(2 tab-separated fields\), got 1 field: 'q2 blue whale'"),
        ("queries.tsv", "q1\tred fox\nq2\tblue whale\nq1\tfox\n",
         r"queries\.tsv:3: duplicate query id 'q1' \(first on line 1\)"),
        ("queries.tsv", "q1\tred fox\nq2\t\n", r"queries\.tsv:2: empty query text for id 'q2'"),
        ("passages.tsv", "p1\tthe red fox jumps\np2 a blue whale swims\n",
         r"passages\.tsv:2: expected 'pid<TAB>text' or 'pid<TAB>title<TAB>text', got 1 field: 'p2 a blue whale swims'"),
        ("passages.tsv", "p1\tthe red fox jumps\np2\ta blue whale\np1\tagain\n",
         r"passages\.tsv:3: duplicate passage id 'p1' \(first on line 1\)"),
        ("qrels.tsv", "q1 0 p1 yes\n", r"qrels\.tsv:1: relevance 'yes' is not a number"),
        ("qrels.tsv", "q1 0 p1 1\nq1 0 p1 2\n", r"qrels\.tsv:2: duplicate judgement of \('q1', 'p1'\) \(first on line 1\)"),
        ("qrels.tsv", "q1 0 p1 1 extra\n", r"qrels\.tsv:1: expected 'qid pid', 'qid pid relevance' or 'qid 0 pid relevance', got 5 fields"),
        ("qrels.tsv", "Q1 0 p1 1\nQ2 0 p2 1\n",
         r"qrels\.tsv names none of the 2 query ids of .*queries\.tsv \(qrels: \['Q1', 'Q2'\]; queries: \['q1', 'q2'\]\)"),
        # issue 25, bug 6: judgements of unknown query ids were dropped silently (n shrank, no note)
        ("qrels.tsv", "q1 0 p1 1\nq2 0 p2 1\nq9 0 p2 1\nq9 0 p1 1\nq8 0 p1 0\n",
         r"qrels\.tsv:3: query id 'q9' is not in .*queries\.tsv; 2 judged query ids are absent, e\.g\. \['q9', 'q8'\]"),
        ("qrels.tsv", "q1 0 p1 1\nq2 0 p2 1\nq7 0 p2 1\n", r"qrels\.tsv:3: query id 'q7' is not in .*queries\.tsv \("),
    ],
)
def test_clir_malformed_lines_name_file_and_line(tmp_path, file, text, match):
    """Bug 5: no line is dropped or overwritten silently; every error says file:line and what was expected."""
    folder = tmp_path / "c"
    _write_clir(folder, {"q1": "red fox", "q2": "blue whale"}, {"p1": "the red fox jumps", "p2": "a blue whale"},
                [("q1", "p1", 1), ("q2", "p2", 1)])
    (folder / file).write_text(text)
    with pytest.raises(ValueError, match=match):
        build_problems("clir", ["xx"], root=folder)


def test_cli_writes_the_json_document(tmp_path, monkeypatch, capsys):
    from optical_viz import cli
    from optical_viz.retrieval import _evaluate

    passages = {"p1": "the red fox jumps", "p2": "a blue whale swims"}
    _write_clir(tmp_path / "c", {"q1": "red fox", "q2": "whale"}, passages, [("q1", "p1", 1), ("q2", "p2", 1)])
    loaded = []
    monkeypatch.setattr(_evaluate, "_load", lambda m, precision: loaded.append(precision) or LexicalEncoder())
    out = tmp_path / "out.json"
    code = cli.main(["evaluate", "clir", "--collection", str(tmp_path / "c"), "--no-cache", "--json", str(out)])
    assert code == 0 and loaded == ["auto"]  # the default: bf16 only where the CPU (or GPU) has it natively
    assert cli.main(["evaluate", "clir", "--collection", str(tmp_path / "c"), "--no-cache", "--precision", "bf16"]) == 0
    assert loaded == ["auto", "bf16"]
    doc = json.loads(out.read_text())
    assert doc["task"] == "clir" and doc["results"][0]["recall@1"] == 1.0
    assert doc["results"][0]["recall@1_ci"] == [1.0, 1.0]
    assert "recall@1" in capsys.readouterr().out
    assert cli.main(["evaluate", "xquad", "--langs", "yor", "--no-cache"]) == 2
    assert "xquad has no language 'yor'" in capsys.readouterr().err


def test_cli_alignment_delegates_to_the_alignment_module(tmp_path, monkeypatch, capsys):
    from optical_viz import alignment, cli, encoder

    seen = {}

    def fake_evaluate_alignment(enc, pairs, methods, layers, extraction, eps, root, **setting):
        seen.clear()
        seen.update(pairs=pairs, methods=methods, layers=layers, extraction=extraction, eps=eps, **setting)
        return {"task": "alignment", "model": enc.name, "results": [{"pair": "enfr", "aer": 0.1}]}

    monkeypatch.setattr(alignment, "evaluate_alignment", fake_evaluate_alignment)
    monkeypatch.setattr(encoder, "load_encoder", lambda m=None: LexicalEncoder())
    out = tmp_path / "al.json"
    assert cli.main(["evaluate", "alignment", "--pair", "enfr", "--method", "sinkhorn,emd", "--layer", "6,8",
                     "--eps", "0.1", "--json", str(out)]) == 0
    default = alignment.AlignConfig()
    assert seen == dict(pairs=["enfr"], methods=["sinkhorn", "emd"], layers=[6, 8],
                        extraction=default.extraction, eps=0.1, threshold=default.threshold, **default.solver_kw)
    assert json.loads(out.read_text())["results"][0]["aer"] == 0.1
    assert cli.main(["evaluate", "alignment"]) == 0
    assert seen["layers"] == [default.layer] and seen["eps"] == default.eps
    assert seen["threshold"] == default.threshold  # the leave-one-pair-out setting's own keywords
    assert "the leave-one-pair-out default" in capsys.readouterr().out
    assert cli.main(["evaluate", "alignment", "--extraction", "nope"]) == 2
    assert "unknown extraction(s) ['nope']" in capsys.readouterr().err


@pytest.mark.slow  # ~30 s (make test-fast leaves it out)
def test_progress_false_silences_the_encoder_and_restores_it(data_root, encoder, capsys):
    rep = evaluate("flores", encoder=encoder, langs=["fra_Latn"], split="dev", root=data_root, batch_size=8,
                   cache=EmbeddingCache(":memory:"), n_bootstrap=20, progress=False)
    assert "embedding sentences" not in capsys.readouterr().err
    assert encoder.progress is True and rep.model == encoder.name  # fp32: no precision tag
    assert (rep.frame["recall@1"] > 0.9).all()  # French-English FLORES is easy for e5


def test_xtreme_tatoeba_language_list(data_root):
    from optical_viz.commands.evaluate import parse_langs
    from optical_viz.paths import REPO_ROOT

    langs = parse_langs(str(REPO_ROOT / "configs" / "tatoeba-xtreme.yaml"))
    resolved = resolve_task_languages("tatoeba", langs, root=data_root)
    assert len(langs) == 36 and len(set(resolved)) == 36
    assert {"zho_Hans", "swh_Latn", "jav_Latn", "kat_Geor"} <= set(resolved)


@pytest.mark.parametrize("task", ["xquad-r", "xquad"])
def test_select_queries_keeps_the_named_questions_and_their_gold(data_root, task):
    from optical_viz.retrieval import select_queries

    p = build_problems(task, ["deu_Latn"], root=data_root)[0]
    assert p.query_ids is not None and len(set(p.query_ids)) == len(p.query_ids)
    ids = set(p.query_ids[::7])
    s = select_queries(p, ids)
    assert set(s.query_ids) == ids and s.candidates == p.candidates  # candidates stay the full pool
    by_id = dict(zip(p.query_ids, zip(p.queries, p.relevant)))
    assert all(by_id[q] == (text, rel) for q, text, rel in zip(s.query_ids, s.queries, s.relevant))
    with pytest.raises(ValueError, match="none of its"):
        select_queries(p, {"no-such-id"})


def _clir_cli(tmp_path, monkeypatch):
    """A two-query CLIR collection and a CLI whose model is the lexical stand-in; returns the
    collection folder and the list of models loaded (empty: no evaluation started)."""
    from optical_viz.retrieval import _evaluate

    passages = {"p1": "the red fox jumps", "p2": "a blue whale swims"}
    _write_clir(tmp_path / "c", {"q1": "red fox", "q2": "whale"}, passages, [("q1", "p1", 1), ("q2", "p2", 1)])
    loaded = []
    monkeypatch.setattr(_evaluate, "_load", lambda m, precision: loaded.append(precision) or LexicalEncoder())
    return tmp_path / "c", loaded


def test_cli_bootstrap_zero_means_no_intervals(tmp_path, monkeypatch, capsys):
    """Issue 25, bug 3: --bootstrap 0 crashed with an IndexError after the evaluation."""
    from optical_viz import cli

    folder, _ = _clir_cli(tmp_path, monkeypatch)
    out = tmp_path / "r.json"
    assert cli.main(["evaluate", "clir", "--collection", str(folder), "--no-cache", "--bootstrap", "0",
                     "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "100.0" in table and "[" not in table.split("wrote")[0]  # values without intervals
    result = json.loads(out.read_text())["results"][0]
    assert result["recall@1"] == 1.0 and result["recall@1_ci"] is None


@pytest.mark.parametrize("argv, message", [
    (["--bootstrap", "-5"], "argument --bootstrap: must be >= 0 (0: no intervals), got -5"),
    (["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    (["--batch-size", "x"], "argument --batch-size: expected a whole number, got 'x'"),
])
def test_cli_counts_are_checked_when_parsed(tmp_path, monkeypatch, capsys, argv, message):
    """Issue 25, bug 3 and a poor item: --bootstrap -5 said "negative dimensions are not
    allowed" after the evaluation; --batch-size 0 was accepted when embeddings were cached."""
    from optical_viz import cli

    folder, loaded = _clir_cli(tmp_path, monkeypatch)
    with pytest.raises(SystemExit) as exc:
        cli.main(["evaluate", "clir", "--collection", str(folder), *argv])
    assert exc.value.code == 2 and loaded == []
    assert message in capsys.readouterr().err


def test_library_refuses_a_negative_bootstrap_and_a_zero_batch(tmp_path, memory_cache):
    folder = tmp_path / "c"
    _write_clir(folder, {"q1": "red fox"}, {"p1": "the red fox jumps"}, [("q1", "p1", 1)])
    with pytest.raises(ValueError, match="n_bootstrap must be an integer >= 0"):
        evaluate("clir", encoder=LexicalEncoder(), langs=None, root=folder, cache=memory_cache, n_bootstrap=-5)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        evaluate("clir", encoder=LexicalEncoder(), langs=None, root=folder, cache=memory_cache, batch_size=0)


@pytest.mark.parametrize("option", ["--json", "--run", "--qrels"])
def test_cli_unwritable_output_is_refused_before_the_evaluation(tmp_path, monkeypatch, capsys, option):
    """Issue 25, bug 2: an unwritable --json / --run ran the whole evaluation, then gave a
    traceback and wrote nothing. Here the parent is a regular file (as root, permission bits
    do not stop a write)."""
    from optical_viz import cli

    folder, loaded = _clir_cli(tmp_path, monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "sub" / "out.x"
    assert cli.main(["evaluate", "clir", "--collection", str(folder), "--no-cache", option, str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"optical-viz evaluate: error: {option} {target}: cannot be written, {blocker} is not a folder"]
    assert loaded == []


def test_cli_output_on_a_read_only_file_system_is_refused_before_the_evaluation(tmp_path, monkeypatch, capsys):
    import errno
    import tempfile

    from optical_viz import cli

    folder, loaded = _clir_cli(tmp_path, monkeypatch)
    ro = tmp_path / "ro"
    ro.mkdir()

    def read_only(*args, dir=None, **kwargs):
        if Path(dir) == ro:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    real = tempfile.mkstemp
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert cli.main(["evaluate", "clir", "--collection", str(folder), "--no-cache", "--json", str(ro / "r.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"optical-viz evaluate: error: --json {ro / 'r.json'}: cannot be written, {ro} is not writable (Read-only file system)"
    assert loaded == []


def test_a_student_is_scored_against_the_teacher_it_was_distilled_from(data_root, memory_cache, tmp_path, monkeypatch):
    """Issue 26: a student distilled into another model's space (all-MiniLM-L6-v2's) is at
    chance against passages of the default model; with no teacher given, evaluate() must use
    the teacher recorded in the student's optical_viz_training.json."""
    from optical_viz import encoder as encoder_mod, retrieval
    from optical_viz.paths import TRAINING_INFO

    student_dir = tmp_path / "run" / "student"
    student_dir.mkdir(parents=True)
    (student_dir / TRAINING_INFO).write_text(json.dumps({"teacher": "/models/minilm", "prefix": "query: "}))
    made = {}

    def fake_load(name=None, precision="fp32"):
        made[str(name)] = LexicalEncoder(str(name))
        return made[str(name)]

    monkeypatch.setattr(encoder_mod, "load_encoder", fake_load)
    rep = evaluate("flores", student=student_dir, langs=["fra_Latn"], split="dev", root=data_root,
                   cache=memory_cache, n_bootstrap=10, progress=False)
    assert "None" not in made, "the English side was encoded by the default model, not the student's teacher"
    assert made["/models/minilm"].calls
    assert retrieval.trained_teacher(student_dir) == "/models/minilm"
    assert rep.model == f"student={student_dir} teacher=/models/minilm"
    assert any("distilled against" in n for n in rep.notes)
    # an explicit teacher wins; a model without a record keeps the default
    evaluate("flores", student=student_dir, teacher="/models/other", langs=["fra_Latn"], split="dev", root=data_root,
             cache=memory_cache, n_bootstrap=10, progress=False)
    assert made["/models/other"].calls
    (student_dir / TRAINING_INFO).write_text(json.dumps({"teacher": None}))
    assert retrieval.trained_teacher(student_dir) is None
    assert retrieval.trained_teacher(tmp_path / "nothing") is None
