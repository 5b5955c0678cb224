"""Soft token alignment from transport plans, hard word links, and scoring against gold.

A plan (T, S) between the real (non-special) tokens of a source and a target sentence is
turned into hard token links by an *extraction* rule, token links into whitespace-word
links (a word pair is linked if any of their subwords are), and word links are scored
against gold sure/possible links with AER, precision, recall and F1.

The aligners (:data:`ALIGNERS`) and extractions (:data:`EXTRACTIONS`) are named in
:mod:`optical_viz.options`, with :class:`AlignConfig`, the aligner's setting whose defaults
(the leave-one-pair-out setting) every function here, ``optical-viz align``, ``optical-viz
evaluate alignment`` and the alignment explorer start from.

>>> from optical_viz.encoder import load_encoder
>>> al = align(load_encoder(), "The cat sleeps .", "Le chat dort .")
>>> sorted(al.word_links)                                         # doctest: +SKIP
[(0, 0), (1, 1), (2, 2), (3, 3)]
"""
from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from optical_viz import transport
# the aligners (OT solvers, "similarity", "dot"), the link extractions and the aligner's setting
from optical_viz.options import ALIGNERS, EXTRACTIONS, AlignConfig

_DEFAULT = AlignConfig()  # the leave-one-pair-out setting: the defaults of the functions below
THRESHOLD_FRACTION = 0.5  # the "threshold" extraction's cut: this fraction of the one-to-one mass 1 / max(T, S)
SOFTMAX_THRESHOLD = 1e-3  # awesome-align's default for both conditional probabilities
MAX_ITER = 300  # Sinkhorn iterations for alignment: the argmax links settle long before tol


@dataclass
class Alignment:
    """One aligned sentence pair: what the heatmap and the widgets show.

    src_tokens, tgt_tokens     real tokens (special and prefix tokens dropped), T and S
    plan                       (T, S) float32 transport plan between those tokens (CPU)
    src_words, tgt_words       whitespace words of the two texts
    src_word_ids, tgt_word_ids per token, the index of its word
    token_links                set of (t, s) hard token links
    word_links                 set of (i, j) word links: (i, j) if any subword link joins them
    value                      method "divergence": the debiased Sinkhorn divergence
                               S_eps = OT_eps(a, b) - OT_eps(a, a) / 2 - OT_eps(b, b) / 2 of
                               the pair (its plan is the (a, b) plan); None for the others
    """

    src_tokens: list[str]
    tgt_tokens: list[str]
    plan: Tensor
    src_words: list[str]
    tgt_words: list[str]
    word_links: set[tuple[int, int]]
    token_links: set[tuple[int, int]]
    src_word_ids: list[int]
    tgt_word_ids: list[int]
    method: str
    eps: float
    layer: int
    extraction: str = _DEFAULT.extraction
    value: float | None = None


@dataclass
class AlignmentScore:
    """Corpus-level scores (counts summed over sentences, as in Och & Ney 2003).

    aer = 1 - (|A & S| + |A & P|) / (|A| + |S|); precision = |A & P| / |A|;
    recall = |A & S| / |S|; f1 = harmonic mean of precision and recall.
    """

    aer: float
    precision: float
    recall: float
    f1: float
    n: int  # sentence pairs
    predicted: int = 0  # |A|
    sure: int = 0  # |S|


# --------------------------------------------------------------------------- hard links


def _check_plan(plan: Tensor) -> Tensor:
    if not isinstance(plan, Tensor) or plan.dim() != 2 or 0 in plan.shape:
        raise ValueError(f"plan must be a non-empty (T, S) tensor, got {getattr(plan, 'shape', type(plan))}")
    return plan.detach().float().cpu()


def _argmax_masks(p: Tensor) -> tuple[Tensor, Tensor]:
    """(T, S) bool: forward (row argmax) and backward (column argmax) links."""
    T, S = p.shape
    fwd = torch.zeros(T, S, dtype=torch.bool)
    fwd[torch.arange(T), p.argmax(dim=1)] = True
    bwd = torch.zeros(T, S, dtype=torch.bool)
    bwd[p.argmax(dim=0), torch.arange(S)] = True
    return fwd, bwd


