"""Disk pruning after a protocol stage (optical_viz.experiments.pruning)."""
from __future__ import annotations

from optical_viz.experiments.pruning import prune_after_stage


def test_pruning_after_a_stage_keeps_what_later_stages_read(tmp_path):
    """limits.prune: after a dev stage only finished runs' checkpoints go; after a question's test
    stage its students go too, the other question's stay, and an unfinished run keeps everything."""
    def run(name, finished=True):
        d = tmp_path / name
        (d / "checkpoints" / "step-2").mkdir(parents=True)
        if finished:
            (d / "student").mkdir()
            (d / "student" / "config.json").write_text("{}")
        return d

    rq1, rq2, unfinished = run("rq1-xquad-mse-lr0.0001-s0"), run("rq2-n2-ot-published-lr0.0001-s0"), run("rq1-xquad-ot-s1", False)
    gone = prune_after_stage("rq1-dev2", tmp_path)
    assert sorted(gone) == [rq1 / "checkpoints", rq2 / "checkpoints"]
    assert (rq1 / "student").is_dir() and (rq2 / "student").is_dir() and (unfinished / "checkpoints").is_dir()
    assert prune_after_stage("rq1-test", tmp_path) == [rq1 / "student"]
    assert (rq2 / "student").is_dir() and (unfinished / "checkpoints" / "step-2").is_dir()
    assert prune_after_stage("rq2-test", tmp_path) == [rq2 / "student"]
