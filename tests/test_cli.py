"""Tests of the command line's edges (optical_viz.cli): one-line errors, --verbose tracebacks,
configs that are not YAML. The commands' own work is tested with their modules."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from optical_viz.cli import main

REPO = Path(__file__).resolve().parent.parent


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_distill_of_a_markdown_file_is_one_line_naming_file_and_position(tmp_path, capsys):
    readme = tmp_path / "README.md"
    shutil.copy(REPO / "README.md", readme)
    assert main(["distill", str(readme)]) == 2
    line = _one_error_line(capsys)
    assert str(readme) in line and "not valid YAML" in line and "line " in line and "column " in line


def test_distill_of_a_binary_file_names_the_file(tmp_path, capsys):
    binary = tmp_path / "weights.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    assert main(["distill", str(binary)]) == 2
    line = _one_error_line(capsys)
    assert str(binary) in line and "UTF-8" in line


def test_distill_of_a_yaml_list_names_the_file(tmp_path, capsys):
    cfg = tmp_path / "list.yaml"
    cfg.write_text("- a\n- b\n")
    assert main(["distill", str(cfg)]) == 2
    line = _one_error_line(capsys)
    assert str(cfg) in line and "mapping" in line


def test_verbose_and_debug_show_the_traceback(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "missing.yaml"
    assert main(["distill", str(missing)]) == 2
    assert _one_error_line(capsys) == f"optical-viz distill: error: distillation config file {missing} does not exist"
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        main(["--verbose", "distill", str(missing)])
    monkeypatch.setenv("OPTICAL_VIZ_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        main(["distill", str(missing)])


def test_unknown_config_key_suggests_the_closest(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text((REPO / "configs" / "quick.yaml").read_text() + "\nwarmup_step: 3\n")
    assert main(["distill", str(cfg)]) == 2
    line = _one_error_line(capsys)
    assert str(cfg) in line and "warmup_step: unknown key; did you mean 'warmup_steps'?" in line


@pytest.mark.parametrize("argv", [
    ["data", "list"], ["data", "check"], ["data", "fetch", "flores200"],
    ["evaluate", "flores"], ["distill", "c.yaml"], ["reproduce"],
])
def test_every_command_that_reads_data_takes_data_root(argv, tmp_path):
    from optical_viz.cli import build_parser

    args = build_parser().parse_args([*argv, "--data-root", str(tmp_path)])
    assert (args.data_root if hasattr(args, "data_root") else args.root) == tmp_path


def test_distill_reads_bitext_from_data_root(tmp_path, capsys):
    """--data-root reaches the trainer: an empty data root is named in the one-line error."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text((REPO / "configs" / "quick.yaml").read_text())
    empty = tmp_path / "no-data"
    empty.mkdir()
    assert main(["distill", str(cfg), "--data-root", str(empty), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert str(empty) in _one_error_line(capsys)


def test_the_cli_choices_are_their_owners_vocabulary():
    """The parser keeps light copies (no torch import for --help); they must equal the owners'."""
    from optical_viz import alignment, retrieval
    from optical_viz.commands import align, evaluate
    from optical_viz.encoder import PRECISIONS
    from optical_viz.retrieval._tasks import FLORES_TASK_SPLITS

    assert evaluate.RETRIEVAL_TASKS == retrieval.TASKS
    assert evaluate.SCORINGS == retrieval.SCORINGS
    assert evaluate.FLORES_TASK_SPLITS == FLORES_TASK_SPLITS
    assert evaluate.PRECISIONS == PRECISIONS
    names = ("METHODS", "EXTRACTIONS", "METHOD_DEFAULT", "EPS_DEFAULT", "LAYER_DEFAULT", "EXTRACTION_DEFAULT")
    assert {n: getattr(align, n) for n in names} == {n: getattr(alignment, n) for n in names}


def _every_help(parser, prefix=()):
    """(command words, --help text) of ``parser`` and of each of its subcommands, recursively."""
    import argparse

    yield " ".join(prefix), parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _every_help(sub, (*prefix, name))


def test_help_texts_show_values_not_constant_names():
    """`alignment.EPS_DEFAULT` in a help text tells the user nothing: every --help shows values."""
    import re

    from optical_viz.cli import build_parser

    constant = re.compile(r"\b[A-Za-z_]\w*\.[A-Z][A-Z0-9_]+\b")  # module.CONSTANT
    helps = dict(_every_help(build_parser()))
    assert {"align", "evaluate", "bench transport", "data fetch"} <= set(helps)  # the walk reached them
    named = {cmd: constant.findall(text) for cmd, text in helps.items() if constant.search(text)}
    assert named == {}


def test_align_help_shows_the_alignment_defaults():
    from optical_viz import alignment
    from optical_viz.cli import build_parser

    text = " ".join(dict(_every_help(build_parser()))["align"].split())  # argparse wraps lines
    for value in (alignment.METHOD_DEFAULT, alignment.EPS_DEFAULT, alignment.LAYER_DEFAULT, alignment.EXTRACTION_DEFAULT):
        assert f"(default: {value})" in text
