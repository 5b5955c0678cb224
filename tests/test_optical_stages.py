"""RQ3 driver (optical_viz.experiments.optical_stages): every stage of the quick scale end to
end on tiny random twins of all-MiniLM-L6-v2 (the teacher: WordPiece, 6 layers) and of
multilingual-e5-small (the student: SentencePiece; tests/experiments_fixtures.py), both at 16
dimensions: plumbing only, no real number."""
from __future__ import annotations

import dataclasses
import json
import shutil

import pandas as pd
import pytest

from experiments_fixtures import tiny_home, tiny_home_dir  # noqa: F401  (fixtures)
from optical_viz.experiments import optical_stages as O


@pytest.fixture(scope="module")
def tiny_minilm(tmp_path_factory):
    """all-MiniLM-L6-v2's files (tokenizer, pooling, modules) with a 16-dimensional random BERT."""
    import torch
    from transformers import BertConfig, BertModel

    from optical_viz.encoder import minilm_model_dir

    src = minilm_model_dir()
    out = tmp_path_factory.mktemp("tiny-minilm") / "model"
    shutil.copytree(src, out, ignore=lambda d, names: [n for n in names if n.startswith("model.safetensors")])
    (out / "config.json").unlink()
    config = json.loads((src / "config.json").read_text()) | dict(hidden_size=16, num_attention_heads=2,
                                                                  intermediate_size=32)
    torch.manual_seed(1)
    BertModel(BertConfig(**config), add_pooling_layer=False).save_pretrained(out)
    return out


@pytest.fixture
def plan(tiny_minilm_dir, tiny_e5_dir, tiny_home):
    """The quick scale with tiny twins of both models named explicitly (the student: e5's
    configuration at 2 layers of 32 dims, its tokenizer and prompt; conftest.tiny_e5_dir)."""
    plan = O.load_plan("quick")
    return dataclasses.replace(plan, s=dataclasses.replace(plan.s, teacher=str(tiny_minilm_dir), student=str(tiny_e5_dir)))


