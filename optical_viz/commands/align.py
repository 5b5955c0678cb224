"""`optical-viz align "SRC" "TGT"`: word links of one sentence pair, and a plan heatmap.

    optical-viz align "The cat sleeps ." "Le chat dort ." --method sinkhorn --eps 0.05 --png plan.png
"""
from __future__ import annotations

from pathlib import Path

# keep in sync with optical_viz.alignment (not imported here: `--help` must stay fast)
METHODS = ("sinkhorn", "unbalanced", "emd", "partial", "similarity")
EXTRACTIONS = ("inter", "union", "grow-diag", "threshold", "itermax")


def register(sub) -> None:
    p = sub.add_parser("align", help="align the words of two sentences with a transport plan")
    p.add_argument("src", help="source sentence (whitespace-separated words)")
    p.add_argument("tgt", help="target sentence")
    p.add_argument("--method", choices=METHODS, default=None, help="plan solver (default: sinkhorn)")
    p.add_argument("--eps", type=float, default=None, help="entropic regularisation (default: alignment.EPS_DEFAULT)")
    p.add_argument("--layer", type=int, default=None, help="encoder layer (default: alignment.LAYER_DEFAULT)")
    p.add_argument("--extraction", choices=EXTRACTIONS, default=None, help="hard-link rule (default: alignment.EXTRACTION_DEFAULT)")
    p.add_argument("--model", default=None, help="model name or directory (default: the converted default model)")
    p.add_argument("--png", type=Path, default=None, help="save a heatmap of the plan to this file")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from optical_viz import alignment as A
    from optical_viz.encoder import load_encoder

    enc = load_encoder(args.model)
    al = A.align(
        enc,
        args.src,
        args.tgt,
        method=args.method or A.METHOD_DEFAULT,
        eps=args.eps if args.eps is not None else A.EPS_DEFAULT,
        layer=args.layer if args.layer is not None else A.LAYER_DEFAULT,
        extraction=args.extraction or A.EXTRACTION_DEFAULT,
    )
    print(f"{enc.name}  method={al.method} eps={al.eps} layer={al.layer} extraction={al.extraction}")
    for i, j in sorted(al.word_links):
        print(f"{i:>3} {al.src_words[i]:<20} -> {j:>3} {al.tgt_words[j]}")
    unaligned = [w for i, w in enumerate(al.src_words) if all(i != a for a, _ in al.word_links)]
    if unaligned:
        print(f"unaligned source words: {' '.join(unaligned)}")
    if args.png is not None:
        _save_heatmap(al, args.png)
        print(f"wrote {args.png}")
    return 0


def _save_heatmap(al, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        from optical_viz.plots import plot_plan
    except ImportError:  # plots module not available: a minimal heatmap
        plot_plan = None
    h, w = len(al.src_tokens), len(al.tgt_tokens)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * w + 2), max(3.0, 0.35 * h + 1.5)))
    if plot_plan is not None:
        plot_plan(al.plan, al.src_tokens, al.tgt_tokens, links=al.token_links, ax=ax,
                  title=f"{al.method}, eps={al.eps}, layer {al.layer}")
    else:
        ax.imshow(al.plan.numpy(), cmap="viridis", aspect="auto")
        ax.set_xticks(range(w), al.tgt_tokens, rotation=90)
        ax.set_yticks(range(h), al.src_tokens)
        for i, j in al.token_links:
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white"))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
