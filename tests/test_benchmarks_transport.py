"""`optical-viz bench transport` (optical_viz.benchmarks.transport): its problems are what the
module says (masked, peaked cosine costs in e5's range), and at a tiny size every solver reaches
the converged reference plan (times are printed, not asserted)."""
from __future__ import annotations

import argparse

import torch

from optical_viz.benchmarks import transport as bench

PLAN_ATOL = 1e-3  # every solver at tol 1e-5 against the float64 reference at 1e-10


def test_make_problem_gives_masked_peaked_costs_in_e5s_range():
    C, sm, tm = bench.make_problem(16, seed=3)
    assert C.dtype == torch.float64 and C.shape == (16, sm.shape[1], tm.shape[1])
    lo, hi = bench.LENGTHS
    for mask in (sm, tm):
        lengths = mask.sum(1)
        assert ((lengths >= lo) & (lengths <= hi)).all() and int(lengths.max()) == mask.shape[1]
        assert (mask[:, :-1].int() >= mask[:, 1:].int()).all()  # padding at the end
    real = sm[:, :, None] & tm[:, None, :]  # (B, T, S)
    costs = C[real]
    assert ((costs >= 0) & (costs <= 2)).all()
    q05, q50, q95 = torch.quantile(costs, torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)).tolist()
    assert 0.08 < q05 < q50 < q95 < 0.4 and 0.15 < q50 < 0.3  # the docstring: 0.13 / 0.22 / 0.32
    # each target token is a noisy copy of one source token: its best source is far below the rest
    masked = C.masked_fill(~real, float("inf"))
    best = masked.min(dim=1).values[tm]  # (real targets,)
    assert float(best.mean()) < 0.6 * q50
    again = bench.make_problem(16, seed=3)
    assert torch.equal(again[0], C) and not torch.equal(bench.make_problem(16, seed=4)[0][:, :8, :8], C[:, :8, :8])


def test_run_at_a_tiny_size_reaches_the_reference_with_every_solver():
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--batches", "4", "--dtypes", "float64", "--repeats", "1", "--sections", "sinkhorn"])
    result = bench.run(args)
    rows = {r["solver"]: r for r in result["rows"]}
    assert set(rows) == {"ours", "ours_tight", "ours_log", "pot_batch", "pot_loop"}
    for name, row in rows.items():
        assert row["batch"] == 4 and row["dtype"] == "float64" and row["seconds"] > 0
        assert row["max_abs_diff"] < PLAN_ATOL, name
    (speedup,) = result["speedups"]
    assert speedup["vs_pot_loop"] == rows["pot_loop"]["seconds"] / rows["ours"]["seconds"]
