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
    from optical_viz.cli import build_parser
    from optical_viz.options import AlignConfig

    default = AlignConfig()
    helps = dict(_every_help(build_parser()))
    text = " ".join(helps["align"].split())  # argparse wraps lines
    for value in (default.method, default.eps, default.layer, default.extraction):
        assert f"(default: {value})" in text
    text = " ".join(helps["evaluate"].split())
    for value in (default.method, default.eps, default.extraction):
        assert f"(default: {value})" in text
    assert f"default {default.layer})" in text


# ----------------------------------------------------------------- issue 25: careless hands, round two


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test: what it guards must be refused before the work starts."""
    from optical_viz import encoder

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(encoder, "load_encoder", refuse)


@pytest.fixture
def blocker(tmp_path) -> Path:
    """A regular file: a path under it cannot be written, even by root (whom chmod does not stop)."""
    path = tmp_path / "a-file"
    path.write_text("x")
    return path


@pytest.mark.parametrize("argv, message", [
    (["", "Le chat"], "the source text is empty: give a sentence of whitespace-separated words"),
    (["The cat", "  "], "the target text is empty: give a sentence of whitespace-separated words"),
    (["The cat", "Le chat", "--eps", "0"], "--eps must be a finite number > 0 (in cost units), got 0.0"),
    (["The cat", "Le chat", "--eps", "nan"], "--eps must be a finite number > 0 (in cost units), got nan"),
    (["The cat", "Le chat", "--layer", "99"], "--layer must be in [-13, 12] for this 12-layer model (0 = embeddings, -1 = last), got 99"),
    (["The cat", "Le chat", "--png", "plot.txt"], "--png plot.txt: the file name must end in one of .png, .pdf, .svg"),
])
def test_align_checks_its_arguments_before_loading_the_model(argv, message, no_model, default_model_dir, capsys):
    """Issue 25: align reported these after the 15-20 s model load."""
    assert main(["align", *argv]) == 2
    assert _one_error_line(capsys).startswith(f"optical-viz align: error: {message}")


def test_align_unwritable_png_is_refused_before_the_model_loads(blocker, no_model, capsys):
    """Issue 25, bug 2: `--png /ro/a.png` gave a traceback after the alignment."""
    png = blocker / "a.png"
    assert main(["align", "The cat", "Le chat", "--png", str(png)]) == 2
    assert _one_error_line(capsys) == f"optical-viz align: error: --png {png}: cannot be written, {blocker} is not a folder"


def test_check_writable_names_a_read_only_folder(tmp_path, monkeypatch):
    """A read-only mount (EROFS) or a folder without write permission: the probe file cannot be
    created (simulated here: as root every folder is writable)."""
    import errno
    import tempfile

    from optical_viz.commands import check_writable

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(ValueError, match=rf"^--out {tmp_path / 'run' / 'x'}: cannot be written, {tmp_path} is not "
                                         r"writable \(Read-only file system\)$"):
        check_writable(tmp_path / "run" / "x", "--out", directory=True)
    monkeypatch.undo()
    check_writable(tmp_path / "run" / "x", "--out", directory=True)  # a folder to create: fine
    assert not (tmp_path / "run").exists()  # nothing created by the check
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        check_writable(tmp_path, "--json")


def _distill_config(tmp_path, name="my config.yaml") -> Path:
    cfg = tmp_path / name
    cfg.write_text((REPO / "configs" / "quick.yaml").read_text())
    return cfg


def _fake_distill(monkeypatch, behaviour):
    from optical_viz import distill

    calls = []

    def fake(config, **kwargs):
        calls.append((config, kwargs))
        return behaviour(config, **kwargs)

    monkeypatch.setattr(distill, "distill", fake)
    return calls


def test_distill_unwritable_out_is_refused_before_training(tmp_path, blocker, monkeypatch, capsys):
    """Issue 25, bug 2: `distill CFG --out /ro/run` failed after loading data and models."""
    calls = _fake_distill(monkeypatch, lambda config, **kw: pytest.fail("trained"))
    out = blocker / "run"
    assert main(["distill", str(_distill_config(tmp_path)), "--out", str(out)]) == 2
    assert _one_error_line(capsys) == f"optical-viz distill: error: --out {out}: cannot be written, {blocker} is not a folder"
    assert calls == []


def _interrupted(config, **kwargs):
    raise KeyboardInterrupt


def test_the_resume_hint_is_a_command_that_works(tmp_path, monkeypatch, capsys):
    """Issue 25, bug 5: the printed command was not shell-quoted (spaces in a path gave
    "unrecognized arguments") and dropped --steps (its config then differed from config.yaml)."""
    import shlex

    from optical_viz.cli import build_parser

    cfg = _distill_config(tmp_path)
    out = tmp_path / "my runs" / "run 1"
    _fake_distill(monkeypatch, _interrupted)
    argv = ["distill", str(cfg), "--steps", "12", "--loss", "ot+mse", "--out", str(out), "--data-root", str(tmp_path / "d d")]
    assert main(argv) == 130
    err = capsys.readouterr().err
    hint = err.split("continue with: ", 1)[1].strip()
    words = shlex.split(hint)
    assert words[0] == "optical-viz"
    args = build_parser().parse_args(words[1:])
    assert (args.config, args.steps, args.loss, args.out, args.data_root, args.resume) == (
        cfg, 12, "ot+mse", out, tmp_path / "d d", True)


def test_stopped_early_prints_the_resume_command(tmp_path, monkeypatch, capsys):
    from optical_viz.distill import DistillResult

    cfg = _distill_config(tmp_path)
    out = tmp_path / "run 2"
    _fake_distill(monkeypatch, lambda config, **kw: DistillResult(run_dir=out, student_dir=None, steps=3, metrics=[]))
    assert main(["distill", str(cfg), "--steps", "12", "--max-steps", "3", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == f"stopped before the end of the schedule: continue with: optical-viz distill '{cfg}' --steps 12 --out '{out}' --resume"


def test_resume_of_a_finished_run_is_refused(tmp_path, monkeypatch, capsys):
    """Issue 25: --resume on a finished run silently rewrote its student."""
    calls = _fake_distill(monkeypatch, lambda config, **kw: pytest.fail("trained"))
    out = tmp_path / "run"
    (out / "student").mkdir(parents=True)
    (out / "student" / "config.json").write_text("{}")
    assert main(["distill", str(_distill_config(tmp_path)), "--out", str(out), "--resume"]) == 2
    assert _one_error_line(capsys) == (f"optical-viz distill: error: cannot resume {out}: the run is finished "
                                       f"(its model is {out / 'student'}); to train again choose another --out")
    assert calls == []


def test_resume_of_a_run_that_never_started_says_it_starts_from_zero(tmp_path, monkeypatch, capsys):
    """Issue 25: --resume on a run that never started trained from scratch silently. The
    warning comes from distill, once the run directory is locked (its data and models are
    stubbed here: no training)."""
    import optical_viz.distill as D
    from optical_viz.distill import DistillResult

    out = tmp_path / "never"
    from types import SimpleNamespace

    monkeypatch.setattr(D, "load_training_data", lambda config, root=None: [SimpleNamespace(lang=x) for x in config.languages])
    monkeypatch.setattr(D, "_distill", lambda config, run_dir, *a: DistillResult(run_dir, run_dir / "student", 4, []))
    assert main(["distill", str(_distill_config(tmp_path)), "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"optical-viz distill: warning: {out} has no checkpoint to resume from: training starts at step 0" in err


def test_reproduce_grid_of_a_distill_config_says_so_in_one_line(capsys):
    """Issue 25: `reproduce --grid configs/quick.yaml` printed one error "line" of 4,904 characters."""
    cfg = REPO / "configs" / "quick.yaml"
    assert main(["reproduce", "--grid", str(cfg), "--dry-run"]) == 2
    line = _one_error_line(capsys)
    assert line == (f"optical-viz reproduce: error: {cfg} is a distill config, not a grid file (a grid file has "
                    f"'questions:', see configs/grid-quick.yaml): train it with `optical-viz distill {cfg}`")


def test_demo_checks_the_notebooks_folder_before_any_work(tmp_path, monkeypatch, capsys):
    """Issue 25: `demo --notebooks /nonexistent` said "no notebooks found to run" without the
    path, after a 12 s alignment."""
    from optical_viz import convert

    monkeypatch.setattr(convert, "build_default_model", lambda *a, **k: pytest.fail("worked before checking"))
    missing = tmp_path / "nonexistent"
    assert main(["demo", "--notebooks", str(missing)]) == 2
    assert _one_error_line(capsys) == f"optical-viz demo: error: --notebooks {missing}: no such folder"
    assert main(["demo", "--notebooks", str(tmp_path)]) == 2
    assert _one_error_line(capsys) == (f"optical-viz demo: error: --notebooks {tmp_path}: no notebooks to run "
                                       "(NN_name.ipynb) in that folder")


def test_model_build_unwritable_out_is_one_line(blocker, monkeypatch, capsys):
    from optical_viz import convert

    monkeypatch.setattr(convert, "convert", lambda *a, **k: pytest.fail("converted"))
    out = blocker / "mb"
    assert main(["model", "build", "--out", str(out)]) == 2
    assert _one_error_line(capsys) == f"optical-viz model: error: --out {out}: cannot be written, {blocker} is not a folder"


def test_demo_and_bench_help_say_what_they_do():
    """Issue 25: `demo --help` had no description; `bench encode --data-root` no default."""
    from optical_viz.cli import build_parser

    helps = {cmd: " ".join(text.split()) for cmd, text in _every_help(build_parser())}
    assert "The main job of a fresh machine (what `make demo` runs)" in helps["demo"]
    for cmd in ("bench encode", "bench gpu_protocol"):
        assert "--data-root DIR data root (default: $OPTICAL_VIZ_DATA, else data/ in the repository)" in helps[cmd], cmd


def test_a_storage_error_during_the_work_is_one_line(monkeypatch, capsys):
    """What the checks before the work cannot foresee (the disk fills up) is one line too."""
    import errno

    from optical_viz.commands import bench

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.json")

    monkeypatch.setattr(bench, "_run", full)
    assert main(["bench", "transport"]) == 2
    assert _one_error_line(capsys) == "optical-viz bench: error: cannot write /data/out.json: No space left on device"