def _grow_diag(inter: Tensor, union: Tensor) -> Tensor:
    """Koehn's grow-diag: add union links adjacent (8-neighbourhood) to current links that
    align a so far unaligned source or target token, until nothing changes."""
    links = inter.clone()
    T, S = links.shape
    neighbours = [(-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]
    changed = True
    while changed:
        changed = False
        for i, j in links.nonzero().tolist():
            for di, dj in neighbours:
                a, b = i + di, j + dj
                if 0 <= a < T and 0 <= b < S and union[a, b] and not links[a, b]:
                    if not links[a].any() or not links[:, b].any():
                        links[a, b] = True
                        changed = True
    return links


def _itermax(p: Tensor, max_count: int = 2, alpha: float = 0.9) -> Tensor:
    """SimAlign's IterMax: repeat the argmax intersection, down-weighting (by ``alpha``) rows
    and columns that are already aligned, so that unaligned tokens can find a partner."""
    fwd, bwd = _argmax_masks(p)
    inter = (fwd & bwd).float()
    T, S = p.shape
    if min(T, S) <= 2:
        return inter.bool()
    for _ in range(max_count - 1):
        free_x = 1.0 - inter.sum(1, keepdim=True).clamp(0, 1).expand(T, S)  # (T, S) 1 on unaligned rows
        free_y = 1.0 - inter.sum(0, keepdim=True).clamp(0, 1).expand(T, S)  # (T, S) 1 on unaligned cols
        if free_x.sum() < 1 or free_y.sum() < 1:
            break
        weight = (alpha * free_x + alpha * free_y).clamp(0, 1)
        either_free = 1.0 - (1.0 - free_x) * (1.0 - free_y)
        f, b = _argmax_masks(p * weight)
        new = (f & b).float() * either_free
        if not bool((new * (1 - inter)).any()):
            break
        inter = (inter + new).clamp(0, 1)
    return inter.bool()


def _softmax_links(p: Tensor, threshold: float) -> Tensor:
    """(T, S) bool: both conditionals of the plan above ``threshold``: p[t, s] / sum_s' p[t, s']
    (the row softmax of log p) and p[t, s] / sum_t' p[t', s] (the column softmax). On
    p = exp(logits) / Z these are awesome-align's softmax(logits) over rows and over columns;
    a row or column without mass links nothing."""
    rows = p / p.sum(1, keepdim=True).clamp_min(1e-30)  # (T, S) rows sum to 1
    cols = p / p.sum(0, keepdim=True).clamp_min(1e-30)  # (T, S) columns sum to 1
    return (rows > threshold) & (cols > threshold)


def extract_links(plan: Tensor, extraction: str = _DEFAULT.extraction, threshold: float | None = None) -> set[tuple[int, int]]:
    """Hard token links from a plan.

    plan        (T, S) non-negative plan (or any similarity: larger = more aligned)
    extraction  "inter": row argmax and column argmax agree (SimAlign's ArgMax);
                "union": either argmax; "grow-diag": the intersection grown into the union
                (Koehn et al. 2003); "threshold": plan[t, s] >= threshold / max(T, S), the
                one-to-one mass of a uniform plan (default THRESHOLD_FRACTION 0.5); "itermax": SimAlign's
                IterMax; "softmax": awesome-align's extraction, the row- and the
                column-normalised plan both > threshold (default SOFTMAX_THRESHOLD 1e-3): on the "dot" plan
                exp(x . y) / Z exactly softmax(x . y) over rows and over columns
    returns     set of (t, s)

    >>> sorted(extract_links(torch.tensor([[0.5, 0.0], [0.1, 0.4]]), "inter"))
    [(0, 0), (1, 1)]
    """
    p = _check_plan(plan)
    T, S = p.shape
    if extraction == "threshold":
        links = p >= (THRESHOLD_FRACTION if threshold is None else threshold) / max(T, S)
    elif extraction == "softmax":
        links = _softmax_links(p, SOFTMAX_THRESHOLD if threshold is None else threshold)
    elif extraction == "itermax":
        links = _itermax(p)
    elif extraction in ("inter", "union", "grow-diag"):
        fwd, bwd = _argmax_masks(p)
        if extraction == "inter":
            links = fwd & bwd
        elif extraction == "union":
            links = fwd | bwd
        else:
            links = _grow_diag(fwd & bwd, fwd | bwd)
    else:
        raise ValueError(f"extraction must be one of {EXTRACTIONS}, got {extraction!r}")
    return {(int(i), int(j)) for i, j in links.nonzero().tolist()}


def word_links(token_links: Iterable[tuple[int, int]], src_word_ids: Sequence[int], tgt_word_ids: Sequence[int]) -> set[tuple[int, int]]:
    """Word links from token links: (i, j) if any token of word i links to a token of word j.

    >>> sorted(word_links({(0, 0), (1, 0), (2, 1)}, [0, 0, 1], [0, 1]))
    [(0, 0), (1, 1)]
    """
    return {(src_word_ids[t], tgt_word_ids[s]) for t, s in token_links}


def score_alignments(predicted: Sequence[set[tuple[int, int]]], gold: Sequence) -> AlignmentScore:
    """AER, precision, recall, F1 of predicted word links against gold (``GoldAlignment``
    with ``sure`` and ``possible`` sets, ``possible`` including ``sure``), over the corpus.

    >>> from types import SimpleNamespace as G
    >>> s = score_alignments([{(0, 0), (1, 1)}], [G(sure={(0, 0)}, possible={(0, 0), (1, 1)})])
    >>> (s.aer, s.precision, s.recall)
    (0.0, 1.0, 1.0)
    """
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predicted alignments for {len(gold)} gold alignments")
    a = s = a_s = a_p = 0
    for pred, g in zip(predicted, gold):
        possible = set(g.possible) | set(g.sure)
        a += len(pred)
        s += len(g.sure)
        a_s += len(pred & set(g.sure))
        a_p += len(pred & possible)
    precision = a_p / a if a else 0.0
    recall = a_s / s if s else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    aer = 1.0 - (a_s + a_p) / (a + s) if a + s else 0.0
    return AlignmentScore(aer=aer, precision=precision, recall=recall, f1=f1, n=len(gold), predicted=a, sure=s)


# --------------------------------------------------------------------------- plans from embeddings


@dataclass
class Tokens:
    """Real-word tokens of a batch of sentences, padded: what the plans are computed on."""

    emb: Tensor  # (B, T, H), zero at padding
    mask: Tensor  # (B, T) bool
    tokens: list[list[str]]
    word_ids: list[list[int]]
    words: list[list[str]]


def _embed(encoder, texts: list[str] | None, layer: int, prefix: str, batch_size: int = 32, *,
           words: list[list[str]] | None = None, side: str = "texts") -> Tokens:
    """Token embeddings with special and prefix tokens dropped (word id None). ``words``
    instead of ``texts``: pre-tokenized words (gold tokens), kept as they are; a sentence
    whose words yield no token at all is then kept with no token (all-False mask row).
    ``side`` names the texts in errors ("source texts")."""
    tb = encoder.embed_tokens(texts, layer=layer, prefix=prefix, batch_size=batch_size, words=words)
    return tokens_of(tb, allow_empty=words is not None, side=side)


def tokens_of(tb, allow_empty: bool = False, side: str = "texts") -> Tokens:
    """``Tokens`` of a ``TokenBatch``: the real-word tokens, left-aligned and re-padded."""
    # a "word" of invisible characters only (U+200B ZERO WIDTH SPACE, U+3000, U+FEFF) is no word:
    # its tokens are dropped, so it is never aligned
    keep = [[k for k, w in enumerate(wids) if w is not None and not is_invisible(tb.words[i][w])]
            for i, wids in enumerate(tb.word_ids)]
    empty = [i for i, k in enumerate(keep) if not k]
    if empty and not allow_empty:
        raise ValueError(f"{side} {empty[:10]} have no token besides special tokens (empty text?)")
    B, T = len(keep), max(max((len(k) for k in keep), default=0), 1)  # T >= 1: a batch of empty sentences
    emb = torch.zeros(B, T, tb.embeddings.shape[-1], dtype=tb.embeddings.dtype)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for i, k in enumerate(keep):
        emb[i, : len(k)] = tb.embeddings[i, k].cpu()  # (t_i, H): real-word tokens of sentence i
        mask[i, : len(k)] = True
    return Tokens(
        emb=emb,
        mask=mask,
        tokens=[[tb.tokens[i][k] for k in keep[i]] for i in range(B)],
        word_ids=[[tb.word_ids[i][k] for k in keep[i]] for i in range(B)],
        words=tb.words,
    )


def is_invisible(word: str) -> bool:
    """Whether ``word`` has only format (Cf), separator (Z*) or control (Cc) characters."""
    return all(unicodedata.category(c)[0] == "Z" or unicodedata.category(c) in ("Cf", "Cc") for c in word)


def plans(
    x: Tensor,
    y: Tensor,
    x_mask: Tensor,
    y_mask: Tensor,
    method: str = _DEFAULT.method,
    eps: float = _DEFAULT.eps,
    **kw,
) -> Tensor:
    """Alignment plans for a batch: cosine cost, then ``method``.

    x (B, T, H), y (B, S, H) token embeddings; x_mask (B, T), y_mask (B, S) bool
    returns (B, T, S) plans, zero at padding ("divergence": the entropic plan of (a, b) that
    the debiased divergence is built on; see :func:`divergences` for its value; "dot":
    exp(x . y) / Z over the real pairs, no cosine and no eps)
    """
    if method not in ALIGNERS:
        raise ValueError(f"method must be one of {ALIGNERS}, got {method!r}")
    if method == "divergence":
        method = "sinkhorn"
    if method == "dot":
        pair = x_mask[:, :, None] & y_mask[:, None, :]
        logits = torch.einsum("bth,bsh->bts", x.float(), y.float()).masked_fill(~pair, float("-inf"))  # (B, T, S)
        B = logits.shape[0]
        return torch.softmax(logits.reshape(B, -1), dim=1).reshape(logits.shape).nan_to_num(0.0)  # (B, T*S) -> (B, T, S)
    cost = transport.cost_matrix(x, y, "cosine", x_mask, y_mask)  # (B, T, S)
    if method == "similarity":
        pair = x_mask[:, :, None] & y_mask[:, None, :]
        logits = (-cost / eps).masked_fill(~pair, float("-inf"))
        B = cost.shape[0]
        return torch.softmax(logits.reshape(B, -1), dim=1).reshape(cost.shape)  # (B, T*S) -> (B, T, S)
    kw.setdefault("grad", "none")
    if method in ("sinkhorn", "unbalanced"):
        kw.setdefault("max_iter", MAX_ITER)
        with warnings.catch_warnings():
            # links come from argmaxes, which settle long before the marginals reach tol
            warnings.filterwarnings("ignore", "sinkhorn", RuntimeWarning)
            return transport.solve(cost, x_mask, y_mask, method=method, eps=eps, **kw).plan
    return transport.solve(cost, x_mask, y_mask, method=method, eps=eps, **kw).plan


def plans_nonempty(src: Tokens, tgt: Tokens, method: str, eps: float, **kw) -> Tensor:
    """:func:`plans` of the sentences with a token on both sides; zero plans for the others
    (gold sentences whose every word yields no token). Returns (B, T, S)."""
    ok = src.mask.any(1) & tgt.mask.any(1)  # (B,)
    if bool(ok.all()):
        return plans(src.emb, tgt.emb, src.mask, tgt.mask, method, eps, **kw)
    out = torch.zeros(len(ok), src.emb.shape[1], tgt.emb.shape[1])
    if bool(ok.any()):
        idx = ok.nonzero().squeeze(1)
        out[idx] = plans(src.emb[idx], tgt.emb[idx], src.mask[idx], tgt.mask[idx], method, eps, **kw).float()
    return out


def unalignable_words(tokens: Tokens) -> int:
    """How many words of ``tokens`` (pre-tokenized gold words) got no subword token: a Unicode
    space such as U+3000, a zero-width character. They can only be scored as unaligned."""
    return sum(len(w) - len(set(ids)) for w, ids in zip(tokens.words, tokens.word_ids))


def divergences(x: Tensor, y: Tensor, x_mask: Tensor, y_mask: Tensor, eps: float = _DEFAULT.eps) -> Tensor:
    """(B,) debiased Sinkhorn divergences between the token clouds of each pair (cosine
    cost as the plans', eps in its units, uniform over real tokens): 0 when the two sentences'
    tokens coincide. :func:`optical_viz.losses.ot_loss` with objective "divergence", solved to
    the budget of a plan asked for on its own (transport.SINKHORN_MAX_ITER / SINKHORN_TOL): a
    value reported, not a training step's."""
    from optical_viz.losses import ot_loss

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "sinkhorn", RuntimeWarning)
        return ot_loss(x.float(), y.float(), x_mask, y_mask, objective="divergence", metric="cosine", eps=eps,
                       eps_mode="absolute", max_iter=transport.SINKHORN_MAX_ITER, tol=transport.SINKHORN_TOL).per_example


