"""`optical-viz align "SRC" "TGT"`: word links of one sentence pair, and a plan heatmap.

    optical-viz align "The cat sleeps ." "Le chat dort ." --method sinkhorn --eps 0.05 --png plan.png
"""
from __future__ import annotations

import math
from pathlib import Path

from optical_viz.commands import check_writable
# the aligners, extractions and the default setting, from the vocabulary module (no torch: fast --help)
from optical_viz.options import ALIGNERS, EXTRACTIONS, AlignConfig

# the heatmap shows at most this many tokens per side (a 2,000-word text would otherwise give a
# 21,000 px wide PNG whose labels nobody can read)
MAX_HEATMAP_TOKENS = 120
# what matplotlib's savefig writes (the suffix chooses the format)
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".svgz", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".eps", ".ps")


def register(sub) -> None:
    default = AlignConfig()
    p = sub.add_parser("align", help="align the words of two sentences with a transport plan")
    p.add_argument("src", help="source sentence (whitespace-separated words)")
    p.add_argument("tgt", help="target sentence")
    p.add_argument("--method", choices=ALIGNERS, default=None, help=f"plan solver (default: {default.method})")
    p.add_argument("--eps", type=float, default=None, help=f"entropic regularisation (default: {default.eps})")
    p.add_argument("--layer", type=int, default=None, help=f"encoder layer (default: {default.layer})")
    p.add_argument("--extraction", choices=EXTRACTIONS, default=None, help=f"hard-link rule (default: {default.extraction})")
    p.add_argument("--model", default=None, help="model name or directory (default: the converted default model)")
    p.add_argument("--png", type=Path, default=None, help="save a heatmap of the plan to this file")
    p.set_defaults(func=_run)


def check_args(args) -> None:
    """What can be checked before the model loads (15-20 s): the texts, --eps, --layer
    (against the model directory's config.json) and --png."""
    for side, text in (("source", args.src), ("target", args.tgt)):
        if not text.strip():
            raise ValueError(f"the {side} text is empty: give a sentence of whitespace-separated words")
    if args.eps is not None and not (math.isfinite(args.eps) and args.eps > 0):
        raise ValueError(f"--eps must be a finite number > 0 (in cost units), got {args.eps}")
    if args.layer is not None:
        n = _num_layers(args.model)
        if n is not None and not -n - 1 <= args.layer <= n:
            raise ValueError(f"--layer must be in [{-n - 1}, {n}] for this {n}-layer model "
                             f"(0 = embeddings, -1 = last), got {args.layer}")
    if args.png is not None:
        if args.png.suffix.lower() not in FIGURE_SUFFIXES:
            raise ValueError(f"--png {args.png}: the file name must end in one of {', '.join(FIGURE_SUFFIXES)} "
                             "(the suffix chooses the image format)")
        check_writable(args.png, "--png")


def _num_layers(model) -> int | None:
    """num_hidden_layers of a model directory's config.json (None: not a local directory yet)."""
    import json

    if model is None:
        from optical_viz.convert import default_model_path

        model = default_model_path()
    try:
        return int(json.loads((Path(model) / "config.json").read_text())["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a hub name or a damaged directory: load_encoder reports it


def settings(args) -> AlignConfig:
    """The aligner's setting of the command line: the default with the options given."""
    return AlignConfig.with_options(method=args.method, eps=args.eps, layer=args.layer, extraction=args.extraction)


def _run(args) -> int:
    check_args(args)
    from optical_viz import alignment as A
    from optical_viz.encoder import load_encoder

    enc = load_encoder(args.model)
    al = A.align(enc, args.src, args.tgt, **settings(args).align_kwargs())
    print(f"{enc.name}  method={al.method} eps={al.eps} layer={al.layer} extraction={al.extraction}")
    for i, j in sorted(al.word_links):
        print(f"{i:>3} {al.src_words[i]:<20} -> {j:>3} {al.tgt_words[j]}")
    for side, words, ids in (("source", al.src_words, al.src_word_ids), ("target", al.tgt_words, al.tgt_word_ids)):
        cut = _truncated(words, ids)
        if cut:
            shown = " ".join(cut[:8]) + (" ..." if len(cut) > 8 else "")
            print(f"{side} text truncated to the model's {len(ids)} tokens: its last {len(cut)} of "
                  f"{len(words)} words were not read and are not aligned ({shown})")
    read = len(_kept(al.src_words, al.src_word_ids))
    unaligned = [w for i, w in enumerate(al.src_words[:read])
                 if all(i != a for a, _ in al.word_links) and not A.is_invisible(w)]  # not U+200B
    if unaligned:
        print(f"unaligned source words: {' '.join(unaligned)}")
    if args.png is not None:
        _save_heatmap(al, args.png)
        print(f"wrote {args.png}")
    return 0


def _kept(words: list[str], word_ids: list[int]) -> list[str]:
    """The words the model read (those with at least one token after truncation)."""
    return words[: max(word_ids) + 1] if word_ids else []


def _truncated(words: list[str], word_ids: list[int]) -> list[str]:
    """The words cut off by the model's maximum length."""
    return words[len(_kept(words, word_ids)):]


def _save_heatmap(al, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from optical_viz.plots import missing_glyphs, plot_plan, publication_style

    h, w = min(len(al.src_tokens), MAX_HEATMAP_TOKENS), min(len(al.tgt_tokens), MAX_HEATMAP_TOKENS)
    title = f"{al.method}, eps={al.eps}, layer {al.layer}"
    if (h, w) != (len(al.src_tokens), len(al.tgt_tokens)):
        title += f"\nfirst {h} x {w} of {len(al.src_tokens)} x {len(al.tgt_tokens)} tokens"
        print(f"heatmap: the first {h} x {w} of {len(al.src_tokens)} x {len(al.tgt_tokens)} tokens "
              f"(at most {MAX_HEATMAP_TOKENS} per side)")
    links = {(i, j) for i, j in al.token_links if i < h and j < w}
    with publication_style(), missing_glyphs() as missing:  # fonts for every script
        fig, ax = plt.subplots(figsize=(max(4.0, 0.16 * w + 2), max(3.0, 0.16 * h + 1.5)))
        plot_plan(al.plan[:h, :w], al.src_tokens[:h], al.tgt_tokens[:w], links=links, ax=ax, title=title)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    if missing:
        print(f"note: no installed font has {' '.join(missing)}: drawn as empty boxes in {path}")
