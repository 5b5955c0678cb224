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

Two more sections (float32, the same problems):

- ``divergence``: the debiased Sinkhorn divergence of every pair, ours
  (``losses.ot_loss(objective="divergence")``, cosine cost, at several tolerances) against
  GeomLoss's ``SamplesLoss("sinkhorn", p=2, debias=True, backend="tensorized")`` (at several
  ``scaling``), on unit-norm token vectors, where GeomLoss's cost |x - y|^2 / 2 is exactly
  the cosine cost and blur^2 = eps. Accuracy: max relative error of the B values against a
  converged float64 reference. "At equal accuracy" compares the fastest setting of each
  whose error is below a level.
- ``eps_scaling``: eps 0.005 with and without eps-scaling (tol 1e-4, max_iter 1000,
  annealing included) next to eps 0.02 without it: iterations, seconds, converged fraction;
  eps-scaling both from the costs' scale (``transport.EPS_SCALING_START``, the default) and
  from the diameter as before issue 22 (``start: "diameter"``), with the iterations per stage;
  then the same rows with adaptive over-relaxation (``overrelax: true``, ``sinkhorn(overrelax=True)``).
- ``eps_scaling_real`` (not run by default): the same on real costs, ``--real-langs`` FLORES
  sentences against their English translations (``--batches`` pairs, the languages in
  turn), e5 last layer, cosine cost; and relative eps 0.1 (``losses.ot_loss(eps_mode=
  "relative")``) with eps-scaling at the protocol's max_iter 300, plain and over-relaxed.
