"""The manifest (data/manifest.tsv), `check`, and the `optical-viz data list|check` commands."""
from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
from pathlib import Path

import pytest

from optical_viz.commands import data as data_command
from optical_viz.data.manifest import SETS, check, entries_for, get_set, read_manifest

_TOOL = Path(__file__).resolve().parent.parent / "tools" / "make_manifest.py"
_spec = importlib.util.spec_from_file_location("make_manifest", _TOOL)
make_manifest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_manifest)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    data_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", *argv])
    return args.func(args)


def test_sets_match_the_data_readme(data_root):
    """Repository and commit of every set, as in the table of the data folder's README; the
    sets added later are described below the table (folder, then ``from REPO @ COMMIT``)."""
    readme = (data_root / "README.md").read_text()
    table = {}
    for line in readme.splitlines():
        m = re.match(r"\| (\w+)/ \| ([\w.-]+/[\w.-]+) @ ([0-9a-f]{40})", line)
        if m:
            table[m[1]] = (m[2], m[3])
    later = {m[1]: (m[2], m[3]) for m in re.finditer(r"`(\w+)/`, [^\n]*? from ([\w.-]+/[\w.-]+) @ ([0-9a-f]{40})", readme)}
    assert set(later) == {"word_alignment_deen"}
    assert {**table, **later} == {name: (s.repo, s.commit) for name, s in SETS.items()}
    # the checksums stated there are the manifest's
    for e in entries_for("word_alignment_deen"):
        assert f"{e.path.split('/')[-1]} {e.sha256}" in readme


def test_manifest_is_complete_and_well_formed():
    manifest = read_manifest()
    paths = [e.path for e in manifest]
    assert len(paths) == len(set(paths))
    assert {e.set for e in manifest} == set(SETS)
    for e in manifest:
        s = SETS[e.set]
        assert e.path.startswith(e.set + "/")
        assert (e.repo, e.commit) == (s.repo, s.commit)
        assert re.fullmatch(r"[0-9a-f]{64}", e.sha256) and e.size > 0 and e.license
        assert e.url == f"https://raw.githubusercontent.com/{s.repo}/{s.commit}/{e.upstream_path}"
    assert len(entries_for("flores")) == 826  # 205 varieties x 4 files + eng/ x 4 + README, LICENSE


@pytest.mark.parametrize(
    "set_name, local, upstream",
    [
        ("flores200", "annotated/yor_Latn/dev.tsv", "data/annotated/yor_Latn/dev.tsv"),
        ("flores200", "eng/train.tsv", "data/eng/train.tsv"),
        ("flores200", "LICENSE", "LICENSE"),
        ("xquad_r", "en.json", "xquad-r/en.json"),
        ("xquad_r", "README.md", "README.md"),
        ("tatoeba", "tatoeba.deu-eng.deu", "data/tatoeba/v1/tatoeba.deu-eng.deu"),
        ("tatoeba", "LASER_REPO_LICENSE", "LICENSE"),
        ("word_alignment", "enfr.gold", "examples/enfr.gold"),
        ("word_alignment_deen", "deen.gold", "German-English_WordAlignment.zip"),
        ("mafand_mt", "data/text_files/en_luo/train.luo", "data/text_files/en_luo/train.luo"),
        ("nllb_seed", "seed/eng_Latn", "seed/eng_Latn"),
    ],
)
def test_upstream_paths(set_name, local, upstream):
    assert SETS[set_name].upstream_path(local) == upstream


def test_get_set_aliases():
    assert get_set("flores").name == "flores200" and get_set("mafand").name == "mafand_mt"
    with pytest.raises(ValueError, match="unknown data set 'opus'.*flores200"):
        get_set("opus")


def test_make_manifest_reproduces_the_committed_manifest(data_root):
    assert make_manifest.build_entries(data_root) == read_manifest()


def test_check_passes_on_the_real_data(data_root):
    assert check(data_root) == []


@pytest.fixture
def wa_root(tmp_path, data_root):
    shutil.copytree(data_root / "word_alignment", tmp_path / "word_alignment")
    return tmp_path


def test_check_finds_missing_and_corrupt_files(wa_root):
    assert check(wa_root, sets=["word_alignment"]) == []
    (wa_root / "word_alignment/enfr.gold").unlink()
    with open(wa_root / "word_alignment/roen.gold", "a") as f:
        f.write("1-1\n")
    path = wa_root / "word_alignment/roen.src-tgt"
    path.write_bytes(path.read_bytes().replace(b"ajunge", b"AJUNGE"))  # same size
    problems = {p.path: p for p in check(wa_root, sets=["word_alignment"])}
    assert set(problems) == {"word_alignment/enfr.gold", "word_alignment/roen.gold", "word_alignment/roen.src-tgt"}
    assert problems["word_alignment/enfr.gold"].kind == "missing"
    assert "bytes, expected" in problems["word_alignment/roen.gold"].detail
    assert "sha256" in problems["word_alignment/roen.src-tgt"].detail
    assert all(p.fix == f"optical-viz data fetch word_alignment --root {wa_root}" for p in problems.values())


def test_data_check_command(wa_root, data_root, capsys):
    assert run_cli(["check", "word_alignment", "--root", str(wa_root)]) == 0
    assert "ok, 5 files verified" in capsys.readouterr().out
    (wa_root / "word_alignment/roen.gold").write_text("corrupt\n")
    assert run_cli(["check", "--root", str(wa_root)]) == 1
    err = capsys.readouterr().err
    assert "word_alignment: corrupt file word_alignment/roen.gold" in err
    assert f"fix: optical-viz data fetch word_alignment --root {wa_root}" in err
    assert f"the set folder {wa_root / 'flores200'} is missing (826 files)" in err  # one line per absent set
    assert "files missing or corrupt in" in err


def test_data_list_command(data_root, tmp_path, capsys):
    assert run_cli(["list", "--root", str(data_root)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:-1]}
    assert set(rows) == set(SETS)
    assert rows["flores200"].split()[1:3] == ["205", "826"] and "yes" in rows["flores200"]
    assert rows["xquad_r"].split()[1] == "11" and rows["tatoeba"].split()[1] == "112"
    assert "CC BY-NC 4.0" in rows["mafand_mt"]
    assert run_cli(["list", "--root", str(tmp_path)]) == 0
    assert all(" no " in line for line in capsys.readouterr().out.splitlines()[2:-1])


def test_through_the_cli_entry_point(data_root, tmp_path, capsys):
    from optical_viz.cli import main

    assert main(["data", "check", "word_alignment", "--root", str(data_root)]) == 0
    assert main(["data", "check", "tatoeba", "--root", str(tmp_path)]) == 1
    assert f"fix: optical-viz data fetch tatoeba --root {tmp_path}" in capsys.readouterr().err
    assert main(["data", "fetch", "opus", "--root", str(tmp_path)]) == 2
    assert "unknown data set 'opus'" in capsys.readouterr().err
