"""`optical-viz align` (optical_viz.commands.align): links and a heatmap, long texts (a capped
picture, the truncated words named), invisible characters, the one default setting."""
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


def test_align_evaluate_alignment_the_explorer_and_align_train_start_from_one_setting(monkeypatch, capsys):
    """AlignConfig() is the one default of the aligner (issue 23): what `optical-viz align` and
    `optical-viz evaluate alignment` call without options, what the alignment explorer draws
    first and what alignment fine-tuning makes its targets with."""
    from types import SimpleNamespace

    import matplotlib

    matplotlib.use("Agg")
    import torch

    from optical_viz import alignment, encoder as encoder_module
    from optical_viz.align_train import AlignTrainConfig
    from optical_viz.options import AlignConfig
    from optical_viz.widgets import AlignmentExplorer

    default = AlignConfig()
    setting = lambda kw: {k: kw.get(k) for k in ("method", "eps", "layer", "extraction")}  # noqa: E731
    expected = setting(default.align_kwargs())
    calls = {}

    def recorder(entry):
        """A stand-in for alignment.align that records the keywords of ``entry``'s call."""
        def fake_align(enc, src, tgt, **kw):
            calls[entry] = kw
            return alignment.Alignment(src_tokens=["a"], tgt_tokens=["b"], plan=torch.ones(1, 1), src_words=["a"],
                                       tgt_words=["b"], word_links={(0, 0)}, token_links={(0, 0)}, src_word_ids=[0],
                                       tgt_word_ids=[0], method=kw["method"], eps=kw["eps"], layer=kw["layer"],
                                       extraction=kw["extraction"])

        return fake_align

    def fake_evaluate(enc, pairs, methods, layers, extraction, eps, root, **kw):
        calls["evaluate"] = dict(method=methods[0], eps=eps, layer=layers[0], extraction=extraction, **kw)
        assert len(methods) == len(layers) == 1
        return {"task": "alignment", "model": "stand-in", "results": []}

    monkeypatch.setattr(encoder_module, "load_encoder", lambda *a, **k: SimpleNamespace(name="stand-in", num_layers=12))
    monkeypatch.setattr(alignment, "align", recorder("align"))
    monkeypatch.setattr(alignment, "evaluate_alignment", fake_evaluate)
    assert cli.main(["align", "a", "b"]) == 0
    assert f"method={default.method} eps={default.eps} layer={default.layer}" in capsys.readouterr().out
    assert cli.main(["evaluate", "alignment"]) == 0
    assert default.describe() in capsys.readouterr().out
    explorer = AlignmentExplorer(SimpleNamespace(num_layers=12), {"x": [("a", "b")]}, align_fn=recorder("explorer"),
                                 aer_fn=lambda links, gold: 0.0)
    assert explorer.error is None and explorer.n_updates == 1
    trained = AlignTrainConfig(languages=["deu_Latn"]).resolved()
    assert trained == default
    assert setting(calls["align"]) == setting(calls["evaluate"]) == setting(calls["explorer"]) == expected
    # the setting's other keywords (the explorer has no threshold control: align's default None)
    assert calls["align"]["threshold"] == calls["evaluate"]["threshold"] == trained.threshold == default.threshold
    assert set(calls["align"]) == set(default.align_kwargs())
    assert expected == {"method": "sinkhorn", "eps": 0.3, "layer": 7, "extraction": "inter"}  # issue 24's choice


def test_align_command_prints_links_and_saves_png(encoder, default_model_dir, tmp_path, capsys, monkeypatch):
    import argparse

    from optical_viz import encoder as encoder_module
    from optical_viz.commands import align as cmd

    # the session's encoder of the same directory (loading it again takes seconds)
    monkeypatch.setattr(encoder_module, "load_encoder", lambda path: encoder if path == str(default_model_dir) else None)
    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers(dest="command"))
    png = tmp_path / "plan.png"
    args = parser.parse_args(["align", "The cat sleeps .", "Le chat dort .", "--model", str(default_model_dir), "--png", str(png)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "cat" in out and "chat" in out and "->" in out
    assert png.is_file() and png.stat().st_size > 1000
