"""The pre-registered protocol (results/full/protocol.yaml) and its typed loader, on the
committed files and the real XQuAD / XQuAD-R / config files."""
from __future__ import annotations

import copy
from collections import Counter

import pytest
import yaml

from optical_viz import protocol as P
from optical_viz.data import loaders

REPO = P.PROTOCOL_PATH.parent.parent.parent
XQUAD_LANGS = ["ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"]
XQUAD_R_LANGS = [lang for lang in XQUAD_LANGS if lang != "ro"]


@pytest.fixture(scope="module")
def protocol() -> P.Protocol:
    return P.load_protocol()


@pytest.fixture(scope="module")
def raw() -> dict:
    """The committed YAML without validation, to be mutated by the rejection tests."""
    with open(P.PROTOCOL_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def articles(data_root) -> dict[tuple[str, str], dict[str, str]]:
    """(set, lang) -> question id -> article title, for all 23 language files."""
    out = {("xquad", lang): P.question_articles("xquad", lang, data_root) for lang in XQUAD_LANGS}
    out.update({("xquad_r", lang): P.question_articles("xquad_r", lang, data_root) for lang in XQUAD_R_LANGS})
    return out


def _config(name: str) -> dict:
    with open(REPO / "configs" / name, encoding="utf-8") as f:
        return yaml.safe_load(f)


# ----------------------------------------------------------------------------- splits on real data


def test_article_lists_partition_the_48_real_articles(protocol, articles):
    split = protocol.splits.rq1
    dev, test = set(split.dev_articles), set(split.test_articles)
    real = set(articles[("xquad_r", "en")].values())
    assert len(real) == 48 == split.n_articles
    assert not dev & test
    assert dev | test == real
    assert (len(dev), len(test)) == (16, 32)


def test_split_is_the_stated_seeded_procedure(protocol, articles):
    split = protocol.splits.rq1
    real = set(articles[("xquad", "en")].values())
    dev, test = P.split_articles(real, seed=split.seed, n_dev=split.n_dev)
    assert dev == split.dev_articles
    assert test == split.test_articles


def test_every_question_of_every_language_maps_to_one_listed_article(protocol, articles, data_root):
    split = protocol.splits.rq1
    dev, test = set(split.dev_articles), set(split.test_articles)
    reference = articles[("xquad_r", "en")]
    for lang in XQUAD_R_LANGS:
        loaded = loaders.load_xquad_r(lang, data_root)
        ids = [q.id for q in loaded.questions]
        mapping = articles[("xquad_r", lang)]
        assert len(ids) == len(set(ids)) == 1190
        assert set(ids) == set(mapping), lang
        # the same article as in English and as in XQuAD for that language
        assert mapping == reference, lang
        assert mapping == articles[("xquad", lang)], lang
        where = Counter(("dev" if mapping[i] in dev else "test" if mapping[i] in test else "none") for i in ids)
        assert where == {"dev": split.questions_per_language["dev"], "test": split.questions_per_language["test"]}, lang
    # Romanian is in XQuAD only (RQ1's XQuAD paragraph task)
    assert articles[("xquad", "ro")] == reference


def test_article_of_a_question_agrees_with_its_gold_paragraph(protocol, articles, data_root):
    """The loader's gold paragraph of a question lies in the paragraphs of its article."""
    en = loaders.load_xquad("en", data_root)
    mapping = articles[("xquad", "en")]
    paragraph_article: dict[int, str] = {}
    for q in en.questions:
        previous = paragraph_article.setdefault(q.paragraph, mapping[q.id])
        assert previous == mapping[q.id]  # a paragraph never spans two articles
    assert len(paragraph_article) == 240
    # articles are contiguous runs of paragraphs, in file order
    runs = [paragraph_article[i] for i in sorted(paragraph_article)]
    changes = sum(a != b for a, b in zip(runs, runs[1:]))
    assert changes == 47


def test_maxsim_subset_is_fixed_and_inside_test(protocol, articles):
    test_articles = set(protocol.splits.rq1.test_articles)
    test_ids = [i for i, t in articles[("xquad_r", "en")].items() if t in test_articles]
    a = P.maxsim_subset(test_ids, 300, seed=2026)
    assert a == P.maxsim_subset(reversed(test_ids), 300, seed=2026)
    assert len(set(a)) == 300 and set(a) <= set(test_ids)
    assert a != P.maxsim_subset(test_ids, 300, seed=2027)
    with pytest.raises(ValueError, match="asked for 800"):
        P.maxsim_subset(test_ids, 800, seed=0)


# ----------------------------------------------------------------------------- splits: procedure


def test_split_articles_partitions_and_is_deterministic():
    titles = [f"t{i:02d}" for i in range(48)]
    dev, test = P.split_articles(titles, seed=5, n_dev=16)
    assert (len(dev), len(test)) == (16, 32)
    assert sorted(dev + test) == titles
    assert (dev, test) == P.split_articles(reversed(titles), seed=5, n_dev=16)  # input order does not matter
    assert dev != P.split_articles(titles, seed=6, n_dev=16)[0]
    with pytest.raises(ValueError, match="unique"):
        P.split_articles(["a", "a", "b"], seed=0, n_dev=1)
    with pytest.raises(ValueError, match="n_dev"):
        P.split_articles(["a", "b"], seed=0, n_dev=2)


# ----------------------------------------------------------------------------- consistency with the repository


def test_published_variant_is_the_committed_grid_setting(protocol):
    published = protocol.tuning.rq1.ot.variants["published"]
    assert (published.loss, published.weights) == ("ot", None)
    for name in ("rq1.yaml", "rq2-5.yaml", "rq2-50.yaml"):
        ot = _config(name)["loss"]["ot"]
        assert {k: ot[k] for k in P.OT_FIELDS} == published.ot, name
    assert _config("rq1.yaml")["lr"] == protocol.tuning.rq1.ot.lr


def test_rq2_sizes_nested_shared_and_unseen(protocol):
    rq2 = protocol.splits.rq2
    sets = {n: _config(path.split("/")[-1])["languages"] for n, path in rq2.sizes.items()}
    assert sorted(sets) == [5, 10, 20, 50] and all(len(sets[n]) == n for n in sets)
    assert sets[5] == rq2.shared_languages
    for small, big in ((5, 10), (10, 20), (20, 50)):
        assert sets[big][:small] == sets[small]
    unseen = _config("rq2-unseen.yaml")["unseen_languages"]
    assert len(unseen) == rq2.unseen.n_languages == 20
    assert not set(unseen) & set(sets[50])


def test_rq1_primary_languages_are_trained_and_in_xquad_r(protocol, data_root):
    langs = protocol.metrics.primary.rq1.languages
    assert set(langs) <= set(_config("rq1.yaml")["languages"])
    codes = {loaders.load_xquad_r(lang, data_root).lang for lang in XQUAD_R_LANGS if lang != "en"}
    assert set(langs) == codes


def test_budget_run_counts_follow_the_tuning_and_test_sections(protocol):
    stages = protocol.budget.stages
    dev_runs = sum(P.tuning_budget(protocol, "rq1", m) for m in P.TRAINED_METHODS)
    assert dev_runs == 18
    test = protocol.test
    trained_rq1 = [a for a, s in test.rq1.arms.items() if s.method != "zero-shot"]
    trained_rq2 = [a for a, s in test.rq2.arms.items() if s.method != "zero-shot"]
    rq1_test = len(trained_rq1) * len(test.rq1.seeds) - 4  # seed 0 of mse, contrastive, ot published, ot best
    rq2_test = len(trained_rq2) * len(test.rq2.sizes) * len(test.rq2.seeds) - 2  # size 20 seed 0 of the 2 tuned
    rq2_dev = sum(protocol.tuning.rq2.budget.values())
    expected = {"rq1_dev": dev_runs, "rq1_test": rq1_test, "rq2_dev": rq2_dev, "rq2_test": rq2_test}
    for stage, n in expected.items():
        assert sum(stages[stage].runs.values()) == n, stage
        assert sum(stages[stage].worst.values()) == n, stage
    assert stages["rq1_test"].models_evaluated == len(trained_rq1) * len(test.rq1.seeds) + 1


def test_estimate_fits_four_hours_on_two_processes(protocol):
    est = P.estimate(protocol)
    assert est["expected"] <= 1.05 * 4 * 3600
    assert est["expected"] < est["worst"]
    one = copy.deepcopy(protocol)
    one.budget.processes = 1
    assert P.estimate(one)["expected"] == pytest.approx(2 * est["expected"])


# ----------------------------------------------------------------------------- the validator rejects


def _mutated(raw, edit):
    p = copy.deepcopy(raw)
    edit(p)
    return p


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["splits"]["rq1"]["test_articles"].append(p["splits"]["rq1"]["dev_articles"][0]), "twice|share"),
        (lambda p: p["splits"]["rq1"]["test_articles"].pop(), r"16 \+ 31 articles"),
        (lambda p: p["splits"]["rq1"].update(seed=2027), "stated procedure"),
        (lambda p: p["test"]["rq1"].update(seeds=[0, 1, "2"]), r"test\.rq1\.seeds\.2: expected an integer"),
        (lambda p: p["test"]["rq1"].update(seeds=[0, 1, 1]), "distinct ints"),
        (lambda p: p["test"]["rq2"].update(seeds=[0]), "at least 2"),
        (lambda p: p["tuning"]["rq1"]["mse"].pop("budget"), "mse: no budget"),
        (lambda p: p["tuning"]["rq1"]["contrastive"]["grid"]["lr"].append(5e-5), "grid of 12"),
        (lambda p: p["tuning"]["rq1"]["ot"]["variants"]["emd"].update(objective="entropic"), "variants.emd"),
        (lambda p: p["tuning"]["rq1"]["ot"]["variants"]["unbalanced"].pop("rho"), r"missing \['rho'\]"),
        (lambda p: p["training"].update(steps=150), ">= 200"),
        (lambda p: p["test"].update(refuse_unless_tuned=False), "refuse_unless_tuned"),
        (lambda p: p["statistics"]["contrasts"]["rq1"].append(["ot_best", "nope"]), "not in test.rq1.arms"),
        (lambda p: p["budget"]["stages"]["rq2_test"]["runs"].update(light=40), "estimate_wall_s.expected"),
        (lambda p: p.pop("statistics"), "missing section 'statistics'"),
    ],
)
def test_validator_rejects(raw, edit, message):
    P.parse_protocol(raw)  # the committed file passes
    with pytest.raises(ValueError, match=message) as info:
        P.parse_protocol(_mutated(raw, edit))
    assert str(info.value).startswith("protocol.yaml: ") and "\n" not in str(info.value)


