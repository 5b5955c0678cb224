"""`optical-viz bench gpu_protocol` (optical_viz.benchmarks.gpu_protocol) on the CPU, with the
tiny model: the GPU protocol's first dev configuration as it is built (batch 128 x 128, bf16),
for 2 steps of 3000."""
from __future__ import annotations

import numpy as np
import pytest

from experiments_fixtures import tiny_home, tiny_home_dir  # noqa: F401  (fixtures)
from optical_viz.benchmarks.gpu_protocol import time_configs


@pytest.mark.slow  # ~10 s: two steps of batch 128 x 128 (tiny model)
def test_gpu_protocol_bench_trains_two_steps_on_cpu(tiny_home, data_root):
    out = time_configs(["ot-published-lr0.0001"], steps=2, device="cpu", root=data_root, progress=False)
    row = out["configs"]["ot-published-lr0.0001"]
    assert (row["loss"], row["batch_size"], row["max_length"], row["precision"]) == ("ot", 128, 128, "bf16")
    assert out["protocol_steps"] == 3000 and out["timed_steps"] == 2
    assert len(row["step_times_s"]) == 2 and all(np.isfinite(row["losses"])) and row["median_step_s"] > 0
    assert row["protocol_run_h"] == pytest.approx(row["median_step_s"] * 3000 / 3600, abs=1e-3)
    assert row["peak_gpu_memory_gb"] is None  # on the CPU
    with pytest.raises(ValueError, match="not a dev configuration"):
        time_configs(["ot-nope"], steps=2, device="cpu", root=data_root)
    with pytest.raises(ValueError, match="--steps must be at least 2"):
        time_configs(["ot-published-lr0.0001"], steps=1, device="cpu", root=data_root)