def alignments_from_plan(src: Tokens, tgt: Tokens, plan: Tensor, extraction: str, method: str, eps: float, layer: int,
                threshold: float, values: Tensor | None = None) -> list[Alignment]:
    """One :class:`Alignment` per sentence of ``plan`` (B, T, S): hard links by ``extraction``,
    mapped to words; ``method``, ``eps``, ``layer`` are recorded, ``values`` (B,) as each pair's value."""
    out = []
    for i in range(plan.shape[0]):
        t, s = len(src.tokens[i]), len(tgt.tokens[i])
        p = plan[i, :t, :s].float()  # (t, s) real-word tokens only
        tl = extract_links(p, extraction, threshold) if t and s else set()  # no token: nothing to link
        out.append(
            Alignment(
                src_tokens=src.tokens[i],
                tgt_tokens=tgt.tokens[i],
                plan=p,
                src_words=src.words[i],
                tgt_words=tgt.words[i],
                word_links=word_links(tl, src.word_ids[i], tgt.word_ids[i]),
                token_links=tl,
                src_word_ids=src.word_ids[i],
                tgt_word_ids=tgt.word_ids[i],
                method=method,
                eps=eps,
                layer=layer,
                extraction=extraction,
                value=None if values is None else float(values[i]),
            )
        )
    return out


