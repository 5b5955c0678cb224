"""Retrieval evaluation: tasks, dense / MaxSim scoring, metrics with bootstrap CIs, paired test.

>>> from optical_viz.retrieval import evaluate
>>> report = evaluate("flores", langs=["yor_Latn", "hau_Latn"])   # the default model
>>> report.frame[["lang", "direction", "n", "recall@1", "recall@1_ci"]]
>>> json.dump(report.to_json(), open("flores.json", "w"))

The numerical core (``_metrics``, ``_scoring``) is pure torch / numpy and is tested
against brute force; ``_tasks`` turns the data sets into queries, candidates and gold
links; ``_evaluate`` wires encoder, embedding cache, scoring and metrics together.
"""
from optical_viz.retrieval._evaluate import RetrievalReport, compare, evaluate, pad_tokens
from optical_viz.retrieval._metrics import (
    Interval,
    PairedTest,
    QueryMetrics,
    Relevance,
    bootstrap_ci,
    metrics_from_ranks,
    paired_test,
    query_metrics,
    relevant_ranks,
)
from optical_viz.retrieval._scoring import (
    INDEXES,
    SCORINGS,
    DenseSearch,
    FaissIndex,
    TokenEmbeddings,
    TopK,
    dense_scores,
    dense_search,
    exact_top_k,
    faiss_search,
    maxsim_scores,
    top_k,
)
from optical_viz.retrieval._subset import select_queries, subset_problem
from optical_viz.retrieval._tasks import (
    TASKS,
    CLIRCollection,
    RetrievalProblem,
    build_problems,
    default_flores_split,
    load_clir,
    resolve_task_languages,
    task_languages,
    trained_teacher,
)
from optical_viz.retrieval._trec import RUN_DEPTH, read_qrels, read_run, trec_query_ids, write_qrels, write_run

__all__ = [
    "evaluate", "compare", "RetrievalReport", "pad_tokens",
    "Interval", "PairedTest", "QueryMetrics", "Relevance", "bootstrap_ci", "paired_test",
    "query_metrics", "relevant_ranks", "metrics_from_ranks",
    "SCORINGS", "TokenEmbeddings", "dense_scores", "maxsim_scores", "top_k", "subset_problem", "select_queries",
    "INDEXES", "TopK", "DenseSearch", "dense_search", "exact_top_k", "faiss_search", "FaissIndex",
    "RUN_DEPTH", "write_run", "write_qrels", "read_run", "read_qrels", "trec_query_ids",
    "TASKS", "CLIRCollection", "RetrievalProblem", "build_problems", "default_flores_split",
    "load_clir", "resolve_task_languages", "task_languages", "trained_teacher",
]