@pytest.mark.slow  # ~1.5 min on 2 shared cores: 22 tiny trainings, every stage, then a second invocation
def test_quick_scale_runs_every_stage_resumably(plan, tmp_path, data_root):
    runs, results = tmp_path / "runs", tmp_path / "results"
    kw = dict(runs_dir=runs, results_dir=results, figures_dir=tmp_path / "figures", root=data_root, progress=False,
              log=lambda *a: None)

    # the test and scaling stages refuse before tuning
    for stage in ("rq3-test", "rq3-scale"):
        with pytest.raises(ValueError, match="refused"):
            O.stage_runs(plan, stage, runs, results, root=data_root)
    stopped = O.reproduce_optical(plan, stages=["rq3-test"], **kw)
    assert stopped.stopped_before == "rq3-test" and not stopped.records

    # dev: 14 configurations, every one scored on both dev sets at every checkpoint
    dev = O.reproduce_optical(plan, stages=["rq3-dev"], **kw)
    assert dev.failed == [] and len(dev.records) == 14
    table = pd.read_csv(results / "tuning.csv")
    assert list(table["method"]).count("ot") == 6 and list(table["method"]).count("contrastive") == 6
    assert list(table["method"]).count("mse") == 2
    for c in plan.checkpoints:
        assert table[f"dev@{c}"].notna().all()
        mean = (table[f"dev_xquad_r@{c}"] + table[f"dev_flores@{c}"]) / 2
        assert ((table[f"dev@{c}"] - mean).abs() < 1e-3).all()
    assert (table["teacher"] == str(plan.s.teacher)).all() and table["commit"].notna().all()
    ext = json.loads((results / "extend.json").read_text())
    assert set(ext["gains"]) == {"ot", "contrastive", "mse"} and ext["test_steps"] in (6, 8)
    won = O.winners(plan, table)
    for method, s in won.items():  # the winner has the method's highest final dev score
        rows = table[table["method"] == method]
        assert rows.loc[rows["variant"] == s.run_key, "dev@6"].iloc[0] >= rows["dev@6"].max() - O.TIE
    doc = json.loads(next((results / "tuning" / "rq3").glob("*ot-divergence_content-lr*.xquad-r.dev@2.json")).read_text())
    assert doc["config"]["teacher"] == str(plan.s.teacher) and doc["config"]["start"]["method"] == "linear_map"
    assert doc["code"]["commit"]

    # test: arms x seeds, every set once; then scaling
    rest = O.reproduce_optical(plan, stages=["rq3-test", "rq3-scale"], **kw)
    assert rest.failed == [] and rest.stages == ["rq3-test", "rq3-scale"]
    files = sorted(p.name for p in (results / "rq3").glob("*.json"))
    sets = ["xquad-r.test", "flores.test.low_resource", "flores.test.unseen", "xquad.test", "xquad-r.test.english",
            "aer.roen"]
    for arm in ("teacher_only", "e5_untrained"):
        assert all(any(f.startswith(f"rq3-all-zero-shot-{arm}-s0.{s}.json") for f in files) for s in sets)
    for arm in ("mse", "contrastive_best", "ot_best", "ot_best+mse"):
        for seed in (0, 1):
            assert all(any(f.startswith(f"rq3-all-{arm}-") and f.endswith(f"-s{seed}.{s}.json") for f in files)
                       for s in sets), (arm, seed)
    aer = json.loads(next((results / "rq3").glob("rq3-all-mse-*-s1.aer.roen.json")).read_text())
    assert aer["teacher"] == str(plan.s.teacher) and 0 <= aer["results"][0]["aer"] <= 1
    eng = json.loads(next((results / "rq3").glob("rq3-all-mse-*-s1.xquad-r.test.english.json")).read_text())
    assert [r["lang"] for r in eng["results"] if r["lang"] != "all"] == ["eng_Latn"]
    scale = sorted(p.name for p in (results / "rq3-scale").glob("*.json"))
    assert len(scale) == 2 * 3 * 2  # sizes x arms x (trained, unseen)

    # the report, from the result files: every arm on every set, the Holm family, scaling, figures
    summary = pd.read_csv(results / "rq3_summary.csv")
    assert set(summary["set"]) == set(sets) and set(summary["arm"]) == set(plan.p.test.arms)
    p1 = summary[summary["set"] == "xquad-r.test"]
    assert (p1["lo"] <= p1["estimate"]).all() and (p1["estimate"] <= p1["hi"]).all() and (p1["languages"] == 1).all()
    assert (summary.loc[summary["arm"] == "mse", "seeds"] == 2).all()
    contrasts = pd.read_csv(results / "rq3_contrasts.csv")
    assert len(contrasts) == 2 * len(plan.p.statistics.family) + 1  # P1, P2 and the scaling DiD
    assert (contrasts["p_holm"] >= contrasts["p_value"]).all()
    scaling = pd.read_csv(results / "rq3_scaling.csv")
    assert set(scaling["group"]) == {"trained", "shared_5", "unseen"}
    assert {f.name for f in rest.reports} >= {"rq3_summary.csv", "rq3_contrasts.csv", "rq3_scaling.csv"} | {
        f"rq3_{name}.{ext}" for name in ("arms", "dev_curves", "contrasts", "scaling") for ext in ("png", "pdf")}

    # a second invocation trains and scores nothing
    again = O.reproduce_optical(plan, **kw)
    assert again.records == [] and again.stages == list(O.STAGES)


def test_english_control_puts_the_student_on_english_queries():
    """retrieval: english_queries="student" gives English queries of an English problem to the
    student, and keeps en->xx (non-English candidates) with the student on the candidates."""
    from optical_viz.retrieval._evaluate import _encoders_for
    from optical_viz.retrieval._tasks import RetrievalProblem

    en = RetrievalProblem("eng_Latn", "xx->en", ["q"], ["c"], [[0]], kind="qa", query_is_english=True)
    enxx = RetrievalProblem("deu_Latn", "en->xx", ["q"], ["c"], [[0]], kind="bitext", query_is_english=True)
    s, t = object(), object()
    assert _encoders_for(en, None, s, t) == (t, s)
    assert _encoders_for(en, None, s, t, "student") == (s, t)
    assert _encoders_for(enxx, None, s, t, "student") == (t, s)


def test_alignment_target_encoder_takes_the_english_side(tiny_minilm, tiny_home, data_root):
    """AER across tokenizers: the target side's tokens are the teacher's (WordPiece pieces)."""
    from optical_viz import alignment
    from optical_viz.data import load_word_alignment
    from optical_viz.encoder import load_encoder

    student, teacher = load_encoder(None), load_encoder(str(tiny_minilm))
    gold = load_word_alignment("roen", data_root)[:3]
    s, t = alignment.gold_tokens(student, gold, -1, target_encoder=teacher)
    s2, t2 = alignment.gold_tokens(student, gold, -1)
    assert s.tokens == s2.tokens and t.tokens != t2.tokens
    assert not any(tok.startswith("▁") for sent in t.tokens for tok in sent)  # WordPiece, not SentencePiece
    assert any(tok.startswith("▁") for sent in t2.tokens for tok in sent)
    out = alignment.evaluate_alignment(student, ["roen"], layers=[-1], limit=3, root=data_root, target_encoder=teacher)
    assert "->" in out["model"] and 0 <= out["results"][0]["aer"] <= 1