def test_validator_rejects_a_grid_that_does_not_fit(raw, protocol):
    bigger = copy.deepcopy(protocol)
    bigger.budget.stages["rq2_test"].runs["light"] = 60
    est = P.estimate(bigger)

    def edit(p):
        p["budget"]["stages"]["rq2_test"]["runs"]["light"] = 60
        p["budget"]["estimate_wall_s"] = est  # consistent, but over the limit
    with pytest.raises(ValueError, match="exceeds the 14400 s wall limit"):
        P.parse_protocol(_mutated(raw, edit))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["tuning"]["rq1"]["contrastive"]["grid"].update(lr="fast"), r"tuning\.rq1\.contrastive\.grid\.lr: expected a list"),
        (lambda p: p["training"].update(stpes=200), r"training\.stpes: unknown key; did you mean 'steps'\?"),
        (lambda p: p["test"]["rq1"]["arms"]["mse"].update(setting="worst"), r"test\.rq1\.arms\.mse\.setting: 'worst' is not one of"),
    ],
)
def test_errors_name_the_key(raw, edit, message):
    with pytest.raises(ValueError, match=message):
        P.parse_protocol(_mutated(raw, edit))


@pytest.mark.parametrize("scale", sorted(P.PROTOCOLS))
def test_every_committed_protocol_loads_typed(scale):
    p = P.load_stage_protocol(scale)
    assert p.scale == scale
    assert p.checkpoints[-1] == p.training.steps == p.tuning.steps
    assert p.methods["ot+contrastive"].parts == ["ot", "contrastive"]
    assert p.metrics.maxsim.max_queries == 300 and [m.pair for m in p.metrics.aer] == ["roen"]
    assert (p.budget is not None) == (scale == "full") and p.limits.prune == (scale == "quick")
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        P.load_stage_protocol("huge")


