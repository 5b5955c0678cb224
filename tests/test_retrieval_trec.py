"""TREC runs and qrels from `evaluate`, read back by ir-measures (pytrec_eval, i.e. trec_eval):
per-query R@1/5/10, RR@10 and AP must equal our own per-query metrics to 1e-9.

The model here is a small real model directory (2 layers, 64-d, MiniLM's WordPiece
tokenizer, seeded random weights): the agreement is about the metrics, not the model, and
XQuAD-R's pool of 13k sentences must embed in seconds on a CPU.
"""
from __future__ import annotations

import json

import ir_measures
import pytest
import torch
from ir_measures import AP, RR, R

from optical_viz.cli import main
from optical_viz.retrieval import build_problems, evaluate, read_qrels, read_run, trec_query_ids, write_qrels, write_run

TOL = 1e-9
MEASURES = {"recall@1": R @ 1, "recall@5": R @ 5, "recall@10": R @ 10, "mrr@10": RR @ 10, "map": AP}


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    return _small_model(tmp_path_factory.mktemp("models") / "bert-2x64")


def _small_model(path):
    """2 layers, 64-d, MiniLM's tokenizer, seeded random weights, saved as a model directory."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from optical_viz.encoder import minilm_model_dir

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=30522)
    BertModel(cfg).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_model_dir()).save_pretrained(path)
    return path


def _per_query(report, qrels_file, run_file) -> tuple[dict, dict]:
    """(ours, theirs): measure -> {trec qid: value}."""
    ours: dict[str, dict[str, float]] = {m: {} for m in MEASURES}
    single = len(report.rankings) == 1
    for key, (problem, _) in report.rankings.items():
        for name in MEASURES:
            if name in report.per_query[key].values:
                ours[name].update(zip(trec_query_ids(problem, single), report.per_query[key][name].tolist()))
    theirs: dict[str, dict[str, float]] = {m: {} for m in MEASURES}
    by_measure = {v: k for k, v in MEASURES.items()}
    for m in ir_measures.iter_calc(list(MEASURES.values()), read_qrels(qrels_file), read_run(run_file)):
        theirs[by_measure[m.measure]][m.query_id] = m.value
    return ours, theirs


def _top_depth_queries(report, depth) -> set[str]:
    """Queries all of whose relevant candidates are in the run (for AP, which trec_eval
    computes over the run alone; ours is over the full ranking)."""
    single = len(report.rankings) == 1
    out = set()
    for problem, top in report.rankings.values():
        for qid, rel, row in zip(trec_query_ids(problem, single), problem.relevant, top.indices.tolist()):
            if set(rel) <= set(row[:depth]):
                out.add(qid)
    return out


def test_xquad_r_run_agrees_with_trec_eval(small_model, data_root, tmp_path):
    """A subset of XQuAD-R, as the experiment grid evaluates it (200 questions of each problem,
    1,000 of its candidates): the run names the collection's ids, and trec_eval agrees."""
    report = evaluate("xquad-r", encoder=str(small_model), langs=["de", "ar"], cache=False, n_bootstrap=10,
                      progress=False, run_depth=100, max_queries=200, max_candidates=1000)
    run, qrels = tmp_path / "x.trec", tmp_path / "x.qrels"
    n_run, n_qrels = write_run(report, run), write_qrels(report, qrels)
    n_queries = sum(len(p.queries) for p, _ in report.rankings.values())
    assert n_run == 100 * n_queries and n_queries == 4 * 200 and n_qrels >= n_queries
    first = run.read_text().splitlines()[0].split()
    assert first[0].startswith("deu_Latn.xx-en.") and first[1:4] == ["Q0", "eng_Latn.s" + first[2].split(".s")[1], "1"]
    # the subset keeps the ids of the whole collection: each id still names its own text
    whole = {(p.lang, p.direction): p for p in build_problems("xquad-r", ["deu_Latn", "arb_Arab"], root=data_root)}
    for key, (problem, _) in report.rankings.items():
        qids, dids = whole[key].ids()
        question, sentence = dict(zip(qids, whole[key].queries)), dict(zip(dids, whole[key].candidates))
        assert [question[q] for q in problem.query_ids] == problem.queries
        assert [sentence[d] for d in problem.candidate_ids] == problem.candidates
    ours, theirs = _per_query(report, qrels, run)
    for name in ("recall@1", "recall@5", "recall@10", "mrr@10"):
        assert ours[name].keys() == theirs[name].keys()
        diff = max(abs(ours[name][q] - theirs[name][q]) for q in ours[name])
        assert diff <= TOL, (name, diff)
    complete = _top_depth_queries(report, 100)
    assert len(complete) >= 50  # enough queries whose AP is comparable (71 with this model)
    for q, v in ours["map"].items():
        if q in complete:
            assert abs(v - theirs["map"][q]) <= TOL, q
        else:  # a relevant candidate below rank 100 adds to our AP but is not in the run
            assert theirs["map"].get(q, 0.0) < v


def test_a_subset_keeps_the_ids_of_the_whole_problem():
    """Positions in a subset are not positions in the collection: q<i> / d<i> stay those of
    the whole problem (a run file of a subset evaluation named the wrong queries before)."""
    from optical_viz.retrieval import RetrievalProblem, subset_problem

    whole = RetrievalProblem("xx", "xx->en", [f"query {i}" for i in range(10)], [f"doc {i}" for i in range(30)],
                             [[i] for i in range(10)], kind="bitext")
    sub = subset_problem(whole, max_queries=3, max_candidates=8)
    qids, dids = sub.ids()
    assert [f"query {q[1:]}" for q in qids] == sub.queries and [f"doc {d[1:]}" for d in dids] == sub.candidates
    assert qids != ["q0", "q1", "q2"]  # the subset is not the first three


