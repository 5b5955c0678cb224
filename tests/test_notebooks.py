"""The five notebooks: their structure (fast, no kernel) and their outputs (nbval).

Structure: a parameters cell with a FULL switch, no function or class definitions, short
cells, committed with outputs, figures written with ``save_figure`` under ``figures/``.

Outputs: each notebook is re-executed by nbval in a fresh kernel and every output is
compared with the committed one (images excepted; cells tagged ``nbval-ignore-output``
are executed but not compared; ``tests/nbval_sanitize.cfg`` masks addresses, timings and
temporary paths). The run happens in a temporary copy of ``notebooks/`` next to symlinks
to ``configs/`` and ``results/``, so the committed notebooks and figures stay untouched.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NAMES = [p.stem for p in NOTEBOOKS]
EXPECTED = [
    "01_ot_primer",
    "02_soft_token_alignment",
    "03_ot_vs_contrastive_geometry",
    "04_rerun_distillation",
    "05_retrieval_and_scaling",
]
MAX_CELL_LINES = 12  # "no more than a few lines of logic per cell"
NBVAL_TIMEOUT_S = 900  # one notebook, kernel start included
# 05 reads the committed results/quick (~15 s); without it, it recomputes the quick protocol, every stage:
# 388 s wall, 364 s of CPU on one thread with both cores busy (results/quick/reproduce_time.json). The limit
# keeps the old margin for a cold embedding cache on a loaded machine.
NBVAL_TIMEOUT_05_S = 3000


def test_the_five_notebooks_exist():
    assert NAMES == EXPECTED


def _code_cells(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_structure(path):
    cells = _code_cells(path)
    params = [c for c in cells if re.search(r"^FULL = (False|True)$", c.source, re.M)]
    assert len(params) == 1, "exactly one parameters cell with a FULL switch"
    assert cells.index(params[0]) <= 1, "the parameters cell comes right after the imports"
    assert "import" in cells[0].source and not any(
        line and not line.startswith(("import", "from", "#")) for line in cells[0].source.splitlines()
    ), "the first code cell only imports"
    for c in cells:
        tree = ast.parse(c.source)
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))]
        assert not defs, f"definitions belong in the library, not in a notebook cell:\n{c.source}"
        assert len(c.source.splitlines()) <= MAX_CELL_LINES, f"cell too long:\n{c.source}"
        assert c.execution_count is not None, f"committed without outputs:\n{c.source}"
        errors = [o for o in c.outputs if o.output_type == "error"]
        assert not errors, f"committed with an error: {errors[0].ename}: {errors[0].evalue}"
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"not run top to bottom in one go: {counts}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_figures_are_saved_with_save_figure(path):
    source = "\n".join(c.source for c in _code_cells(path))
    names = re.findall(r'save_figure\([^,]+, FIGURES / "([^"]+)"\)', source)
    names += re.findall(r'save_figure\([^,]+, Path\("\.\./figures"\) / "([^"]+)"\)', source)
    if path.stem != "05_retrieval_and_scaling":
        assert names, "every notebook but 05 saves its figures with plots.save_figure"
    for name in names:
        for ext in ("pdf", "svg", "png"):
            f = REPO / "figures" / f"{name}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f"{f} missing: run the notebook (make demo)"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_outputs_match_nbval(path, tmp_path, data_root, default_model_dir):
    work = tmp_path / "repo"
    (work / "notebooks").mkdir(parents=True)
    (work / "notebooks" / path.name).write_bytes(path.read_bytes())
    for shared in ("configs", "results"):
        (work / shared).symlink_to(REPO / shared)
    env = dict(
        os.environ,
        OPTICAL_VIZ_DATA=str(data_root),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        # progress bars depend on what the embedding cache already holds (a fresh clone has
        # none): silence them so that strict cells compare results only
        TQDM_DISABLE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    cmd = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
        "--rootdir", str(work), "--nbval", "--nbval-current-env",
        "--nbval-sanitize-with", str(REPO / "tests" / "nbval_sanitize.cfg"),
        "--nbval-cell-timeout", str(NBVAL_TIMEOUT_05_S), str(work / "notebooks" / path.name),
    ]
    timeout = NBVAL_TIMEOUT_05_S if path.stem.startswith("05_") else NBVAL_TIMEOUT_S
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout + 120)
    assert proc.returncode == 0, f"nbval failed on {path.name}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    assert re.search(r"\d+ passed", proc.stdout), proc.stdout[-2000:]
    figures = sorted(p.name for p in (work / "figures").glob("*.png")) if (work / "figures").is_dir() else []
    if path.stem != "05_retrieval_and_scaling":
        assert figures, "the notebook wrote no figure"
    # issue 25: re-running the notebooks (make demo) redraws the committed figures. On the machine
    # that drew them the bytes are equal (test_plots checks that a figure is byte-reproducible);
    # another CPU computes the same numbers to ~1e-6 (other kernels), so here the figures are
    # compared as figures: the same files, SVG text equal up to coordinates within 0.5 pt,
    # PNG pixels within 2% on average.
    committed = {p.name: p for p in (REPO / "figures").glob("*.*")}
    drawn = sorted((work / "figures").glob("*.*"))
    assert [p.name for p in drawn if p.name not in committed] == [], "a figure that figures/ does not hold"
    changed = [p.name for p in drawn if not _same_figure(p, committed[p.name])]
    assert changed == [], f"{path.name} drew {changed} differently from figures/ (run make demo and look)"


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
_HASHED_ID = re.compile(r"\b[pm][0-9a-f]{10}\b")  # clip-path / marker ids: a hash of the coordinates


def _same_figure(new: Path, old: Path) -> bool:
    """Whether two renderings of one figure show the same thing (bytes equal, or within tolerance)."""
    a, b = new.read_bytes(), old.read_bytes()
    if a == b:
        return True
    if new.suffix == ".svg":
        ta, tb = (_HASHED_ID.sub("ID", x.decode()) for x in (a, b))
        if _NUMBER.split(ta) != _NUMBER.split(tb):
            return False
        differ = [(float(x), float(y)) for x, y in zip(_NUMBER.findall(ta), _NUMBER.findall(tb)) if x != y]
        return all(abs(x - y) <= 0.5 + 1e-3 * abs(y) for x, y in differ)  # inf/nan (hex ids) compare False
    if new.suffix == ".png":
        import matplotlib.image as mpimg

        pa, pb = mpimg.imread(new), mpimg.imread(old)
        return pa.shape == pb.shape and float(np.abs(pa - pb).mean()) < 0.02
    return new.suffix == ".pdf" and len(a) > 1000  # compressed streams: the SVG twin is compared


def test_same_figure_accepts_a_redraw_and_rejects_another_figure(tmp_path):
    svg = REPO / "figures" / "02_example_plan.svg"
    text = svg.read_text()
    nudged = tmp_path / svg.name  # what another CPU draws: coordinates a few 1e-6 off
    nudged.write_text(re.sub(r"(\d+\.\d{5})(\d)", lambda m: m.group(1) + str((int(m.group(2)) + 1) % 10), text))
    assert nudged.read_bytes() != svg.read_bytes() and _same_figure(nudged, svg)
    moved = tmp_path / "moved.svg"  # a link drawn elsewhere: another figure
    moved.write_text(re.sub(r"stroke-width: (\d+\.?\d*)", lambda m: f"stroke-width: {float(m.group(1)) + 6}", text, count=1))
    assert not _same_figure(moved, svg)
    assert not _same_figure(REPO / "figures" / "03_eps_sweep.svg", svg)
