"""optical_viz.align_train: the self-training objective by hand, the config, and a few steps
on real bitext that lower the training loss."""
from __future__ import annotations

import math

import pytest
import torch

from optical_viz.align_train import AlignTrainConfig, align_train, link_targets, loss_on, self_training_loss


def test_self_training_loss_by_hand():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1, T=2, H=2)
    y = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])  # (1, S=3, H=2); token 2 is masked out
    xm, ym = torch.ones(1, 2, dtype=torch.bool), torch.tensor([[True, True, False]])
    a = torch.zeros(1, 2, 3)
    a[0, 0, 0] = 1.0
    # logits [[2, 0], [0, 1]]: row softmax at (0, 0) = e^2 / (e^2 + 1); column softmax = e^2 / (e^2 + 1)
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert float(self_training_loss(x, y, xm, ym, a)) == pytest.approx(expected, rel=1e-6)
    a[0, 1, 1] = 1.0  # (1, 1): row e / (1 + e), column e / (1 + e)
    expected = (-2 * math.log(math.exp(2) / (math.exp(2) + 1)) - 2 * math.log(math.e / (1 + math.e))) / 4
    assert float(self_training_loss(x, y, xm, ym, a)) == pytest.approx(expected, rel=1e-6)
    assert float(self_training_loss(x, y, xm, ym, torch.zeros(1, 2, 3))) == 0.0
    with pytest.raises(ValueError, match=r"targets \(B, T, S\)"):
        self_training_loss(x, y, xm, ym, torch.zeros(1, 3, 3))


def test_link_targets_are_the_aligners_links_on_content_tokens():
    x = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])  # token 0 is not content
    y = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    xm = torch.tensor([[False, True, True]])
    ym = torch.ones(1, 2, dtype=torch.bool)
    a = link_targets(x, y, xm, ym, "sinkhorn", 0.05, "inter")
    assert a[0].nonzero().tolist() == [[1, 1], [2, 0]]


@pytest.mark.parametrize("path", ["configs/align-train.yaml", "configs/align-train-fr.yaml"])
def test_the_shipped_configs_load(path):
    AlignTrainConfig.from_yaml(path)


def test_config_is_strict_and_capped():
    with pytest.raises(ValueError, match="max_pairs must be in"):
        AlignTrainConfig(languages=["deu_Latn"], max_pairs=20_001)
    with pytest.raises(ValueError, match="stpes"):
        AlignTrainConfig.from_dict({"languages": ["deu_Latn"], "stpes": 3})


@pytest.mark.slow  # ~1 min on a shared 2-core CPU
def test_a_few_steps_lower_the_training_loss(tmp_path, data_root):
    from optical_viz.align_train import _bitext
    from optical_viz.encoder import load_encoder

    cfg = AlignTrainConfig(languages=["deu_Latn"], max_pairs=16, batch_size=8, steps=6, lr=1e-4, max_length=32)
    batch = _bitext(cfg, data_root)[:8]
    before = loss_on(cfg, load_encoder(), batch)
    res = align_train(cfg, tmp_path / "run", root=data_root, progress=False)
    after = loss_on(cfg, load_encoder(str(res.student_dir)), batch)
    assert len(res.losses) == 6 and res.pairs == 16
    assert after < before  # the loss it trained on fell
    assert (res.student_dir / "optical_viz_training.json").is_file() and (res.student_dir / "align_train.yaml").is_file()