"""
from __future__ import annotations

import os
import statistics
import time

from optical_viz.benchmarks._memory import PeakRSS

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
    parser.add_argument("--sections", nargs="+", default=["sinkhorn", "divergence", "eps_scaling"],
                        choices=["sinkhorn", "divergence", "eps_scaling", "eps_scaling_real"],
                        help="which comparisons to run")
    parser.add_argument("--real-langs", default="deu_Latn,zho_Hans", help="FLORES languages of eps_scaling_real")
    parser.add_argument("--div-eps", type=float, default=0.05, help="eps of the divergence comparison")


def make_problem(batch: int, seed: int = 0, hidden: int = 32, lengths=LENGTHS, noise: float = 0.6, anisotropy: float = 2.0,
                 points: bool = False):
    """Random masked problems: cost (B, T, S) float64 cosine distances and masks (B, T), (B, S)
    (with ``points``: the unit-norm token vectors (B, T, H), (B, S, H) and the masks)."""
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
    if points:
        unit = lambda v: v / v.norm(dim=-1, keepdim=True)  # noqa: E731
        return unit(x + base), unit(y + base), src_mask, tgt_mask
    return cost_matrix(x + base, y + base, "cosine", src_mask, tgt_mask), src_mask, tgt_mask


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
    sections = getattr(args, "sections", ["sinkhorn", "divergence", "eps_scaling"])
    extra = {}
    if "divergence" in sections:
        extra["divergence"] = _divergence_section(args)
    if "eps_scaling" in sections:
        extra["eps_scaling"] = _eps_scaling_section(args)
    if "eps_scaling_real" in sections:
        extra["eps_scaling_real"] = _eps_scaling_real_section(args)
    if "sinkhorn" not in sections:
        result = {"benchmark": "transport", "torch_threads": torch.get_num_threads(),
                  "load_average": list(os.getloadavg()), **extra}
        _print_extra(result)
        return result
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
        with PeakRSS(interval=0.001) as mem:
            solvers[name](C, sm, tm)
        rows.append(
            {
                "solver": name,
                "batch": B,
                "dtype": dname,
                "seconds": statistics.median(times),
                "repeats": repeats,
                "max_abs_diff": float((plan.double() - ref).abs().max()),
                "peak_mb": mem.extra_mb,
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
        **extra,
    }
    _print_table(result)
    _print_extra(result)
    return result


def _timed(fn, repeats: int):
    """(median seconds, last output) of ``repeats`` calls."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _divergence_section(args) -> dict:
    """Ours vs GeomLoss, debiased Sinkhorn divergence per pair, float32, at several accuracies."""
    import warnings

    from geomloss import SamplesLoss

    from optical_viz.losses import ot_loss

    eps, rows = args.div_eps, []
    for B in args.batches:
        x, y, sm, tm = make_problem(B, args.seed, noise=args.noise, anisotropy=args.anisotropy, points=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ref = ot_loss(x, y, sm, tm, objective="divergence", eps=eps, max_iter=100_000, tol=1e-10).per_example  # (B,) float64
        xf, yf = x.float(), y.float()
        # GeomLoss: padding as zero weights, uniform over real tokens
        a = sm.float() / sm.sum(1, keepdim=True)
        b = tm.float() / tm.sum(1, keepdim=True)
        for tol in (1e-3, 1e-4, 1e-5):
            def ours():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    return ot_loss(xf, yf, sm, tm, objective="divergence", eps=eps, max_iter=10_000, tol=tol).per_example
            sec, val = _timed(ours, args.repeats)
            rows.append({"solver": "ours", "setting": f"tol={tol:g}", "batch": B, "seconds": sec,
                         "max_rel_err": float(((val.double() - ref) / ref.abs()).abs().max())})
        for scaling in (0.5, 0.7, 0.9, 0.95, 0.99):
            L = SamplesLoss("sinkhorn", p=2, blur=eps**0.5, debias=True, scaling=scaling, backend="tensorized")
            sec, val = _timed(lambda: L(a, xf, b, yf), args.repeats)
            rows.append({"solver": "geomloss", "setting": f"scaling={scaling:g}", "batch": B, "seconds": sec,
                         "max_rel_err": float(((val.double() - ref) / ref.abs()).abs().max())})
    equal = []
    for B in args.batches:
        for level in (1e-2, 1e-3, 1e-4):
            best = {}
            for r in rows:
                if r["batch"] == B and r["max_rel_err"] <= level:
                    if r["solver"] not in best or r["seconds"] < best[r["solver"]]["seconds"]:
                        best[r["solver"]] = r
            equal.append({"batch": B, "max_rel_err": level,
                          **{f"{k}_seconds": v["seconds"] for k, v in best.items()},
                          **{f"{k}_setting": v["setting"] for k, v in best.items()}})
    return {"eps": eps, "metric": "cosine (unit vectors: = GeomLoss's |x-y|^2/2)", "rows": rows, "at_equal_accuracy": equal}


# the eps-scaling settings compared: (eps, ratio, where the schedule starts, max_iter)
# (eps, eps_scaling, start, max_iter, overrelax): the plain rows, then the same rows over-relaxed
_PLAIN_ROWS = ((0.02, None, None, 1000), (0.005, None, None, 1000), (0.005, 0.5, "diameter", 1000),
               (0.005, 0.5, "scale", 1000), (0.005, 0.5, "scale", 2000))
_SCALING_ROWS = tuple((*r, False) for r in _PLAIN_ROWS) + tuple(
    (*r, True) for r in _PLAIN_ROWS if r[2] != "diameter" and r[3] == 1000)


def _solve_rows(C, sm, tm, B: int, repeats: int, settings=_SCALING_ROWS) -> list[dict]:
    """Time ``sinkhorn`` (float32, tol 1e-4, no gradient) at each setting; "diameter" starts the
    schedule at the diameter (before issue 22), "scale" at diameter / EPS_SCALING_START."""
    import warnings

    from optical_viz import transport

    rows = []
    for eps, scaling, start, max_iter, overrelax in settings:
        def solve():
            default = transport.EPS_SCALING_START
            transport.EPS_SCALING_START = 1.0 if start == "diameter" else default
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    return transport.sinkhorn(C, sm, tm, eps=eps, tol=1e-4, max_iter=max_iter, grad="none",
                                              eps_scaling=scaling, overrelax=overrelax)
            finally:
                transport.EPS_SCALING_START = default
        sec, res = _timed(solve, repeats)
        rows.append({"batch": B, "eps": eps, "eps_scaling": scaling, "start": start, "max_iter": max_iter,
                     "overrelax": overrelax,
                     "seconds": sec, "iterations": res.n_iter, "stages": [[round(e, 5), n] for e, n in res.stages],
                     "converged": float(res.converged.float().mean()), "load_average": list(os.getloadavg())})
    return rows


def _eps_scaling_section(args) -> dict:
    """eps 0.005 with and without eps-scaling, and eps 0.02 as today's default, float32."""
    rows = []
    for B in args.batches:
        C64, sm, tm = make_problem(B, args.seed, noise=args.noise, anisotropy=args.anisotropy)
        rows += _solve_rows(C64.float(), sm, tm, B, args.repeats)
    return {"tol": 1e-4, "rows": rows}


def _eps_scaling_real_section(args) -> dict:
    """The eps-scaling rows on real e5 costs (FLORES, last layer, cosine), and relative eps 0.1."""
    import warnings

    import torch

    from optical_viz import transport
    from optical_viz.data import load_flores
    from optical_viz.encoder import load_encoder
    from optical_viz.losses import ot_loss
    from optical_viz.transport import cost_matrix

    enc = load_encoder()
    enc.progress = False
    langs = args.real_langs.split(",")
    english = load_flores("eng_Latn", split="all").texts
    texts = {lang: load_flores(lang, split="all").texts for lang in langs}
    rows, relative = [], []
    for B in args.batches:
        pairs = [(texts[langs[i % len(langs)]][i // len(langs)], english[i // len(langs)]) for i in range(B)]
        x, y = enc.embed_tokens([p[0] for p in pairs]), enc.embed_tokens([p[1] for p in pairs])  # (B, T, H), (B, S, H)
        C = cost_matrix(x.embeddings, y.embeddings, x_mask=x.mask, y_mask=y.mask)  # (B, T, S)
        rows += _solve_rows(C, x.mask, y.mask, B, args.repeats)
        for scaling, start, overrelax in ((None, None, False), (0.5, "diameter", False), (0.5, "scale", False),
                                          (None, None, True), (0.5, "scale", True)):
            default = transport.EPS_SCALING_START
            transport.EPS_SCALING_START = 1.0 if start == "diameter" else default
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    t0 = time.perf_counter()
                    res = ot_loss(x.embeddings, y.embeddings, x.mask, y.mask, objective="entropic", eps=0.1,
                                  eps_mode="relative", eps_scaling=scaling, max_iter=300, tol=1e-4,
                                  overrelax=overrelax)
                    sec = time.perf_counter() - t0
            finally:
                transport.EPS_SCALING_START = default
            relative.append({"batch": B, "eps": 0.1, "eps_mode": "relative", "eps_scaling": scaling, "start": start,
                             "overrelax": overrelax,
                             "max_iter": 300, "seconds": sec, "converged": float(res.converged.float().mean()),
                             "eps_cost_units_median": float(res.eps.median())})
    return {"tol": 1e-4, "langs": langs, "model": enc.name, "torch_threads": torch.get_num_threads(),
            "rows": rows, "relative": relative}


def _print_extra(result: dict) -> None:
    if "divergence" in result:
        print(f"debiased Sinkhorn divergence, eps {result['divergence']['eps']}: seconds / max relative error")
        for r in result["divergence"]["rows"]:
            print(f"  {r['solver']:<9} {r['setting']:<14} batch {r['batch']:>5}: {r['seconds']:8.4f} s  {r['max_rel_err']:.1e}")
        for e in result["divergence"]["at_equal_accuracy"]:
            print(f"  at error <= {e['max_rel_err']:g}, batch {e['batch']}: ours {e.get('ours_seconds', float('nan')):.4f} s "
                  f"({e.get('ours_setting', '-')}), GeomLoss {e.get('geomloss_seconds', float('nan')):.4f} s ({e.get('geomloss_setting', '-')})")
    for section in ("eps_scaling", "eps_scaling_real"):
        if section not in result:
            continue
        print(f"{section} (tol 1e-4):")
        for r in result[section]["rows"]:
            print(f"  batch {r['batch']:>5} eps {r['eps']:<6} scaling {str(r['eps_scaling']):<5} from {str(r['start']):<8} "
                  f"{'over-relaxed ' if r.get('overrelax') else ''}"
                  f"max_iter {r['max_iter']:>5}: {r['seconds']:8.4f} s, {r['iterations']:>5} iterations, "
                  f"{r['converged']:.1%} converged; stages {r['stages']}")
        for r in result[section].get("relative", []):
            print(f"  batch {r['batch']:>5} relative eps 0.1 scaling {str(r['eps_scaling']):<5} from {str(r['start']):<8} "
                  f"{'over-relaxed ' if r.get('overrelax') else ''}"
                  f"max_iter 300: {r['seconds']:8.4f} s, {r['converged']:.1%} converged")


def _print_table(result: dict) -> None:
    print(f"{'solver':<10} {'batch':>6} {'dtype':<8} {'seconds':>9} {'max|dP|':>9} {'peak MB':>8}")
    for r in result["rows"]:
        print(f"{r['solver']:<10} {r['batch']:>6} {r['dtype']:<8} {r['seconds']:>9.4f} {r['max_abs_diff']:>9.2e} {r['peak_mb']:>8.1f}")
    for s in result["speedups"]:
        loop = f"{s['vs_pot_loop']:.1f}x" if s["vs_pot_loop"] else "-"
        print(f"speedup batch {s['batch']} {s['dtype']}: vs POT loop {loop}, vs POT batch {s['vs_pot_batch']:.2f}x "
              f"(tol/10: {s['tight_vs_pot_batch']:.2f}x), vs our log domain {s['vs_ours_log']:.1f}x")
