"""optical_viz.alignment: hard links, word links, AER on hand-checkable cases, real gold."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from optical_viz.alignment import (
    ALIGNERS,
    AlignConfig,
    Alignment,
    align,
    evaluate_alignment,
    extract_links,
    plans,
    score_alignments,
    word_links,
)


def _gold(sure, possible=()):
    return SimpleNamespace(sure=set(sure), possible=set(sure) | set(possible))


# ----------------------------------------------------------------------------- extraction

# rows: source tokens, columns: target tokens
PLAN = torch.tensor(
    [
        [0.30, 0.02, 0.00],
        [0.01, 0.20, 0.12],
        [0.00, 0.00, 0.05],
        [0.00, 0.10, 0.20],
    ]
)


def test_inter_union_by_hand():
    # row argmax: 0->0, 1->1, 2->2, 3->2; column argmax: 0<-0, 1<-1, 2<-3
    assert extract_links(PLAN, "inter") == {(0, 0), (1, 1), (3, 2)}
    assert extract_links(PLAN, "union") == {(0, 0), (1, 1), (2, 2), (3, 2)}


def test_grow_diag_adds_neighbouring_union_links_only_for_unaligned_tokens():
    # (2, 2) is in the union, next to (3, 2) and (1, 1), and source token 2 is unaligned
    assert extract_links(PLAN, "grow-diag") == {(0, 0), (1, 1), (2, 2), (3, 2)}
    far = torch.tensor([[0.4, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.1, 0.2]])
    # union link (1, 0)? row 1 argmax is column 0 (ties -> first); (1, 0) neighbours (0, 0)
    assert (1, 0) in extract_links(far, "grow-diag") and (1, 0) not in extract_links(far, "inter")


def test_threshold_is_relative_to_one_to_one_mass():
    # max(T, S) = 4: threshold 0.5 -> plan >= 0.125
    assert extract_links(PLAN, "threshold", threshold=0.5) == {(0, 0), (1, 1), (3, 2)}
    # 0.45 -> plan >= 0.1125: adds 0.12 at (1, 2) but not 0.10 at (3, 1)
    assert extract_links(PLAN, "threshold", threshold=0.45) == {(0, 0), (1, 1), (1, 2), (3, 2)}


def test_itermax_aligns_a_left_over_token():
    # source 2 and target 2 are unaligned by "inter"
    sim = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.7], [0.1, 0.75, 0.2]])
    assert extract_links(sim, "inter") == {(0, 0), (1, 1)}
    # second round: entries with one free side are weighted 0.9, with none 0: row 2's
    # argmax is (2, 1) 0.675 and column 1's too; row 1's is (1, 2) 0.63 and column 2's too
    assert extract_links(sim, "itermax") == {(0, 0), (1, 1), (2, 1), (1, 2)}


def test_softmax_extraction_by_hand():
    p = torch.tensor([[0.5, 0.0], [0.1, 0.4]])
    # rows normalised: [1, 0], [0.2, 0.8]; columns normalised: [5/6, 1/6], [0, 1]
    assert extract_links(p, "softmax", threshold=0.1) == {(0, 0), (1, 0), (1, 1)}
    assert extract_links(p, "softmax", threshold=0.5) == {(0, 0), (1, 1)}
    assert extract_links(p, "softmax", threshold=0.19) == {(0, 0), (1, 1)}  # 1/6 < 0.19 < 0.2
    # default 1e-3 (awesome-align's): every entry with mass both ways
    assert extract_links(p, "softmax") == {(0, 0), (1, 0), (1, 1)}
    # a row without mass (partial transport) links nothing instead of dividing by zero
    assert extract_links(torch.tensor([[0.0, 0.0], [0.3, 0.7]]), "softmax") == {(1, 0), (1, 1)}


def test_softmax_extraction_on_the_dot_plan_is_awesome_aligns():
    """awesome-align: softmax(x . y) over target tokens and over source tokens, both > 1e-3."""
    x = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # (1, T=3, H=2)
    y = torch.tensor([[[3.0, 0.0], [0.0, 3.0]]])  # (1, S=2, H=2)
    m_x, m_y = torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool)
    plan = plans(x, y, m_x, m_y, method="dot")[0]
    dots = torch.tensor([[6.0, 0.0], [0.0, 3.0], [3.0, 3.0]])  # x . y by hand
    torch.testing.assert_close(plan, torch.exp(dots) / torch.exp(dots).sum())
    # by hand: softmax over s (rows) [[.9975, .0025], [.0474, .9526], [.5, .5]];
    # over t (columns) [[.9503, .0243], [.0024, .4879], [.0473, .4879]]
    assert extract_links(plan, "softmax") == {(t, s) for t in range(3) for s in range(2)}  # all > 1e-3
    assert extract_links(plan, "softmax", threshold=0.003) == {(0, 0), (1, 1), (2, 0), (2, 1)}
    assert extract_links(plan, "softmax", threshold=0.1) == {(0, 0), (1, 1), (2, 1)}


def test_extraction_rejects_bad_input():
    with pytest.raises(ValueError, match="extraction must be one of"):
        extract_links(PLAN, "max")
    with pytest.raises(ValueError, match=r"\(T, S\).*\[3\]"):
        extract_links(torch.ones(3), "inter")


def test_word_links_aggregate_subwords():
    # source words: "play" "ing" -> word 0 (two tokens), "well" -> word 1
    assert word_links({(0, 0), (1, 0), (2, 1)}, [0, 0, 1], [0, 1]) == {(0, 0), (1, 1)}
    assert word_links(set(), [0], [0]) == set()


# ----------------------------------------------------------------------------- scores


def test_aer_precision_recall_by_hand():
    gold = [_gold({(0, 0), (1, 1)}, {(2, 2)})]
    perfect = score_alignments([{(0, 0), (1, 1)}], gold)
    assert (perfect.aer, perfect.precision, perfect.recall, perfect.f1) == (0.0, 1.0, 1.0, 1.0)
    # A = {(0,0), (2,2), (0,1)}: |A&S| = 1, |A&P| = 2, |A| = 3, |S| = 2
    s = score_alignments([{(0, 0), (2, 2), (0, 1)}], gold)
    assert s.aer == pytest.approx(1 - 3 / 5)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(1 / 2)
    assert s.f1 == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    # corpus-level: counts are summed, not averaged per sentence
    both = score_alignments([{(0, 0), (1, 1)}, set()], gold + [_gold({(0, 0)})])
    assert both.aer == pytest.approx(1 - 4 / 5) and both.n == 2
    with pytest.raises(ValueError, match="2 predicted alignments for 1 gold"):
        score_alignments([set(), set()], gold)


# ----------------------------------------------------------------------------- plans


def test_plans_every_method_has_shape_and_zero_padding():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 4, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    xm = torch.tensor([[True] * 4, [True, True, False, False]])
    ym = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    pad = ~(xm[:, :, None] & ym[:, None, :])
    for method in ALIGNERS:
        p = plans(x, y, xm, ym, method=method, eps=0.1)
        assert p.shape == (2, 4, 5) and (p >= 0).all() and (p[pad] == 0).all(), method
    # a planted permutation is recovered by every method (partial OT moves only 80% of the
    # mass, so the threshold rule would rightly drop its worst pair: use argmaxes)
    perm = torch.tensor([2, 0, 3, 1])
    y2 = x[:, perm] + 0.01 * torch.randn(2, 4, 8, generator=g)
    for method in ALIGNERS:
        p = plans(x, y2, torch.ones(2, 4, dtype=torch.bool), torch.ones(2, 4, dtype=torch.bool), method=method, eps=0.05)
        assert extract_links(p[0], "inter") == {(int(perm[j]), j) for j in range(4)}, method


# ----------------------------------------------------------------------------- with the model


def test_align_real_pair(encoder):
    al = align(encoder, "The cat sleeps on the sofa .", "Le chat dort sur le canapé .")
    assert isinstance(al, Alignment)
    assert al.plan.shape == (len(al.src_tokens), len(al.tgt_tokens))
    assert len(al.src_word_ids) == len(al.src_tokens) and al.src_words[1] == "cat"
    assert not any(t in ("<s>", "</s>") for t in al.src_tokens + al.tgt_tokens)
    assert al.plan.sum().item() == pytest.approx(1.0, abs=1e-4)
    # the easy content words are linked
    assert {(1, 1), (2, 2), (6, 6)} <= al.word_links
    default = AlignConfig()
    assert (al.method, al.eps, al.layer, al.extraction) == (default.method, default.eps, default.layer, default.extraction)


@pytest.mark.slow  # ~15 s on an idle 2-core CPU, up to ~60 s when it is shared
def test_divergence_view_shows_the_ab_plan_and_the_debiased_value(encoder):
    div = align(encoder, "The cat sleeps .", "Le chat dort .", method="divergence")
    ent = align(encoder, "The cat sleeps .", "Le chat dort .", method="sinkhorn")
    torch.testing.assert_close(div.plan, ent.plan)  # the (a, b) plan of the divergence
    assert ent.value is None and div.value > 0
    same = align(encoder, "The cat sleeps .", "The cat sleeps .", method="divergence")
    assert abs(same.value) < 1e-4 < div.value  # S_eps(x, x) = 0: no entropic bias


def test_evaluate_alignment_on_real_gold(encoder, data_root):
    doc = evaluate_alignment(
        encoder, pairs=None, methods=("sinkhorn", "emd"), layers=(AlignConfig().layer,), extraction=("inter", "union"), root=data_root, limit=20
    )
    assert doc["task"] == "alignment" and doc["model"] == encoder.name
    rows = doc["results"]
    assert {r["pair"] for r in rows} == {"deen", "enfr", "roen"}
    assert len(rows) == 3 * 2 * 2 and doc["notes"] == []
    keys = {"pair", "method", "extraction", "layer", "eps", "n", "aer", "precision", "recall", "f1"}
    for r in rows:
        assert keys <= set(r) and r["n"] == 20
        assert 0 <= r["aer"] <= 1 and 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
    by = {(r["pair"], r["method"], r["extraction"]): r for r in rows}
    # far better than chance on en-fr; union trades precision for recall
    assert by["enfr", "sinkhorn", "inter"]["aer"] < 0.25
    assert by["enfr", "sinkhorn", "union"]["recall"] >= by["enfr", "sinkhorn", "inter"]["recall"]
    assert by["enfr", "sinkhorn", "union"]["precision"] <= by["enfr", "sinkhorn", "inter"]["precision"]


def test_gold_tokens_without_a_subword_piece_are_unaligned_words(encoder, tmp_path):
    """Bug 7 of issue 25: U+3000, zero-width characters and lone combining marks in a gold
    file are the gold's words; those that yield no subword piece are counted in a note and
    scored as unaligned, never an error."""
    wa = tmp_path / "word_alignment"
    wa.mkdir()
    lines = [
        ("猫 が \u3000 寝る", "the cat sleeps", "1-2 4-3 3-1"),  # U+3000 is word 3, gold-linked to "the"
        ("le \u200b chat", "the cat", "1-1 3-2"),  # zero-width space
        ("a \u0301 b \u200d", "a b", "1-1 3-2"),  # lone combining mark, zero-width joiner at the end
        ("\u3000", "x", "1-1"),  # a sentence without any token on one side
        ("the cat", "le chat", "1-1 2-2"),
    ]
    (wa / "xxyy.src-tgt").write_text("".join(f"{a} ||| {b}\n" for a, b, _ in lines), encoding="utf-8")
    (wa / "xxyy.gold").write_text("".join(f"{g}\n" for _, _, g in lines), encoding="utf-8")
    doc = evaluate_alignment(encoder, ["xxyy"], methods=("sinkhorn", "similarity"), layers=(6,),
                             extraction=("inter", "threshold"), root=tmp_path)
    # no piece: U+3000 (twice), U+200B, U+200D; the combining mark yields "▁́" and is a word
    assert doc["notes"] == ["xxyy: 4 gold words yield no subword token (Unicode spaces such as U+3000, "
                            "zero-width characters) and are scored as unaligned"]
    assert all(r["n"] == 5 and 0 < r["aer"] < 1 for r in doc["results"])
    from optical_viz.alignment import alignments_from_plan, plans_nonempty, gold_tokens, unalignable_words
    from optical_viz.data import load_word_alignment

    gold = load_word_alignment("xxyy", root=tmp_path)
    s, t = gold_tokens(encoder, gold, 6)
    assert s.words[0] == ["猫", "が", "\u3000", "寝る"] and 2 not in s.word_ids[0]
    assert unalignable_words(s) == 4 and unalignable_words(t) == 0
    als = alignments_from_plan(s, t, plans_nonempty(s, t, "sinkhorn", 0.05), "threshold", "sinkhorn", 0.05, 6, None)
    assert all(i != 2 for i, _ in als[0].word_links) and als[3].word_links == set()
    assert 1 in s.word_ids[2] and 3 not in s.word_ids[2]  # the mark has a piece, the joiner none
    assert {(0, 0), (1, 1)} <= als[4].word_links
