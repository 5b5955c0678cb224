"""`optical-viz demo`: the main job of a fresh machine (what `make demo` runs).

1. builds the default model if it is not built yet;
2. aligns one real sentence pair (FLORES English / French) and prints its word links and the
   soft alignment of each source word;
3. executes the five notebooks headless (copies under `runs/notebooks/`, the committed
   notebooks stay as they are); they write their figures to `figures/`. The training runs
   they make on the way (student models and checkpoints under `runs/nb*`, about 2 GB) are
   scratch: removed at the end unless they existed before, or `--keep-runs` is given;
4. ends with a summary: what ran, where the figures are, the disk it used and freed.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from optical_viz.paths import REPO_ROOT


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="build the model, align a sentence pair, run the notebooks",
        description="The main job of a fresh machine (what `make demo` runs): build the default model if "
        "needed, align one FLORES English / French sentence pair, then execute the five notebooks "
        "headless (executed copies in --out; the committed notebooks stay as they are), which redraw "
        "figures/. Their scratch training runs under runs/ are removed at the end unless --keep-runs. "
        "Ends with a summary of what ran, the figures and the disk used.",
    )
    p.add_argument("--no-notebooks", action="store_true", help="stop after the alignment")
    p.add_argument("--notebooks", type=Path, default=REPO_ROOT / "notebooks", help="folder of the notebooks")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "notebooks",
                   help="where the executed copies go")
    p.add_argument("--keep-runs", action="store_true",
                   help="keep the training runs the notebooks write under runs/ (student models, checkpoints)")
    p.set_defaults(func=_run)


@dataclass
class _Report:
    """What the demo did, for the closing summary."""

    started: float = field(default_factory=time.time)
    ran: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    removed: list[tuple[Path, int]] = field(default_factory=list)  # scratch folder, bytes freed
    kept: list[tuple[Path, int]] = field(default_factory=list)  # run folders left in place, bytes


def _run(args) -> int:
    from optical_viz.commands import check_writable
    from optical_viz.convert import build_default_model

    notebooks = []
    if not args.no_notebooks:  # checked before the model and the alignment (seconds), not after
        if not args.notebooks.is_dir():
            raise FileNotFoundError(f"--notebooks {args.notebooks}: no such folder")
        notebooks = sorted(args.notebooks.glob("[0-9][0-9]_*.ipynb"))
        if not notebooks:
            raise FileNotFoundError(f"--notebooks {args.notebooks}: no notebooks to run (NN_name.ipynb) in that folder")
        check_writable(args.out, "--out", directory=True)
    report = _Report()
    model_dir = build_default_model()
    print(f"model: {model_dir}")
    report.ran.append(f"default model ({model_dir}, {_human(_size(model_dir))})")
    _show_alignment(model_dir)
    report.ran.append("word alignment of FLORES dev sentence 1, English / French")
    if not args.no_notebooks:
        project = args.notebooks.resolve().parent  # the notebooks write ../figures and ../runs
        runs = project / "runs"
        before = _entries(runs)
        _run_notebooks(notebooks, args.out)
        report.ran.append(f"{len(notebooks)} notebooks ({', '.join(p.stem for p in notebooks)}), executed copies in {args.out}")
        report.figures = sorted(p for p in (project / "figures").rglob("*") if p.is_file() and p.stat().st_mtime >= report.started)
        out = args.out.resolve()
        for path in sorted(_entries(runs)):
            if path.resolve() == out or out.is_relative_to(path.resolve()) or not path.is_dir():
                continue
            size = _size(path)
            if path in before or args.keep_runs:
                report.kept.append((path, size))
            else:
                shutil.rmtree(path, ignore_errors=True)
                report.removed.append((path, size))
    print(_summary(report, args))
    return 0


def _entries(folder: Path) -> set[Path]:
    return set(folder.iterdir()) if folder.is_dir() else set()


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _summary(report: _Report, args) -> str:
    lines = [f"\n== optical-viz demo finished in {time.time() - report.started:.0f} s", "ran:"]
    lines += [f"  - {r}" for r in report.ran]
    if report.figures:
        folders = sorted({str(p.parent) for p in report.figures})
        lines.append(f"figures: {len(report.figures)} files ({_human(sum(p.stat().st_size for p in report.figures))}) "
                     f"in {', '.join(folders)}")
    elif not args.no_notebooks:
        lines.append("figures: none written")
    if not args.no_notebooks and args.out.is_dir():
        lines.append(f"executed notebooks: {args.out} ({_human(_size(args.out))})")
    for path, size in report.removed:
        lines.append(f"removed scratch training runs: {path} ({_human(size)}; --keep-runs keeps them)")
    for path, size in report.kept:
        lines.append(f"kept: {path} ({_human(size)})")
    return "\n".join(lines)


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
