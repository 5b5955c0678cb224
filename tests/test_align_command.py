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


def _session_encoder(monkeypatch, encoder):
    from optical_viz import encoder as encoder_module

    monkeypatch.setattr(encoder_module, "load_encoder", lambda path=None: encoder)  # loading again takes seconds


def test_a_zero_width_space_is_not_aligned_as_a_word(encoder, monkeypatch, capsys):
    """Issue 25: U+200B between two words was aligned (and listed as unaligned) like a word."""
    from optical_viz.alignment import align

    al = align(encoder, "The \u200b cat sleeps", "Le chat dort")
    assert al.src_words[1] == "\u200b"
    assert all(i != 1 for i, _ in al.word_links) and "\u200b" not in "".join(al.src_tokens).replace("\u2581", "")
    _session_encoder(monkeypatch, encoder)
    assert cli.main(["align", "The \u200b cat sleeps", "Le chat dort"]) == 0
    out = capsys.readouterr().out
    assert "\u200b" not in out


def test_a_text_of_invisible_characters_names_its_side(encoder, monkeypatch, capsys):
    """Issue 25: an empty target was reported as "texts [0] have no token"."""
    _session_encoder(monkeypatch, encoder)
    assert cli.main(["align", "The cat", "\u200b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["optical-viz align: error: target texts [0] have no token besides special tokens (empty text?)"]
