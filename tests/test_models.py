"""optical_viz.models: the teacher-output cache keeps its bound and gives the loss and the
gradients of the teacher's forward exactly."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_distill_config


def test_teacher_cache_keeps_the_recent_entries_within_its_bound():
    import torch

    from optical_viz.models import TeacherCache

    entry = lambda n: torch.zeros(n, 1, 4)  # (L, K, H) float32: 16 bytes per token
    cache = TeacherCache(max_bytes=100)
    cache.check((20, (-1,), "fp32"))
    cache.put("a", entry(2))
    cache.put("b", entry(3))  # 80 bytes in all
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", entry(1))  # 96 bytes: fits
    cache.put("d", entry(2))  # over the bound: the least recent ("b") goes
    assert list(cache.entries) == ["a", "c", "d"] and cache.bytes == 80
    cache.put("huge", entry(7))  # larger than the whole bound: not kept, nothing evicted
    assert "huge" not in cache.entries and cache.bytes == 80
    assert cache.get("b") is None and (cache.hits, cache.lookups) == (1, 2) and cache.hit_rate == 0.5
    cache.check((20, (-1,), "fp32"))  # same tokenization and layers: kept
    assert len(cache.entries) == 3
    cache.check((32, (-1,), "fp32"))  # another max_length: other token sequences
    assert not cache.entries and cache.bytes == 0
    with pytest.raises(ValueError, match="max_bytes must be >= 0, got -1"):
        TeacherCache(-1)


@pytest.mark.parametrize("loss", ["ot", "contrastive", "mse"])
def test_teacher_cache_gives_the_loss_and_gradients_of_a_forward(tmp_path, data_root, teacher_cache_models, loss):
    """A batch with an English sentence twice (two languages, FLORES is multi-parallel): the loss
    and every gradient with the cache (first pass: all misses; second: all hits) equal those
    of the teacher's forward of the padded batch."""
    from accelerate import Accelerator

    from optical_viz.distill import Trainer

    cfg, corpora, models = teacher_cache_models
    yo, de = corpora
    k = de.tgt.index(yo.tgt[0])  # the German pair with the English of Yoruba pair 0
    pairs = [(yo.lang, yo.src[i], yo.tgt[i]) for i in range(3)] + [(de.lang, de.src[k], de.tgt[k])]
    acc = Accelerator(cpu=True)

    def step(trainer):
        loss = trainer.compute_loss(pairs)
        total, terms = loss.total, loss.terms
        total.backward()
        grads = {n: p.grad.clone() for n, p in models.student.model.named_parameters() if p.grad is not None}
        models.student.model.zero_grad(set_to_none=True)
        return total.item(), {t: v.item() for t, v in terms.items()}, grads

    plain = step(Trainer(cfg.replace(loss=loss, teacher_cache_mb=0), tmp_path, corpora, models, acc))
    cached = Trainer(cfg.replace(loss=loss), tmp_path, corpora, models, acc)
    for hit in (0.0, 1.0):
        got = step(cached)
        assert cached.last_cache_hit == hit
        assert got[0] == pytest.approx(plain[0], rel=1e-5) and got[1] == pytest.approx(plain[1], rel=1e-5)
        assert got[2].keys() == plain[2].keys() and len(got[2]) > 0
        for name, g in got[2].items():
            scale = float(plain[2][name].abs().max())
            np.testing.assert_allclose(g.numpy(), plain[2][name].numpy(), rtol=1e-5, atol=1e-5 * scale, err_msg=name)
    assert len(cached.teacher_cache.entries) == 3  # one entry per distinct English sentence


@pytest.fixture(scope="module")
def teacher_cache_models(data_root, default_model_dir):
    from accelerate import Accelerator

    from optical_viz.data.training import load_training_data
    from optical_viz.models import load_models

    cfg = tiny_distill_config("/nonexistent", languages=["yor_Latn", "deu_Latn"], dropout=0.0)  # no dropout: forwards repeat exactly
    return cfg, load_training_data(cfg, root=data_root), load_models(cfg, Accelerator(cpu=True).device)


@pytest.mark.parametrize("module", ["distill", "widgets", "align_train", "losses", "alignment", "plots",
                                    "commands/align", "commands/evaluate", "commands/distill", "commands/align_train"])
def test_no_private_name_crosses_a_module(module):
    """The trainer reads the models' helpers by their public names (issue 23: distill imported
    five underscored names of models); the same holds for the modules around it."""
    import ast
    from pathlib import Path

    import optical_viz

    path = Path(optical_viz.__file__).parent / f"{module}.py"
    crossing = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("optical_viz"):
            crossing += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.startswith("_") \
                and not node.attr.startswith("__") and node.value.id in {"plots", "alignment", "A", "al", "models", "losses",
                                                                         "transport", "rundir", "monitor", "geometry"}:
            crossing.append(f"{node.value.id}.{node.attr}")
    assert crossing == []
