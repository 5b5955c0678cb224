"""`optical-viz bench transport`: our batched masked Sinkhorn vs POT (loop and batched).

Problems: batches of sentence pairs with lengths drawn from 8..64 (padded to the longest),
costs = cosine distances between token embeddings where each target token is a noisy copy
of a random source token (so plans are peaked, as on real bitext), all embeddings sharing
a common direction (``--anisotropy``) like real e5 token embeddings: at the default 2.0 the
5/50/95% cost quantiles are 0.13/0.22/0.32, those of multilingual-e5-small's last layer on
en-fr gold sentences are 0.11/0.22/0.34. eps = 0.05.
Solvers, all at the same tolerance:

- ``ours``: ``optical_viz.transport.sinkhorn`` (grad="none"), masks: length buckets, kernel
  domain (batched matrix-vector products) where exp(-C / eps) is safe, which it is here;
  ``ours_tight`` the same at tol / 10, for a comparison at equal accuracy with POT's
  (stricter) batch check; ``ours_log`` the same forced into the log domain (``domain="log"``,
  what small eps runs), to show what the kernel domain buys;
- ``pot_loop``: a Python loop of ``ot.sinkhorn(method="sinkhorn_log")`` on each real block;
- ``pot_batch``: ``ot.batch.solve_batch(method="log_sinkhorn")``, padding emulated by zero
  marginal weights (it has no masks).

Each row reports the median wall time over ``--repeats`` runs, the peak extra resident
memory (sampled in a separate, untimed run: a sampling thread would distort the timings),
and the max absolute plan difference to a converged float64 reference (our solver at
tol 1e-10; tests/test_transport.py checks it against POT to 1e-6 and better).
"""
from __future__ import annotations

import os
import statistics
import threading
import time

LENGTHS = (8, 64)


def add_arguments(parser) -> None:
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 1024], help="batch sizes")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--tol", type=float, default=1e-5, help="marginal tolerance for every solver")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per solver (median)")
    parser.add_argument("--loop-max-batch", type=int, default=1024, help="skip the POT loop above this batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 is fairer on a shared, busy CPU")
    parser.add_argument("--noise", type=float, default=0.6, help="target = noisy copy of a source token")
    parser.add_argument("--anisotropy", type=float, default=2.0, help="norm of the shared direction (0: isotropic, harder)")


def make_problem(batch: int, seed: int = 0, hidden: int = 32, lengths=LENGTHS, noise: float = 0.6, anisotropy: float = 2.0):
    """Random masked problems: cost (B, T, S) float64 cosine distances and masks (B, T), (B, S)."""
    import torch

    from optical_viz.transport import cost_matrix

    g = torch.Generator().manual_seed(seed)
    lo, hi = lengths
    T_len = torch.randint(lo, hi + 1, (batch,), generator=g)
    S_len = torch.randint(lo, hi + 1, (batch,), generator=g)
    T, S = int(T_len.max()), int(S_len.max())
    x = torch.randn(batch, T, hidden, generator=g, dtype=torch.float64)
    src = torch.randint(0, 1 << 30, (batch, S), generator=g) % T_len[:, None]  # (B, S) source of each target
    y = torch.gather(x, 1, src[:, :, None].expand(-1, -1, hidden))  # (B, S, H)
    y = y + noise * torch.randn(batch, S, hidden, generator=g, dtype=torch.float64)
    src_mask = torch.arange(T)[None, :] < T_len[:, None]  # (B, T)
    tgt_mask = torch.arange(S)[None, :] < S_len[:, None]  # (B, S)
    base = torch.randn(hidden, generator=g, dtype=torch.float64)
    base = anisotropy * hidden**0.5 * base / base.norm()  # (H,) shared direction
    return cost_matrix(x + base, y + base, "cosine", src_mask, tgt_mask), src_mask, tgt_mask