def _clir_collection(data_root, folder, n=99):
    """FLORES dev as a CLIR collection: Yoruba and French queries, English and German passages,
    each query relevant to both translations of its sentence (2 relevant passages)."""
    from optical_viz.data import load_flores

    folder.mkdir()
    en, de = load_flores("eng_Latn", split="dev", root=data_root), load_flores("deu_Latn", split="dev", root=data_root)
    with open(folder / "passages.tsv", "w") as f:
        f.write("pid\ttext\n")
        for i in range(n):
            f.write(f"en-{en.ids[i]}\t{en.texts[i]}\nde-{de.ids[i]}\t{de.texts[i]}\n")
    for lang in ("yor_Latn", "fra_Latn"):
        x = load_flores(lang, split="dev", root=data_root)
        (folder / f"queries.{lang}.tsv").write_text("".join(f"s{x.ids[i]}\t{x.texts[i]}\n" for i in range(n)))
    (folder / "qrels.tsv").write_text("".join(f"s{en.ids[i]} 0 en-{en.ids[i]} 1\ns{en.ids[i]} 0 de-{de.ids[i]} 1\n"
                                              for i in range(n)))
    return folder


def test_clir_run_from_the_command_line_agrees_with_trec_eval(small_model, data_root, tmp_path):
    folder = _clir_collection(data_root, tmp_path / "clir")
    run, qrels, js = tmp_path / "c.trec", tmp_path / "c.qrels", tmp_path / "c.json"
    argv = ["evaluate", "clir", "--collection", str(folder), "--model", str(small_model), "--no-cache",
            "--bootstrap", "10", "--run", str(run), "--qrels", str(qrels), "--run-depth", "1000", "--json", str(js)]
    assert main(argv) == 0  # in this process: the console script's main without a second torch import
    assert read_qrels(qrels)["fra_Latn.xx-en.s9"] == {"en-9": 1, "de-9": 1}  # the collection's ids
    assert len(read_run(run)["yor_Latn.xx-en.s9"]) == 198  # the full ranking (depth 1000 > 198 passages)
    # the JSON's means against ir-measures' means, per language
    rows = {r["lang"]: r for r in json.loads(js.read_text())["results"]}
    q, r = read_qrels(qrels), read_run(run)
    for lang in ("yor_Latn", "fra_Latn"):
        sub_q = {k: v for k, v in q.items() if k.startswith(lang)}
        agg = ir_measures.calc_aggregate(list(MEASURES.values()), sub_q, {k: v for k, v in r.items() if k in sub_q})
        for name, measure in MEASURES.items():
            assert abs(rows[lang][name] - agg[measure]) <= TOL, (lang, name)
    # and per query, through the Python API on the same collection
    report = evaluate("clir", encoder=str(small_model), langs="all", root=folder, cache=False, n_bootstrap=10,
                      progress=False, run_depth=1000)
    write_run(report, tmp_path / "api.trec")
    assert (tmp_path / "api.trec").read_text() == run.read_text()  # deterministic, same as the CLI's
    ours, theirs = _per_query(report, qrels, run)
    for name in MEASURES:
        assert ours[name].keys() == theirs[name].keys() and len(ours[name]) == 198
        assert max(abs(ours[name][k] - theirs[name][k]) for k in ours[name]) <= TOL, name


def test_tied_scores_keep_our_order_in_trec_eval(tmp_path):
    """Equal scores are written strictly decreasing: trec_eval would otherwise order ties by
    document id (descending) and disagree with our ranks."""
    from optical_viz.retrieval import RetrievalProblem, TopK
    from optical_viz.retrieval._evaluate import RetrievalReport

    problem = RetrievalProblem("xx", "xx->en", ["q"], ["a", "b", "c"], [[0]], kind="qa", with_map=True)
    top = TopK(torch.tensor([[0, 1, 2]]), torch.tensor([[0.5, 0.5, 0.5]]))
    report = RetrievalReport("clir", "m", "dense", None, None, {}, rankings={("xx", "xx->en"): (problem, top)})
    write_run(report, tmp_path / "t.trec")
    write_qrels(report, tmp_path / "t.qrels")
    scores = [float(line.split()[4]) for line in (tmp_path / "t.trec").read_text().splitlines()]
    assert scores[0] == 0.5 and scores[0] > scores[1] > scores[2] and scores[2] > 0.5 - 1e-12
    rr = ir_measures.calc_aggregate([RR @ 10], read_qrels(tmp_path / "t.qrels"), read_run(tmp_path / "t.trec"))
    assert rr[RR @ 10] == 1.0  # d0 first, as we rank it; by doc id d2 would be first


def test_bad_files_are_named_with_their_line(tmp_path):
    f = tmp_path / "bad.trec"
    f.write_text("q1 Q0 d1 1 0.5 tag\nq1 Q0 d2 2 0.4\n")
    with pytest.raises(ValueError, match=r"bad.trec:2: a TREC run line has 6 fields"):
        read_run(f)
    g = tmp_path / "bad.qrels"
    g.write_text("q1 0 d1 yes\n")
    with pytest.raises(ValueError, match=r"bad.qrels:1: relevance 'yes' is not an integer"):
        read_qrels(g)


def test_report_without_rankings_says_what_to_do(tmp_path):
    from optical_viz.retrieval._evaluate import RetrievalReport

    with pytest.raises(ValueError, match="evaluate with run_depth > 0"):
        write_run(RetrievalReport("clir", "m", "dense", None, None, {}), tmp_path / "x.trec")