def align(
    encoder,
    src: str,
    tgt: str,
    method: str = _DEFAULT.method,
    eps: float = _DEFAULT.eps,
    layer: int = _DEFAULT.layer,
    extraction: str = _DEFAULT.extraction,
    *,
    prefix: str = "",
    threshold: float | None = None,
    **solver_kw,
) -> Alignment:
    """Align one sentence pair: token embeddings of ``layer`` (without the e5 "query: "
    prefix by default), cosine cost between real tokens, plan by ``method``, hard links by
    ``extraction``, word links. Extra keywords go to the solver (e.g. ``rho``, ``mass``).
    """
    return align_batch(encoder, [src], [tgt], method, eps, layer, extraction, prefix=prefix, threshold=threshold, **solver_kw)[0]


def align_batch(
    encoder,
    srcs: Sequence[str],
    tgts: Sequence[str],
    method: str = _DEFAULT.method,
    eps: float = _DEFAULT.eps,
    layer: int = _DEFAULT.layer,
    extraction: str = _DEFAULT.extraction,
    *,
    prefix: str = "",
    threshold: float | None = None,
    **solver_kw,
) -> list[Alignment]:
    """``align`` for lists of sentence pairs (batched encoding and solving)."""
    if len(srcs) != len(tgts):
        raise ValueError(f"{len(srcs)} source texts for {len(tgts)} target texts")
    if extraction not in EXTRACTIONS:
        raise ValueError(f"extraction must be one of {EXTRACTIONS}, got {extraction!r}")
    s = _embed(encoder, list(srcs), layer, prefix, side="source texts")
    t = _embed(encoder, list(tgts), layer, prefix, side="target texts")
    plan = plans(s.emb, t.emb, s.mask, t.mask, method, eps, **solver_kw)
    values = divergences(s.emb, t.emb, s.mask, t.mask, eps) if method == "divergence" else None
    return alignments_from_plan(s, t, plan, extraction, method, eps, layer, threshold, values)


