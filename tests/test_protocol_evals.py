"""What protocol runs are scored on (optical_viz.experiments.protocol_evals), on the real
XQuAD-R question files."""
from __future__ import annotations

import pytest

from optical_viz.experiments import protocol_evals as E
from optical_viz.protocol import load_stage_protocol


@pytest.fixture(scope="module")
def full():
    return load_stage_protocol("full")


def test_dev_and_test_questions_are_the_split_articles(full, data_root):
    dev = E.rq1_question_ids(full, "dev", root=data_root)
    test = E.rq1_question_ids(full, "test", root=data_root)
    assert (len(dev), len(test)) == (441, 749) and not set(dev) & set(test)
    assert E.rq1_question_ids(full, "test", "xquad", root=data_root) == test  # the same ids in both sets


def test_dev_evaluations_score_every_checkpoint(full, data_root):
    evs = E.dev_evaluations(full, "rq1", root=data_root)
    assert [e.at_step for e in evs] == [50, 100, None] and [e.label for e in evs][-1] == "xquad-r.dev@200"
    assert all(e.max_queries is None for e in evs)
    quick = load_stage_protocol("quick")
    flores = E.dev_evaluations(quick, "rq2", root=data_root)
    assert [(e.task, e.split, e.at_step, e.max_queries, e.max_candidates) for e in flores] == [
        ("flores", "dev", 1, 20, 150), ("flores", "dev", None, 20, 150)]


def test_test_evaluations_hold_the_secondary_metrics(full, data_root):
    evs = {e.name: e for e in E.test_evaluations(full, "rq1", root=data_root)}
    assert set(evs) == {"alignment.roen", "xquad-r.test", "xquad-r.test.english", "xquad.test", "xquad-r.maxsim.test"}
    maxsim = evs["xquad-r.maxsim.test"].query_ids
    assert len(maxsim) == 300 and set(maxsim) <= set(evs["xquad-r.test"].query_ids)
    assert (evs["alignment.roen"].align_methods, evs["alignment.roen"].layer) == (["similarity", "sinkhorn"], -1)
    assert [e.name for e in E.test_evaluations(full, "rq2")] == ["flores.test", "flores.test.unseen"]
