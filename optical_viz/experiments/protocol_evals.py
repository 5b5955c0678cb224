"""What a protocol run is scored on: the dev score at every checkpoint (tuning) and the
primary and secondary metrics of the test stage, as :class:`~optical_viz.experiments.grid.EvalSpec`."""
from __future__ import annotations

from optical_viz.experiments.grid import EvalSpec
from optical_viz.protocol import Protocol, maxsim_subset, question_articles

MAXSIM_SEED = 2026  # budget.cuts: the fixed MaxSim subset of the test questions


def rq1_question_ids(p: Protocol, split: str, set_name: str = "xquad_r", root=None) -> list[str]:
    """The question ids of the dev or test articles (read from the English file)."""
    articles = set(p.splits.rq1.articles(split))
    by_id = question_articles(set_name, "eng_Latn", root=root)
    return sorted(q for q, a in by_id.items() if a in articles)


def _cut(p: Protocol, **fields) -> dict:
    """Quick-scale query / candidate limits."""
    return p.limits.cuts | fields


def dev_evaluations(p: Protocol, question: str, root=None) -> list[EvalSpec]:
    """The dev score at every checkpoint: RQ1 XQuAD-R L->en on the dev questions; RQ2 FLORES dev."""
    steps = p.training.steps
    out = []
    for c in p.checkpoints:
        at = None if c == steps else c
        if question == "rq1":
            out.append(EvalSpec(task="xquad-r", directions=["xx->en"], query_ids=rq1_question_ids(p, "dev", root=root),
                                at_step=at, label=f"xquad-r.dev@{c}", **_cut(p)))
        else:
            out.append(EvalSpec(task="flores", split="dev", at_step=at, label=f"flores.dev@{c}", **_cut(p)))
    return out


def test_evaluations(p: Protocol, question: str, root=None) -> list[EvalSpec]:
    """What every test model is scored on (the protocol's primary and secondary metrics)."""
    if question == "rq1":
        test_ids = rq1_question_ids(p, "test", root=root)
        maxsim_ids = maxsim_subset(test_ids, p.metrics.maxsim.max_queries, seed=MAXSIM_SEED)
        aer = [EvalSpec(task="alignment", pair=m.pair, align_methods=m.methods, layer=m.layer,
                        max_queries=p.limits.max_queries)
               for m in p.metrics.aer]
        return aer + [
            EvalSpec(task="xquad-r", directions=["xx->en"], query_ids=test_ids, label="xquad-r.test", **_cut(p)),
            EvalSpec(task="xquad-r", langs="english", directions=["xx->en"], query_ids=test_ids,
                     label="xquad-r.test.english", **_cut(p)),
            EvalSpec(task="xquad", include_english=True, query_ids=rq1_question_ids(p, "test", "xquad", root=root),
                     label="xquad.test", **_cut(p)),
            EvalSpec(task="xquad-r", scoring="maxsim", directions=["xx->en"], query_ids=maxsim_ids,
                     label="xquad-r.maxsim.test", **_cut(p)),
        ]
    return [
        EvalSpec(task="flores", split="test", label="flores.test", **_cut(p)),
        EvalSpec(task="flores", split="test", langs="unseen", label="flores.test.unseen", **_cut(p)),
    ]
