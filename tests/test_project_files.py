"""What a researcher expects beside the code: a licence, a citation, a changelog with the version."""
from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

import optical_viz

REPO = Path(__file__).resolve().parent.parent


def test_license_citation_and_changelog_agree_with_the_package():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == optical_viz.__version__
    assert project["license"]["text"] == "MIT" and (REPO / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    assert str(cff["version"]) == project["version"]
    paper = cff["preferred-citation"]
    assert [a["family-names"] for a in paper["authors"]] == ["Huang", "Yu", "Allan"] and paper["year"] == 2023
    assert "arXiv:2301.12566" in {i["value"] for i in paper["identifiers"]}
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"## [{project['version']}]" in changelog
