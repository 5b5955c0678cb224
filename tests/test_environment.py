"""environment.yml (conda) must list exactly the dependencies and bounds of pyproject.toml."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def _normalise(req: str) -> tuple[str, str]:
    """'POT>=0.9.7' -> ('pot', '>=0.9.7'); names compared as PEP 503 normalises them."""
    m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*", req)
    assert m, f"cannot parse requirement {req!r}"
    name, spec = m.groups()
    return re.sub(r"[-_.]+", "-", name).lower(), spec.replace(" ", "")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    return dict(map(_normalise, reqs))


def _environment_requirements() -> tuple[str, dict[str, str]]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    reqs = [r for r in pip if not r.startswith("-e")]
    return python, dict(map(_normalise, reqs))


def test_environment_yml_matches_pyproject():
    python, env = _environment_requirements()
    pyproject = _pyproject_requirements()
    missing = sorted(set(pyproject) - set(env))
    extra = sorted(set(env) - set(pyproject))
    differ = {n: (pyproject[n], env[n]) for n in set(env) & set(pyproject) if env[n] != pyproject[n]}
    assert not missing, f"in pyproject.toml but not environment.yml: {missing}"
    assert not extra, f"in environment.yml but not pyproject.toml: {extra}"
    assert not differ, f"bounds differ (pyproject, environment): {differ}"


def test_environment_python_is_within_requires_python():
    python, _ = _environment_requirements()
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    version = python.split("=")[-1]
    lower = requires.removeprefix(">=")
    assert tuple(map(int, version.split("."))) >= tuple(map(int, lower.split("."))), (python, requires)


def test_normalise_detects_a_changed_bound():
    # the comparison itself must be able to fail
    assert _normalise("POT>=0.9.7") != _normalise("pot>=0.9.6")
    assert _normalise("umap_learn >= 0.5.6") == _normalise("umap-learn>=0.5.6")
