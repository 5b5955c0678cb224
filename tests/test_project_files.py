"""What a researcher expects beside the code: a licence, a citation, a changelog with the version."""
from __future__ import annotations

import os
import tomllib
from pathlib import Path

import yaml

import optical_viz

REPO = Path(__file__).resolve().parent.parent


def test_license_citation_and_changelog_agree_with_the_package():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == optical_viz.__version__
    assert project["license"] == "MIT" and (REPO / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    assert str(cff["version"]) == project["version"]
    paper = cff["preferred-citation"]
    assert [a["family-names"] for a in paper["authors"]] == ["Huang", "Yu", "Allan"] and paper["year"] == 2023
    assert "arXiv:2301.12566" in {i["value"] for i in paper["identifiers"]}
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"## [{project['version']}]" in changelog


def test_pyproject_gives_setuptools_no_deprecation_warning():
    """Issue 25: `make setup` printed ~200 lines of setuptools warnings about the deprecated
    `project.license` table; the licence is an SPDX expression (PEP 639) with its file."""
    import warnings

    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), REPO / "pyproject.toml")
    assert [str(w.message).splitlines()[0] for w in caught] == []
    assert dist.metadata.license_expression == "MIT" and dist.metadata.license_files == ["LICENSE"]


def test_the_suite_deletes_a_passed_tests_tmp_path(tmp_path):
    """With the project's pytest settings a passed test's tmp_path is gone when it ends, a failed
    one's stays to look at: kept directories of trained students filled CI's disk (~25 GB)."""
    import subprocess
    import sys

    (tmp_path / "test_probe.py").write_text(
        "def test_passes(tmp_path):\n    (tmp_path / 'weights.bin').write_bytes(bytes(1024))\n\n"
        "def test_fails(tmp_path):\n    (tmp_path / 'weights.bin').write_bytes(bytes(1024))\n    assert False\n"
    )
    base = tmp_path / "base"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(REPO / "pyproject.toml"),
         "--rootdir", str(tmp_path), f"--basetemp={base}", str(tmp_path / "test_probe.py")],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},  # pytest's own settings; no plugins (2 s less)
    )
    assert "1 failed, 1 passed" in out.stdout, out.stdout[-2000:]
    assert not (base / "test_passes0").exists()
    assert (base / "test_fails0" / "weights.bin").is_file()
