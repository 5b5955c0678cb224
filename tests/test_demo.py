"""`optical-viz demo` (what `make demo` runs): it says what it produced and cleans its scratch."""
from __future__ import annotations


import nbformat

from optical_viz import cli

SCRATCH_CELL = """
from pathlib import Path
run = Path("../runs/nb99/student")          # as notebooks 03 and 04 train into ../runs/nb0X
run.mkdir(parents=True, exist_ok=True)
(run / "model.safetensors").write_bytes(b"0" * 2_000_000)
figures = Path("../figures")
figures.mkdir(exist_ok=True)
(figures / "99_tiny.png").write_bytes(b"a figure")
"""


def test_demo_ends_with_a_summary_and_removes_scratch_runs(tmp_path, default_model_dir, capsys):
    """Bug 9: the demo ends with what ran, where the figures are and the disk used; the
    training runs the notebooks made are removed, a folder that was there before is kept."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SCRATCH_CELL)])
    nbformat.write(nb, notebooks / "99_tiny.ipynb")
    mine = tmp_path / "runs" / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("a run of my own")
    out = tmp_path / "runs" / "notebooks"
    assert cli.main(["demo", "--notebooks", str(notebooks), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    summary = text[text.index("== optical-viz demo finished"):]
    assert "1 notebooks (99_tiny)" in summary and "word alignment of FLORES dev sentence 1" in summary
    assert f"figures: 1 files (8 B) in {tmp_path / 'figures'}" in summary
    assert f"executed notebooks: {out}" in summary
    assert f"removed scratch training runs: {tmp_path / 'runs' / 'nb99'} (2.0 MB; --keep-runs keeps them)" in summary
    assert f"kept: {mine} (15 B)" in summary
    assert not (tmp_path / "runs" / "nb99").exists() and (mine / "notes.txt").is_file()
    assert (out / "99_tiny.ipynb").is_file()