def test_dev_settings_follow_the_protocol():
    """14 dev configurations in the protocol's order: OT 6 (one with the sentence term),
    contrastive temperature x lr, MSE lr; every one at the protocol's seed and schedule."""
    plan = O.load_plan("full")
    settings = O.dev_settings(plan.p)
    assert [s.method for s in settings] == ["ot"] * 6 + ["contrastive"] * 6 + ["mse"] * 2
    assert settings[5].p["loss"] == "ot+mse" and settings[5].p["weights"] == "scale_probe"
    assert [(s.p["temperature"], s.p["lr"]) for s in settings[6:8]] == [(0.02, 1e-4), (0.02, 2e-4)]
    assert plan.steps == 1000 and plan.checkpoints == [250, 500, 1000] and len(plan.low_resource) == 10


def test_every_trained_run_has_the_e5_student_not_a_copy_of_the_teacher(tmp_path):
    """Bug (first RQ3 dev runs): the run configs said `student: null`, which the trainer reads as
    "a copy of the teacher": MiniLM was distilled into MiniLM (prefix '', the no-transfer floor's
    dev scores). Every config names the e5 student; the untrained-e5 arm scores the same model."""
    from optical_viz.convert import default_model_path
    from optical_viz.encoder import minilm_model_dir

    plan = O.load_plan("full")
    out = tmp_path / "runs"
    base = O.base_config(plan, plan.languages, {"bitext_sources": ["flores"]}, out)
    assert base.student == str(default_model_path()) and base.teacher == str(minilm_model_dir())
    assert base.student != base.teacher
    assert plan.student() == str(default_model_path())


def test_cli_test_stage_refuses_before_tuning(tmp_path, capsys, data_root):
    from optical_viz.cli import main

    rc = main(["reproduce", "--protocol", "optical", "--scale", "quick", "--stage", "rq3-test", "--out", str(tmp_path),
               "--quiet", "--data-root", str(data_root)])
    assert rc == 0 and "rq3-test cannot start yet" in capsys.readouterr().out
    assert not (tmp_path / "results" / "optical-quick" / "rq3").exists()
    assert main(["reproduce", "--protocol", "optical", "--stage", "rq1-dev", "--out", str(tmp_path)]) == 2
    assert "--stage rq1-dev is not a stage of --protocol optical" in capsys.readouterr().err


@pytest.mark.slow
def test_real_models_cross_model_routing(data_root):
    """Real all-MiniLM-L6-v2 and e5-small, 60 English test questions of XQuAD-R (the English
    control): a "student" that is the teacher itself (a perfect copy) scores what the teacher
    alone scores against teacher-encoded sentences, far above chance; untrained e5 queries
    against MiniLM sentences (no map: two unrelated spaces) are near chance. The AER of e5's
    Romanian tokens against MiniLM's English tokens is a number in [0, 1] on two tokenizers."""
    from optical_viz import alignment, retrieval
    from optical_viz.cache import EmbeddingCache
    from optical_viz.encoder import load_encoder, minilm_model_dir

    plan = O.load_plan("full")
    ids = O.rq1_question_ids(O.load_stage_protocol("full"), "test", root=data_root)[:60]
    teacher, copy, e5 = (load_encoder(str(minilm_model_dir())), load_encoder(str(minilm_model_dir())),
                         load_encoder(None))
    for enc in (teacher, copy, e5):
        enc.progress = False

    def r1(student, **kw):
        rep = retrieval.evaluate("xquad-r", student=student, teacher=teacher, langs=["eng_Latn"], directions=["xx->en"],
                                 query_ids=ids, cache=EmbeddingCache(":memory:"), student_cache=EmbeddingCache(":memory:"),
                                 progress=False, n_bootstrap=0, root=data_root, **kw)
        return 100 * float(rep.frame[rep.frame["lang"] == "eng_Latn"]["recall@1"].iloc[0])

    alone = retrieval.evaluate("xquad-r", encoder=teacher, langs=["eng_Latn"], directions=["xx->en"], query_ids=ids,
                               cache=EmbeddingCache(":memory:"), progress=False, n_bootstrap=0, root=data_root)
    alone_r1 = 100 * float(alone.frame[alone.frame["lang"] == "eng_Latn"]["recall@1"].iloc[0])
    assert abs(r1(copy, english_queries="student") - alone_r1) < 1e-6 and alone_r1 > 30
    assert r1(e5, english_queries="student") < 5  # chance is 1/1180
    out = alignment.evaluate_alignment(e5, ["roen"], layers=[-1], limit=20, root=data_root, target_encoder=teacher)
    assert 0 <= out["results"][0]["aer"] <= 1 and out["model"].count("->") == 1
    assert plan.p.models.teacher.name == "all-MiniLM-L6-v2"
