"""`optical-viz bench large_collection` (optical_viz.benchmarks.large_collection): it runs at a
small size and its forked children do not hang (the search itself is tested in
tests/test_retrieval_large_collections.py)."""
from __future__ import annotations


def test_benchmark_child_does_not_hang_after_the_parent_used_threads():
    """OpenMP is not fork-safe: with a parent whose torch thread pool is running (as in a full
    `make test`), the benchmark's forked children used to hang forever."""
    import subprocess
    import sys

    code = (
        "import argparse, torch\n"
        "torch.set_num_threads(2); x = torch.randn(1000, 1000); (x @ x).sum()\n"
        "from optical_viz.benchmarks import large_collection as lc\n"
        "p = argparse.ArgumentParser(); lc.add_arguments(p)\n"
        "out = lc.run(p.parse_args(['--passages', '3000', '--queries', '4', '--hnsw-passages', '1000']))\n"
        "print('done', out['child_threads'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("done 1")


def test_benchmark_runs_at_a_small_size():
    import argparse

    from optical_viz.benchmarks import large_collection

    p = argparse.ArgumentParser()
    large_collection.add_arguments(p)
    out = large_collection.run(p.parse_args(["--passages", "5000", "--queries", "8", "--hnsw-passages", "2000"]))
    rows = {r["method"]: r for r in out["results"]}
    assert set(rows) == {"exact_chunked", "faiss_flat", "faiss_hnsw"}
    assert rows["faiss_flat"]["recall_at_10"] == 1.0 and 0 <= rows["faiss_hnsw"]["recall_at_10"] <= 1