# --------------------------------------------------------------------------- evaluation


def evaluate_alignment(
    encoder,
    pairs: Sequence[str] | None = None,
    methods: Sequence[str] = (_DEFAULT.method,),
    layers: Sequence[int] = (_DEFAULT.layer,),
    extraction: str | Sequence[str] = _DEFAULT.extraction,
    eps: float | Sequence[float] = _DEFAULT.eps,
    root=None,
    *,
    prefix: str = "",
    limit: int | None = None,
    threshold: float | None = None,
    target_encoder=None,
    **solver_kw,
) -> dict:
    """Score word alignments on the gold files ``word_alignment/XXYY.*`` of the data root.

    pairs       e.g. ["enfr", "roen"]; None -> every pair present in the data root
    methods, layers; extraction and eps may be one value or several (a grid)
    limit       score only the first ``limit`` sentence pairs of each file (quick runs)
    threshold   of the "threshold" and "softmax" extractions (None: their defaults); extra
                keywords go to the solver (``rho``, ``mass``)
    target_encoder  encodes the target side of every pair (``en`` of ``roen``) when it is not
                ``encoder`` (None: ``encoder`` encodes both), e.g. a student's Romanian tokens
                against its teacher's English tokens: two tokenizers, each side's words from its
                own tokenizer's word ids, the cost between the two models' token vectors
                (the same hidden size)
    returns     {"task": "alignment", "model": encoder.name, "results": [{"pair", "method",
                "extraction", "layer", "eps", "n", "aer", "precision", "recall", "f1"}, ...],
                "notes": [...]} (one row per combination; "similarity" ignores the marginals
                but uses eps as its temperature; "emd", "partial" and "dot" ignore eps; a
                note counts the gold words that yield no subword token, scored as unaligned)
    """
    from tqdm.auto import tqdm  # widgets in JupyterLab, text in a terminal

    from optical_viz.data import load_word_alignment, word_alignment_pairs

    pairs = list(pairs) if pairs is not None else word_alignment_pairs(root)
    if not pairs:
        raise ValueError("no word_alignment pair found in the data root")
    extractions = [extraction] if isinstance(extraction, str) else list(extraction)
    epss = [eps] if isinstance(eps, (int, float)) else list(eps)
    for m in methods:
        if m not in ALIGNERS:
            raise ValueError(f"method must be one of {ALIGNERS}, got {m!r}")
    for e in extractions:
        if e not in EXTRACTIONS:
            raise ValueError(f"extraction must be one of {EXTRACTIONS}, got {e!r}")
    results, notes = [], []
    for pair in pairs:
        gold = load_word_alignment(pair, root)[:limit]
        for k, layer in enumerate(tqdm(layers, desc=f"alignment {pair}", unit="layer")):
            s, t = gold_tokens(encoder, gold, layer, prefix, target_encoder=target_encoder)
            if k == 0 and (n_un := unalignable_words(s) + unalignable_words(t)):
                notes.append(f"{pair}: {n_un} gold words yield no subword token (Unicode spaces such as U+3000, "
                             "zero-width characters) and are scored as unaligned")
            for method in methods:
                for e in epss if method not in ("emd", "partial", "dot") else epss[:1]:
                    plan = plans_nonempty(s, t, method, e, **solver_kw)
                    for ex in extractions:
                        als = alignments_from_plan(s, t, plan, ex, method, e, layer, threshold)
                        sc = score_alignments([a.word_links for a in als], gold)
                        results.append(
                            {
                                "pair": pair,
                                "method": method,
                                "extraction": ex,
                                "layer": layer,
                                "eps": e if method not in ("emd", "partial", "dot") else None,
                                "n": sc.n,
                                "aer": sc.aer,
                                "precision": sc.precision,
                                "recall": sc.recall,
                                "f1": sc.f1,
                            }
                        )
    model = encoder.name if target_encoder is None else f"{encoder.name} -> {target_encoder.name}"
    return {"task": "alignment", "model": model, "results": results, "notes": notes}


