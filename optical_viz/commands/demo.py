"""`optical-viz demo`: the main job of a fresh machine (what `make demo` runs).

1. builds the default model if it is not built yet;
2. aligns one real sentence pair (FLORES English / French) and prints its word links and the
   soft alignment of each source word;
3. executes the five notebooks headless (copies under `runs/notebooks/`, the committed
   notebooks stay as they are); they write their figures to `figures/`.
"""
from __future__ import annotations

import time
from pathlib import Path

from optical_viz.paths import REPO_ROOT


def register(sub) -> None:
    p = sub.add_parser("demo", help="build the model, align a sentence pair, run the notebooks")
    p.add_argument("--no-notebooks", action="store_true", help="stop after the alignment")
    p.add_argument("--notebooks", type=Path, default=REPO_ROOT / "notebooks", help="folder of the notebooks")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "notebooks",
                   help="where the executed copies go")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from optical_viz.convert import build_default_model

    model_dir = build_default_model()
    print(f"model: {model_dir}")
    _show_alignment(model_dir)
    if not args.no_notebooks:
        _run_notebooks(sorted(args.notebooks.glob("[0-9][0-9]_*.ipynb")), args.out)
    return 0


def _show_alignment(model_dir: Path) -> None:
    from optical_viz import alignment, data
    from optical_viz.encoder import load_encoder

    en = data.load_flores("eng_Latn", split="dev").texts[0]
    fr = data.load_flores("fra_Latn", split="dev").texts[0]
    al = alignment.align(load_encoder(model_dir), en, fr)
    print(f"\nEN: {en}\nFR: {fr}")
    print(f"plan: {al.method}, eps={al.eps}, layer {al.layer}; word links ({al.extraction}):")
    for i, j in sorted(al.word_links):
        print(f"  {al.src_words[i]:<22} -> {al.tgt_words[j]}")


def _run_notebooks(paths: list[Path], out: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    if not paths:
        raise FileNotFoundError("no notebooks found to run")
    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        start = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=1200, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        nbformat.write(nb, out / path.name)
        print(f"ran {path.name} in {time.perf_counter() - start:.0f} s -> {out / path.name}")
