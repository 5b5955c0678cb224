"""Word-alignment sweep (layers x plans x extractions on every gold pair) and leave-one-pair-out
selection of the default setting.

A *setting* is one row of the sweep: plan method, its parameter (eps, rho, mass), extraction
and layer. Settings are grouped into *families* (similarity argmax, softmax, itermax,
Sinkhorn, unbalanced, partial, EMD): a family's free parameters (layer, eps, extraction...)
are what selection chooses. Leave-one-pair-out: for each gold pair, choose a family's
setting on the other pairs (lowest mean AER), score it on the held-out pair; the family with
the lowest mean held-out AER is the default, shipped with the setting that is best on all
pairs (its expected AER on a new pair is the held-out one, not that setting's own).

>>> rows = sweep(load_encoder(), cache_dir="/tmp/wa-cache")         # doctest: +SKIP
>>> lopo = leave_one_pair_out(rows)                                   # doctest: +SKIP
>>> lopo.default, lopo.setting                                        # doctest: +SKIP
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

__all__ = [
    "PLANS",
    "EXTRACTIONS_OF",
    "FAMILIES",
    "family_of",
    "sweep",
    "FoldChoice",
    "FamilyLOPO",
    "LOPOResult",
    "leave_one_pair_out",
    "write_results",
]

# the plans of the sweep: (method, parameter name, values); eps of "similarity" is the softmax
# temperature of its cosine matrix (argmax and itermax do not depend on it)
PLANS: tuple[tuple[str, str | None, tuple[float, ...]], ...] = (
    ("similarity", "eps", (0.02, 0.05, 0.1)),
    ("dot", None, (None,)),
    ("sinkhorn", "eps", (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)),
    ("unbalanced", "rho", (0.1, 0.5)),  # eps 0.05
    ("partial", "mass", (0.9,)),  # exact partial OT (POT, per sentence) is the slow one
    ("emd", None, (None,)),
)
UNBALANCED_EPS = 0.05
# extractions (with their threshold) read off each kind of plan
EXTRACTIONS_OF = {
    "similarity": (("inter", None), ("itermax", None), ("softmax", 1e-3)),
    "dot": (("inter", None), ("itermax", None), ("softmax", 1e-3)),
    "ot": (("inter", None), ("itermax", None), ("grow-diag", None), ("threshold", 0.3), ("threshold", 0.5),
           ("threshold", 0.7)),
}
FAMILIES = ("argmax", "softmax", "itermax", "sinkhorn", "unbalanced", "partial", "emd")
OT_FAMILIES = ("sinkhorn", "unbalanced", "partial", "emd")


def family_of(row: dict) -> str | None:
    """The family of a sweep row: "argmax" (similarity/dot with inter), "softmax", "itermax"
    (similarity/dot), or the OT method ("sinkhorn", "unbalanced", "partial", "emd")."""
    if row["method"] in ("similarity", "dot"):
        return {"inter": "argmax", "softmax": "softmax", "itermax": "itermax"}.get(row["extraction"])
    return row["method"] if row["method"] in OT_FAMILIES else None


def _cell(v):
    """None for a missing value (None, NaN or "" as a CSV read back gives them)."""
    return None if v is None or v == "" or (isinstance(v, float) and v != v) else v


def _setting_key(row: dict) -> tuple:
    return tuple(_cell(row.get(k)) for k in ("method", "param", "value", "extraction", "threshold", "layer"))


# --------------------------------------------------------------------------- the sweep


def _all_layer_tokens(encoder, gold, prefix: str, cache: Path | None, name: str):
    """Per layer (0..L), source and target ``Tokens`` of the gold's words, from one forward
    pass per side (all hidden states), cached under ``cache`` when given."""
    from optical_viz.alignment import Tokens, tokens_of

    layers = list(range(encoder.num_layers + 1))
    out = {}
    for side in ("src", "tgt"):
        words = [list(getattr(g, side)) for g in gold]
        # ".tokens": the pickled class is alignment.Tokens (files of its earlier private name are not read)
        file = cache / f"{name}.{side}.{encoder.identity[:16]}.tokens.pt" if cache is not None else None
        if file is not None and file.is_file():
            with torch.serialization.safe_globals([Tokens]):  # our own cache: Tokens is safe to load
                out[side] = torch.load(file)
            continue
        tb = encoder.embed_tokens(None, layer=0, prefix=prefix, words=words)
        base = tokens_of(tb, allow_empty=True)  # tokens, word ids, mask of the gold's words
        keep = [[k for k, w in enumerate(wids) if w is not None] for wids in tb.word_ids]
        per_layer = torch.zeros(len(layers), *base.emb.shape)  # (L+1, B, T, H)
        ids, mask = tb.input_ids.cpu(), tb.mask.cpu()
        for start in range(0, len(words), 32):
            sl = slice(start, start + 32)
            with torch.inference_mode():
                hs = encoder.model(input_ids=ids[sl].to(encoder.device), attention_mask=mask[sl].long().to(encoder.device),
                                   output_hidden_states=True).hidden_states  # L+1 x (b, t, H)
            for i in range(ids[sl].shape[0]):
                k = keep[start + i]
                for layer in layers:
                    per_layer[layer, start + i, : len(k)] = hs[layer][i, k].float().cpu()  # (t_i, H)
        out[side] = {"base": base, "emb": per_layer}
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            torch.save(out[side], file)
    return out


def sweep(
    encoder,
    pairs: Sequence[str] | None = None,
    root=None,
    *,
    layers: Iterable[int] | None = None,
    prefix: str = "",
    cache_dir: str | Path | None = None,
    limit: int | None = None,
    plans: Sequence[tuple[str, str | None, tuple]] = PLANS,
    progress: bool = True,
) -> list[dict]:
    """AER of every (pair, layer, plan, extraction) on the gold sets.

    Hidden states of all layers come from one forward pass per pair and side. Returns rows
    ``{"pair", "family", "method", "param", "value", "eps", "extraction", "threshold",
    "layer", "n", "aer", "precision", "recall", "f1", "unalignable"}`` (``unalignable``:
    gold words of the pair that yield no subword token, scored as unaligned).
    """
    from dataclasses import replace

    from tqdm.auto import tqdm

    from optical_viz.alignment import alignments_from_plan, plans_nonempty, score_alignments, unalignable_words
    from optical_viz.data import load_word_alignment, word_alignment_pairs

    pairs = list(pairs) if pairs is not None else word_alignment_pairs(root)
    layers = list(layers) if layers is not None else list(range(encoder.num_layers + 1))
    cache = Path(cache_dir) if cache_dir is not None else None
    rows = []
    for pair in pairs:
        gold = load_word_alignment(pair, root)[:limit]
        tok = _all_layer_tokens(encoder, gold, prefix, cache, f"{pair}-{len(gold)}-{prefix!r}")
        n_un = unalignable_words(tok["src"]["base"]) + unalignable_words(tok["tgt"]["base"])
        for layer in tqdm(layers, desc=f"sweep {pair}", unit="layer", disable=not progress):
            s = replace(tok["src"]["base"], emb=tok["src"]["emb"][layer].float())
            t = replace(tok["tgt"]["base"], emb=tok["tgt"]["emb"][layer].float())
            for method, param, values in plans:
                for value in values:
                    kw = {} if param in (None, "eps") else {param: value}
                    eps = value if param == "eps" else UNBALANCED_EPS if method == "unbalanced" else None
                    plan = plans_nonempty(s, t, method, eps if eps is not None else 0.05, **kw)
                    kind = method if method in ("similarity", "dot") else "ot"
                    for extraction, threshold in EXTRACTIONS_OF[kind]:
                        if method == "similarity" and extraction != "softmax" and value != values[0]:
                            continue  # argmaxes do not depend on the temperature
                        als = alignments_from_plan(s, t, plan, extraction, method, eps, layer, threshold)
                        sc = score_alignments([a.word_links for a in als], gold)
                        row = {"pair": pair, "method": method, "param": param, "value": value, "eps": eps,
                               "extraction": extraction, "threshold": threshold, "layer": layer, "n": sc.n,
                               "aer": sc.aer, "precision": sc.precision, "recall": sc.recall, "f1": sc.f1,
                               "unalignable": n_un}
                        if method == "similarity" and extraction != "softmax":
                            row.update(param=None, value=None, eps=None)
                        row["family"] = family_of(row)
                        rows.append(row)
    return rows


# --------------------------------------------------------------------------- selection


@dataclass
class FoldChoice:
    """One fold: the setting chosen on the other pairs and its AER on the held-out pair."""

    held_out: str
    setting: dict  # method, param, value, eps, extraction, threshold, layer
    train_aer: float  # mean AER over the other pairs
    held_out_aer: float


@dataclass
class FamilyLOPO:
    """Leave-one-pair-out result of one family: one fold per pair, and the setting best on all."""

    family: str
    folds: list[FoldChoice]
    mean_held_out_aer: float
    setting_all: dict  # chosen on every pair: what a default ships
    aer_all: dict[str, float]  # that setting's (in-sample) AER per pair


@dataclass
class LOPOResult:
    """``families``: per family its folds; ``default``: the family with the lowest mean
    held-out AER; ``setting``: its setting chosen on all pairs."""

    pairs: list[str]
    families: dict[str, FamilyLOPO] = field(default_factory=dict)
    default: str = ""
    setting: dict = field(default_factory=dict)

    def held_out(self, family: str | None = None) -> dict[str, float]:
        """Held-out AER per pair of ``family`` (default: the default family)."""
        return {f.held_out: f.held_out_aer for f in self.families[family or self.default].folds}


_SETTING_FIELDS = ("method", "param", "value", "eps", "extraction", "threshold", "layer")


def _best(by_setting: dict[tuple, dict[str, dict]], pairs: Sequence[str]) -> tuple[tuple, float]:
    """The setting with the lowest mean AER over ``pairs`` (ties: the first in sweep order)."""
    best, best_aer = None, float("inf")
    for key, per_pair in by_setting.items():
        if not all(p in per_pair for p in pairs):
            continue
        aer = sum(per_pair[p]["aer"] for p in pairs) / len(pairs)
        if aer < best_aer - 1e-12:
            best, best_aer = key, aer
    if best is None:
        raise ValueError(f"no setting was scored on every pair of {list(pairs)}")
    return best, best_aer


def leave_one_pair_out(rows: Sequence[dict], families: Sequence[str] | None = None) -> LOPOResult:
    """Leave-one-pair-out selection over sweep rows (see the module docstring).

    rows      dicts with at least "pair", "family" (or what :func:`family_of` needs), "method",
              "extraction", "layer", "aer"; optional "param", "value", "eps", "threshold"
    families  the families competing for the default (default: every family in ``rows``)
    returns   :class:`LOPOResult`; needs at least two pairs

    >>> r = [dict(pair=p, family="f", method="m", extraction="e", layer=l, aer=a)
    ...      for p, l, a in [("a", 1, .1), ("a", 2, .2), ("b", 1, .3), ("b", 2, .1)]]
    >>> [(c.held_out, c.setting["layer"]) for c in leave_one_pair_out(r).families["f"].folds]
    [('a', 2), ('b', 1)]
    """
    pairs = sorted({r["pair"] for r in rows})
    if len(pairs) < 2:
        raise ValueError(f"leave-one-pair-out needs at least two pairs, got {pairs}")
    grouped: dict[str, dict[tuple, dict[str, dict]]] = {}
    for r in rows:
        fam = _cell(r.get("family")) or family_of(r)
        if fam is None:
            continue
        grouped.setdefault(fam, {}).setdefault(_setting_key(r), {})[r["pair"]] = r
    names = [f for f in (families if families is not None else grouped) if f in grouped]
    if not names:
        raise ValueError(f"no sweep row belongs to the families {list(families or [])}")
    out = LOPOResult(pairs=pairs)
    for fam in names:
        folds = []
        for held in pairs:
            train = [p for p in pairs if p != held]
            key, train_aer = _best(grouped[fam], train)
            row = grouped[fam][key][held]
            folds.append(FoldChoice(held, {k: _cell(row.get(k)) for k in _SETTING_FIELDS}, train_aer, row["aer"]))
        key_all, _ = _best(grouped[fam], pairs)
        per_pair = grouped[fam][key_all]
        out.families[fam] = FamilyLOPO(
            fam, folds, sum(f.held_out_aer for f in folds) / len(folds),
            {k: _cell(per_pair[pairs[0]].get(k)) for k in _SETTING_FIELDS}, {p: per_pair[p]["aer"] for p in pairs},
        )
    out.default = min(out.families, key=lambda f: out.families[f].mean_held_out_aer)
    out.setting = out.families[out.default].setting_all
    return out


def argmax_at_layer(rows: Sequence[dict], pair: str, layer: int) -> float:
    """AER of similarity argmax (cosine, inter) on ``pair`` at ``layer``."""
    for r in rows:
        if r["pair"] == pair and r["method"] == "similarity" and r["extraction"] == "inter" and r["layer"] == layer:
            return r["aer"]
    raise ValueError(f"no similarity-argmax row for {pair} at layer {layer}")


# --------------------------------------------------------------------------- results on disk


def write_results(rows: Sequence[dict], lopo: LOPOResult, out_dir: str | Path, provenance: dict,
                  published: dict[str, dict[str, float]] | None = None) -> dict[str, Path]:
    """``sweep.csv`` (every row), ``heldout.json`` (the selection, with provenance) and
    ``heldout.md`` (the held-out table) under ``out_dir``."""
    import csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["pair", "family", "method", "param", "value", "eps", "extraction", "threshold", "layer", "n",
            "aer", "precision", "recall", "f1", "unalignable"]
    with open(out / "sweep.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            cells = {k: r.get(k) for k in cols}
            w.writerow({k: (f"{v:.6f}" if isinstance(v, float) and k in ("aer", "precision", "recall", "f1")
                            else "" if v is None else v) for k, v in cells.items()})
    argmax_same = {
        f.held_out: argmax_at_layer(rows, f.held_out, f.setting["layer"]) for f in lopo.families[lopo.default].folds
    }
    best_ot = min(OT_FAMILIES, key=lambda f: lopo.families[f].mean_held_out_aer if f in lopo.families else 9.0)
    argmax_ot = {f.held_out: argmax_at_layer(rows, f.held_out, f.setting["layer"]) for f in lopo.families[best_ot].folds}
    doc = {
        "task": "alignment-lopo",
        **provenance,
        "pairs": lopo.pairs,
        "selection": "leave-one-pair-out: per family, its setting (layer, eps/rho/mass, extraction, threshold) "
                     "is chosen on the other pairs (lowest mean AER) and scored on the held-out pair; the "
                     "default family has the lowest mean held-out AER and ships its setting chosen on all pairs",
        "default": lopo.default,
        "setting": lopo.setting,
        "held_out_aer": lopo.held_out(),
        "argmax_same_layer_aer": argmax_same,
        "best_ot_family": best_ot,
        "best_ot_held_out_aer": lopo.held_out(best_ot),
        "argmax_same_layer_as_best_ot_aer": argmax_ot,
        "families": {k: asdict(v) for k, v in lopo.families.items()},
        "published": published or {},
    }
    (out / "heldout.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    md = [f"# Word alignment, held-out AER (%) by leave-one-pair-out ({provenance.get('model', '')}, "
          f"commit {str(provenance.get('commit', ''))[:10]}, {provenance.get('date', '')})", "",
          "| family | " + " | ".join(lopo.pairs) + " | mean | setting chosen on all pairs |",
          "|---|" + "---|" * (len(lopo.pairs) + 2)]
    for fam, res in sorted(lopo.families.items(), key=lambda kv: kv[1].mean_held_out_aer):
        held = {f.held_out: f.held_out_aer for f in res.folds}
        mark = " (default)" if fam == lopo.default else ""
        md.append(f"| {fam}{mark} | " + " | ".join(f"{100 * held[p]:.1f}" for p in lopo.pairs)
                  + f" | {100 * res.mean_held_out_aer:.1f} | {describe(res.setting_all)} |")
    md += ["", f"Similarity argmax at the layer the default chose in each fold: "
           + ", ".join(f"{p} {100 * a:.1f}" for p, a in argmax_same.items()), ""]
    (out / "heldout.md").write_text("\n".join(md), encoding="utf-8")
    return {"sweep": out / "sweep.csv", "heldout": out / "heldout.json", "table": out / "heldout.md"}


def describe(setting: dict) -> str:
    """One line: ``sinkhorn eps=0.05, threshold 0.5, layer 6``."""
    m = setting["method"]
    par = f" {setting['param']}={setting['value']}" if setting.get("param") else ""
    if m == "unbalanced":
        par += f" eps={setting.get('eps')}"
    ex = setting["extraction"] + (f" {setting['threshold']}" if setting.get("threshold") is not None else "")
    return f"{m}{par}, {ex}, layer {setting['layer']}"


def provenance(encoder) -> dict:
    """Commit, model and date of a sweep."""
    from optical_viz.experiments.run import code_version

    return {"model": encoder.name, "code": code_version(), "commit": code_version()["commit"],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
