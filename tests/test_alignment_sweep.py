"""optical_viz.experiments.alignment_sweep: leave-one-pair-out selection on tables whose answer
is known, the results files, and a tiny sweep with the model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from optical_viz.experiments.alignment_sweep import describe, family_of, leave_one_pair_out, write_results


def _row(pair, family, layer, aer, method=None, extraction="inter"):
    method = method or {"argmax": "similarity"}.get(family, family)
    return dict(pair=pair, family=family, method=method, extraction=extraction, layer=layer, aer=aer)


# sinkhorn: layer 1 and layer 2; argmax: layer 1 only.  AER per pair a, b, c:
#   sinkhorn L1  .10 .20 .31     best in-sample per pair: a .10 (L1), b .10 (L2), c .31 (L1)
#   sinkhorn L2  .15 .10 .35
#   argmax   L1  .12 .22 .25
#   argmax   L2  .50 .50 .50     (never chosen)
TABLE = [
    _row("a", "sinkhorn", 1, 0.10), _row("b", "sinkhorn", 1, 0.20), _row("c", "sinkhorn", 1, 0.31),
    _row("a", "sinkhorn", 2, 0.15), _row("b", "sinkhorn", 2, 0.10), _row("c", "sinkhorn", 2, 0.35),
    _row("a", "argmax", 1, 0.12), _row("b", "argmax", 1, 0.22), _row("c", "argmax", 1, 0.25),
    _row("a", "argmax", 2, 0.50), _row("b", "argmax", 2, 0.50), _row("c", "argmax", 2, 0.50),
]


def test_lopo_chooses_on_two_pairs_and_scores_the_third():
    lopo = leave_one_pair_out(TABLE)
    sk = lopo.families["sinkhorn"]
    # hold out a: on b, c L1 .255 vs L2 .225 -> L2, scored .15 on a
    # hold out b: on a, c L1 .205 vs L2 .25  -> L1, scored .20 on b
    # hold out c: on a, b L1 .15  vs L2 .125 -> L2, scored .35 on c
    assert [(f.held_out, f.setting["layer"]) for f in sk.folds] == [("a", 2), ("b", 1), ("c", 2)]
    assert [f.held_out_aer for f in sk.folds] == [0.15, 0.20, 0.35]
    assert [f.train_aer for f in sk.folds] == pytest.approx([0.225, 0.205, 0.125])
    assert sk.mean_held_out_aer == pytest.approx(0.70 / 3)
    # on all three pairs L2 (mean .2000) beats L1 (.2033): the setting a default would ship
    assert sk.setting_all["layer"] == 2 and sk.aer_all == {"a": 0.15, "b": 0.10, "c": 0.35}
    # argmax chooses L1 in every fold: held-out = its own AER, mean .1967 < .2333
    assert lopo.families["argmax"].mean_held_out_aer == pytest.approx(0.59 / 3)
    assert lopo.default == "argmax" and lopo.setting["method"] == "similarity"
    assert lopo.held_out() == {"a": 0.12, "b": 0.22, "c": 0.25}
    # tuned per pair on the pair itself, sinkhorn would look better (.17): the optimism LOPO removes
    assert (0.10 + 0.10 + 0.31) / 3 < lopo.families["argmax"].mean_held_out_aer


def test_lopo_restricted_to_some_families_and_bad_input():
    assert leave_one_pair_out(TABLE, families=["sinkhorn"]).default == "sinkhorn"
    with pytest.raises(ValueError, match="at least two pairs"):
        leave_one_pair_out([r for r in TABLE if r["pair"] == "a"])
    with pytest.raises(ValueError, match="no sweep row belongs to the families"):
        leave_one_pair_out(TABLE, families=["emd"])
    # a setting missing on a training pair cannot be chosen
    partial = [r for r in TABLE if not (r["family"] == "argmax" and r["pair"] == "b")]
    assert [f.held_out for f in leave_one_pair_out(partial, families=["sinkhorn"]).families["sinkhorn"].folds] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="no setting was scored on every pair"):
        leave_one_pair_out(partial, families=["argmax"])


def test_families_of_sweep_rows():
    assert family_of({"method": "similarity", "extraction": "inter"}) == "argmax"
    assert family_of({"method": "dot", "extraction": "softmax"}) == "softmax"
    assert family_of({"method": "similarity", "extraction": "itermax"}) == "itermax"
    assert family_of({"method": "unbalanced", "extraction": "threshold"}) == "unbalanced"
    assert family_of({"method": "similarity", "extraction": "threshold"}) is None
    assert describe({"method": "sinkhorn", "param": "eps", "value": 0.05, "eps": 0.05, "extraction": "threshold",
                     "threshold": 0.5, "layer": 6}) == "sinkhorn eps=0.05, threshold 0.5, layer 6"


def test_write_results(tmp_path):
    lopo = leave_one_pair_out(TABLE)
    files = write_results(TABLE, lopo, tmp_path, {"model": "m", "commit": "abc", "date": "2026-12-07"})
    doc = json.loads(files["heldout"].read_text())
    assert doc["default"] == "argmax" and doc["held_out_aer"] == {"a": 0.12, "b": 0.22, "c": 0.25}
    assert doc["argmax_same_layer_aer"] == {"a": 0.12, "b": 0.22, "c": 0.25}
    # sinkhorn chose layers 2, 1, 2: argmax at those layers
    assert doc["best_ot_family"] == "sinkhorn" and doc["argmax_same_layer_as_best_ot_aer"] == {"a": 0.5, "b": 0.22, "c": 0.5}
    assert doc["commit"] == "abc" and doc["model"] == "m"
    lines = files["sweep"].read_text().splitlines()
    assert len(lines) == 1 + len(TABLE) and lines[0].startswith("pair,family,method")
    assert "| argmax (default) | 12.0 | 22.0 | 25.0 | 19.7 |" in files["table"].read_text()


def test_a_tiny_sweep_with_the_model(encoder, data_root):
    from optical_viz.experiments.alignment_sweep import sweep

    plans = (("similarity", "eps", (0.05,)), ("sinkhorn", "eps", (0.05,)))
    rows = sweep(encoder, ["enfr", "roen"], data_root, layers=[6], limit=8, plans=plans, progress=False)
    assert {r["family"] for r in rows} == {"argmax", "itermax", "softmax", "sinkhorn"}
    assert all(r["n"] == 8 and 0 <= r["aer"] <= 1 for r in rows)
    # the sweep's rows are evaluate_alignment's numbers for the same setting
    from optical_viz.alignment import evaluate_alignment

    ref = evaluate_alignment(encoder, ["enfr"], ("sinkhorn",), (6,), "threshold", 0.05, data_root, limit=8)["results"][0]
    got = next(r for r in rows if r["pair"] == "enfr" and r["method"] == "sinkhorn" and r["threshold"] == 0.5)
    assert got["aer"] == pytest.approx(ref["aer"], abs=1e-9)
    lopo = leave_one_pair_out(rows)
    assert set(lopo.families) == {"argmax", "itermax", "softmax", "sinkhorn"} and lopo.default in lopo.families


def test_lopo_on_the_csv_read_back(tmp_path):
    """The sweep CSV read back with pandas (NaN for empty cells) gives the same selection."""
    import pandas as pd

    rows = [dict(r, param="eps" if r["family"] == "sinkhorn" else None, value=0.05 if r["family"] == "sinkhorn" else None)
            for r in TABLE]
    lopo = leave_one_pair_out(rows)
    files = write_results(rows, lopo, tmp_path, {"model": "m", "commit": "abc", "date": "d"})
    back = leave_one_pair_out(pd.read_csv(files["sweep"]).to_dict("records"))
    assert back.default == lopo.default and back.held_out("sinkhorn") == pytest.approx(lopo.held_out("sinkhorn"))
    assert back.families["sinkhorn"].setting_all["layer"] == 2 and back.families["argmax"].setting_all["param"] is None


def test_plot_by_layer_draws_each_family_per_pair():
    import matplotlib

    matplotlib.use("Agg")
    from optical_viz.plots import plot_alignment_by_layer

    rows = TABLE + [_row("a", "sinkhorn", 1, 0.05, extraction="threshold")]  # a better sinkhorn row at layer 1
    axes = plot_alignment_by_layer(rows, chosen={"a": 2})
    assert [ax.get_title() for ax in axes] == ["a", "b", "c"]
    lines = {line.get_label(): line for line in axes[0].lines if not line.get_label().startswith("_")}
    assert set(lines) == {"sinkhorn", "argmax"}
    # per layer the family's best setting, in percent
    assert lines["sinkhorn"].get_ydata().tolist() == pytest.approx([5.0, 15.0])
    assert any(list(line.get_xdata()) == [2, 2] for line in axes[0].lines)  # the chosen layer marked
    with pytest.raises(ValueError, match="need columns"):
        plot_alignment_by_layer([{"pair": "a"}])


def _sweep_tool():
    import importlib.util

    tool = Path(__file__).resolve().parent.parent / "tools" / "alignment_sweep.py"
    spec = importlib.util.spec_from_file_location("alignment_sweep_tool", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_tool_refuses_a_model_without_its_own_out(tmp_path, capsys):
    """Sweeping another model (a fine-tuned aligner) must not overwrite the default model's results."""
    tool = _sweep_tool()
    with pytest.raises(SystemExit):
        tool.main(["--model", str(tmp_path)])
    assert "--model needs its own --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(["--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert "no such model directory" in capsys.readouterr().err
