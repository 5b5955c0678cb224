"""optical_viz.paths: the cache home, the models folder and the data root, each from its
argument, else its environment variable, else its default."""
from __future__ import annotations

from pathlib import Path

from optical_viz import convert, paths
from optical_viz.cache import default_cache_path

REPO = Path(__file__).resolve().parent.parent


def test_repo_root_is_the_checkout():
    assert paths.REPO_ROOT == REPO
    assert (paths.REPO_ROOT / "optical_viz" / "paths.py").is_file()


def test_home_and_models_follow_optical_viz_home(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTICAL_VIZ_HOME", str(tmp_path / "ovh"))
    assert paths.home() == tmp_path / "ovh"
    assert paths.models_dir() == tmp_path / "ovh" / "models"
    # the converted default model and the embedding cache live under it
    assert convert.default_model_path().parent == tmp_path / "ovh" / "models"
    assert default_cache_path() == tmp_path / "ovh" / "embeddings" / "cache.sqlite"
    monkeypatch.setenv("OPTICAL_VIZ_HOME", "~/elsewhere")  # a tilde is expanded
    assert paths.home() == Path.home() / "elsewhere"


def test_home_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("OPTICAL_VIZ_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.home() == tmp_path / ".cache" / "optical_viz"
    assert paths.models_dir() == tmp_path / ".cache" / "optical_viz" / "models"


def test_data_root_argument_then_environment_then_repository(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTICAL_VIZ_DATA", str(tmp_path / "env"))
    assert paths.data_root(tmp_path / "given") == tmp_path / "given"  # the argument wins
    assert paths.data_root(str(tmp_path / "given")) == tmp_path / "given"  # str or PathLike
    assert paths.data_root() == tmp_path / "env"
    assert paths.data_root("~/d") == Path.home() / "d"
    monkeypatch.delenv("OPTICAL_VIZ_DATA")
    assert paths.data_root() == REPO / "data"