class _PeakRSS:
    """Peak resident memory above the level at entry, sampled every millisecond (Linux)."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _solvers(eps: float, tol: float):
    import numpy as np
    import ot
    import ot.batch
    import torch

    from optical_viz.transport import marginal, sinkhorn

    def ours(C, sm, tm):
        return sinkhorn(C, sm, tm, eps=eps, tol=tol, max_iter=10_000, grad="none").plan

    def ours_tight(C, sm, tm):  # tol / 10: our per-problem L1 check is looser than POT's batch check
        return sinkhorn(C, sm, tm, eps=eps, tol=tol / 10, max_iter=10_000, grad="none").plan

    def ours_log(C, sm, tm):
        return sinkhorn(C, sm, tm, eps=eps, tol=tol, max_iter=10_000, grad="none", domain="log").plan

    def pot_batch(C, sm, tm):
        a, b = marginal(sm, dtype=C.dtype), marginal(tm, dtype=C.dtype)
        return ot.batch.solve_batch(C, eps, a, b, max_iter=10_000, tol=tol, method="log_sinkhorn", grad="detach").plan

    def pot_loop(C, sm, tm):
        plan = torch.zeros_like(C)
        Cn = C.numpy()
        for i in range(C.shape[0]):
            t, s = int(sm[i].sum()), int(tm[i].sum())
            a, b = np.full(t, 1.0 / t, dtype=Cn.dtype), np.full(s, 1.0 / s, dtype=Cn.dtype)
            p = ot.sinkhorn(a, b, Cn[i, :t, :s], eps, method="sinkhorn_log", numItermax=10_000, stopThr=tol)
            plan[i, :t, :s] = torch.from_numpy(p)
        return plan

    return {"ours": ours, "ours_tight": ours_tight, "ours_log": ours_log, "pot_batch": pot_batch, "pot_loop": pot_loop}


def run(args) -> dict:
    import torch
    from tqdm import tqdm

    from optical_viz.transport import sinkhorn

    if args.threads:
        torch.set_num_threads(args.threads)
    solvers = _solvers(args.eps, args.tol)
    rows = []
    jobs = [(B, d, name) for B in args.batches for d in args.dtypes for name in solvers]
    refs = {}
    for B, dname, name in tqdm(jobs, desc="bench transport", unit="run"):
        if name == "pot_loop" and B > args.loop_max_batch:
            continue
        if B not in refs:
            C64, sm, tm = make_problem(B, args.seed, noise=args.noise, anisotropy=args.anisotropy)
            ref = sinkhorn(C64, sm, tm, eps=args.eps, tol=1e-10, max_iter=100_000, grad="none").plan
            refs[B] = (C64, sm, tm, ref)
        C64, sm, tm, ref = refs[B]
        C = C64.to(getattr(torch, dname))
        repeats = 1 if name == "pot_loop" and B >= 512 else args.repeats
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            plan = solvers[name](C, sm, tm)
            times.append(time.perf_counter() - t0)
        with _PeakRSS() as mem:
            solvers[name](C, sm, tm)
        rows.append(
            {
                "solver": name,
                "batch": B,
                "dtype": dname,
                "seconds": statistics.median(times),
                "repeats": repeats,
                "max_abs_diff": float((plan.double() - ref).abs().max()),
                "peak_mb": round(mem.mb, 1),
            }
        )
    speedups = []
    for B in args.batches:
        for dname in args.dtypes:
            t = {r["solver"]: r["seconds"] for r in rows if r["batch"] == B and r["dtype"] == dname}
            speedups.append(
                {
                    "batch": B,
                    "dtype": dname,
                    "vs_pot_loop": t["pot_loop"] / t["ours"] if "pot_loop" in t else None,
                    "vs_pot_batch": t["pot_batch"] / t["ours"],
                    "tight_vs_pot_batch": t["pot_batch"] / t["ours_tight"],
                    "vs_ours_log": t["ours_log"] / t["ours"],
                }
            )
    result = {
        "benchmark": "transport",
        "eps": args.eps,
        "tol": args.tol,
        "lengths": list(LENGTHS),
        "noise": args.noise,
        "anisotropy": args.anisotropy,
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "rows": rows,
        "speedups": speedups,
    }
    _print_table(result)
    return result


def _print_table(result: dict) -> None:
    print(f"{'solver':<10} {'batch':>6} {'dtype':<8} {'seconds':>9} {'max|dP|':>9} {'peak MB':>8}")
    for r in result["rows"]:
        print(f"{r['solver']:<10} {r['batch']:>6} {r['dtype']:<8} {r['seconds']:>9.4f} {r['max_abs_diff']:>9.2e} {r['peak_mb']:>8.1f}")
    for s in result["speedups"]:
        loop = f"{s['vs_pot_loop']:.1f}x" if s["vs_pot_loop"] else "-"
        print(f"speedup batch {s['batch']} {s['dtype']}: vs POT loop {loop}, vs POT batch {s['vs_pot_batch']:.2f}x "
              f"(tol/10: {s['tight_vs_pot_batch']:.2f}x), vs our log domain {s['vs_ours_log']:.1f}x")