def gold_tokens(encoder, gold: Sequence, layer: int, prefix: str = "", *,
                target_encoder=None) -> tuple[Tokens, Tokens]:
    """Source and target tokens of gold alignments (``GoldAlignment``), on the gold's own words:
    ``words[i]`` is ``gold[i].src`` exactly, so word indices are the gold's indices; a gold
    token that yields no subword piece (U+3000, a zero-width character) is a word without
    tokens (see :func:`unalignable_words`), never an error. target_encoder: encodes the
    target side (None: ``encoder``); its layer ``layer`` too, and its own prompt-free words."""
    s = _embed(encoder, None, layer, prefix, words=[list(g.src) for g in gold])
    t = _embed(target_encoder or encoder, None, layer, prefix, words=[list(g.tgt) for g in gold])
    if s.emb.shape[-1] != t.emb.shape[-1]:
        raise ValueError(f"target_encoder: hidden size {t.emb.shape[-1]} != the encoder's {s.emb.shape[-1]}; "
                         "token costs need one space")
    return s, t


__all__ = [
    "ALIGNERS",
    "EXTRACTIONS",
    "AlignConfig",
    "divergences",
    "SOFTMAX_THRESHOLD",
    "THRESHOLD_FRACTION",
    "Alignment",
    "AlignmentScore",
    "extract_links",
    "word_links",
    "score_alignments",
    "plans",
    "plans_nonempty",
    "Tokens",
    "tokens_of",
    "alignments_from_plan",
    "align",
    "align_batch",
    "evaluate_alignment",
    "gold_tokens",
    "unalignable_words",
    "is_invisible",
]
