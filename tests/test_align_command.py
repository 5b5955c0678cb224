"""`optical-viz align` on long texts: a capped picture and the truncated words named."""
from __future__ import annotations

import pytest
from PIL import Image

from optical_viz import cli


@pytest.mark.slow  # ~15 s
def test_long_text_gives_a_capped_heatmap_and_names_the_cut_words(tmp_path, data_root, default_model_dir, capsys):
    from optical_viz import data

    en = data.load_flores("eng_Latn", split="dev", root=data_root).texts
    fr = data.load_flores("fra_Latn", split="dev", root=data_root).texts
    src, tgt = " ".join(en[:60]), " ".join(fr[:2])  # ~1,300 words: beyond the model's 512 tokens
    png = tmp_path / "plan.png"
    assert cli.main(["align", src, tgt, "--png", str(png), "--model", str(default_model_dir)]) == 0
    out = capsys.readouterr().out
    words = src.split()
    assert f"of {len(words)} words were not read and are not aligned" in out
    cut_line = next(line for line in out.splitlines() if line.startswith("source text truncated"))
    n_cut = int(cut_line.split("its last ")[1].split(" of")[0])
    assert 0 < n_cut < len(words) and " ".join(words[-n_cut:][:8]) in cut_line
    unaligned = next((line for line in out.splitlines() if line.startswith("unaligned source words:")), "")
    assert len(unaligned.split()) - 3 <= len(words) - n_cut  # only words that were read
    assert "heatmap: the first 120 x " in out
    width, height = Image.open(png).size
    assert width < 4000 and height < 4000, (width, height)
