"""`optical-viz bench large_collection`: top-10 search in a synthetic 1M x 384 collection.

Methods (cosine similarity, k = 10):

- ``exact_chunked``: :func:`optical_viz.retrieval.dense_search`, exact, streamed over
  candidate chunks (a (Q, chunk) score block of at most 2**24 floats and a running top-k);
- ``faiss_flat``: FAISS ``IndexFlatIP`` (exact; the index holds a copy of the collection);
- ``faiss_hnsw``: FAISS ``IndexHNSWFlat`` (approximate), built on the first
  ``--hnsw-passages`` vectors only: a single-threaded HNSW build of all 1M takes longer than
  this benchmark may run (the build rate is reported, so the 1M build time can be read off).

The collection mimics sentence embeddings (see :func:`make_collection`): a low-dimensional
mixture of ``--clusters`` topics mapped into 384 dimensions, L2-normalised; queries are drawn
from the same mixture. Each row reports the wall time of
the search (index build apart), queries/s, the peak resident memory above the collection's
own (sampled every 5 ms), and recall@10 against the exact top-10 of the same vectors. The
memory that the former evaluation path needed, a (2048, D) float32 score block, is given for
comparison. Run it with OMP_NUM_THREADS=1 for single-core numbers.
"""
from __future__ import annotations

import os
import time

import numpy as np

from optical_viz.benchmarks._memory import PeakRSS


def add_arguments(parser) -> None:
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=0.6, help="latent passage = topic + noise * N(0, I)")
    parser.add_argument("--hnsw-passages", type=int, default=200_000, help="vectors in the HNSW index")
    parser.add_argument("--hnsw-m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=40)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)


def make_collection(n: int, dim: int, queries: int, clusters: int, noise: float, seed: int, latent: int = 48):
    """(n, dim) and (queries, dim) float32, L2-normalised, generated in blocks (bounded memory).

    Like sentence embeddings, the vectors have a low intrinsic dimension: a ``latent``-dim
    mixture of ``clusters`` Gaussian topics (spread ``noise``), mapped into ``dim`` dimensions
    by a fixed random matrix, plus a little isotropic noise (0.05). Queries are latent
    perturbations of random passages, so their neighbourhoods are well defined.
    """
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((clusters, latent)).astype(np.float32)
    W = (rng.standard_normal((latent, dim)) / np.sqrt(latent)).astype(np.float32)

    def embed(z):
        x = z @ W + 0.05 * rng.standard_normal((len(z), dim), dtype=np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        out[s : s + m] = embed(topics[rng.integers(0, clusters, m)] + noise * rng.standard_normal((m, latent), dtype=np.float32))
    z = topics[rng.integers(0, clusters, queries)] + noise * rng.standard_normal((queries, latent), dtype=np.float32)
    return out, embed(z)


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / exact.shape[1] for a, b in zip(found, exact)]))


def _in_child(fn, *a):
    """Run ``fn(*a)`` in a forked process (the collection is shared copy-on-write), so that
    memory freed by one method does not hide the next one's peak. The child computes with one
    thread (see ``target``), as the committed numbers were measured (OMP_NUM_THREADS=1)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def target():
        # OpenMP is not fork-safe: a child that uses the thread pool of a parent that already
        # ran parallel torch / faiss code hangs. One thread runs inline, without that pool.
        import torch

        torch.set_num_threads(1)
        try:
            from optical_viz.retrieval._scoring import import_faiss

            import_faiss().omp_set_num_threads(1)
        except ImportError:
            pass
        child.send(fn(*a))

    p = ctx.Process(target=target)
    p.start()
    out = parent.recv()
    p.join()
    return out


def _exact(C, Q, k):
    import torch

    from optical_viz.retrieval import dense_search

    with PeakRSS() as mem:
        t = time.perf_counter()
        top = dense_search(torch.from_numpy(Q), torch.from_numpy(C), k=k).top.indices.numpy()
        wall = time.perf_counter() - t
    return top, wall, mem.extra_mb


def _faiss(C, Q, k, hnsw):
    from optical_viz.retrieval._scoring import import_faiss

    faiss = import_faiss()
    with PeakRSS() as mem:
        t = time.perf_counter()
        if hnsw is None:
            ix = faiss.IndexFlatIP(C.shape[1])
        else:
            ix = faiss.IndexHNSWFlat(C.shape[1], hnsw["M"], faiss.METRIC_INNER_PRODUCT)
            ix.hnsw.efConstruction = hnsw["ef_construction"]
        ix.add(C)
        build = time.perf_counter() - t
        if hnsw is not None:
            ix.hnsw.efSearch = hnsw["ef_search"]
        t = time.perf_counter()
        _, found = ix.search(Q, k)
        wall = time.perf_counter() - t
    return found, build, wall, mem.extra_mb


def run(args) -> dict:
    import torch

    from optical_viz.retrieval._scoring import import_faiss

    faiss = import_faiss()
    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or None
    if threads:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    cand, q = make_collection(args.passages, args.dim, args.queries, args.clusters, args.noise, args.seed)
    gen_s = time.perf_counter() - t0
    rows = []

    exact, wall, extra = _in_child(_exact, cand, q, args.k)
    rows.append(dict(method="exact_chunked", passages=args.passages, build_s=0.0, search_s=round(wall, 2),
                     queries_per_s=round(args.queries / wall, 1), peak_extra_mb=extra, recall_at_10=1.0))
    print(rows[-1], flush=True)

    found, build, wall, extra = _in_child(_faiss, cand, q, args.k, None)
    rows.append(dict(method="faiss_flat", passages=args.passages, build_s=round(build, 2), search_s=round(wall, 2),
                     queries_per_s=round(args.queries / wall, 1), peak_extra_mb=extra,
                     recall_at_10=_recall(found, exact)))
    print(rows[-1], flush=True)

    n = min(args.hnsw_passages, args.passages)
    exact_sub, _, _ = _in_child(_exact, cand[:n], q, args.k)
    hnsw = {"M": args.hnsw_m, "ef_construction": args.ef_construction, "ef_search": args.ef_search}
    found, build, wall, extra = _in_child(_faiss, cand[:n], q, args.k, hnsw)
    rows.append(dict(method="faiss_hnsw", passages=n, build_s=round(build, 2), build_vectors_per_s=round(n / build),
                     search_s=round(wall, 4), queries_per_s=round(args.queries / wall, 1), peak_extra_mb=extra,
                     recall_at_10=round(_recall(found, exact_sub), 4), **hnsw))
    print(rows[-1], flush=True)
    return {
        "benchmark": "large_collection",
        "passages": args.passages, "dim": args.dim, "queries": args.queries, "k": args.k,
        "clusters": args.clusters, "noise": args.noise, "seed": args.seed,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads(),
        "child_threads": 1,
        "faiss_version": faiss.__version__, "torch_version": torch.__version__,
        "collection_mb": round(cand.nbytes / 2**20, 1), "generate_s": round(gen_s, 1),
        "former_score_block_mb": round(2048 * args.passages * 4 / 2**20, 1),
        "full_score_matrix_mb": round(args.queries * args.passages * 4 / 2**20, 1),
        "results": rows,
    }