def test_load_names_the_file(tmp_path, raw):
    bad = copy.deepcopy(raw)
    bad["training"]["steps"] = 150
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match=r"^mine\.yaml: training\.steps must be >= 200, got 150$"):
        P.load_protocol(path)


# ----------------------------------------------------------------------------- the test-stage gate


def _rows(question, method, n, steps=200):
    return [{"question": question, "method": method, "variant": f"v{i}", "steps": steps} for i in range(n)]


def test_require_tuned_refuses_until_every_dev_configuration_exists(protocol):
    with pytest.raises(ValueError, match=r"refused: tuning of 'ot' is not finished \(7 of 8"):
        P.require_tuned(protocol, "rq1", "ot", _rows("rq1", "ot", 7))
    with pytest.raises(ValueError, match="0 of 8"):  # rows at 100 steps do not count
        P.require_tuned(protocol, "rq1", "ot", _rows("rq1", "ot", 8, steps=100))
    with pytest.raises(ValueError, match="0 of 8"):  # nor rows of another question
        P.require_tuned(protocol, "rq1", "ot", _rows("rq2", "ot", 8))
    P.require_tuned(protocol, "rq1", "ot", _rows("rq1", "ot", 8))
    P.require_tuned(protocol, "rq1", "mse", _rows("rq1", "mse", 2))
    P.require_tuned(protocol, "rq1", "zero-shot", [])


def test_require_tuned_combined_method_needs_both_parts(protocol):
    with pytest.raises(ValueError, match="'contrastive' is not finished"):
        P.require_tuned(protocol, "rq1", "ot+contrastive", _rows("rq1", "ot", 8))
    P.require_tuned(protocol, "rq1", "ot+contrastive", _rows("rq1", "ot", 8) + _rows("rq1", "contrastive", 8))
    with pytest.raises(ValueError, match="gives 'mse' no dev budget for rq2"):
        P.require_tuned(protocol, "rq2", "mse", _rows("rq2", "mse", 2))
    P.require_tuned(protocol, "rq2", "ot", _rows("rq2", "ot", 2))
    with pytest.raises(ValueError, match="not in the protocol"):
        P.require_tuned(protocol, "rq1", "bm25", [])
