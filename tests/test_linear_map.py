"""The start of a cross-model distillation (optical_viz.linear_map, issue 26): a ridge
least-squares map from the student's space to the teacher's, fitted on bitext, applied per
token on the student's last layer, saved as a sentence-transformers Dense module."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import tiny_distill_config
from optical_viz.linear_map import MappedModel, attach_linear_map, fit_linear_map, read_dense, write_dense

H = 8  # width of the stub encoders
RECOVER_TOL = 1e-3  # a map fitted at a tiny ridge on noise-free data: max abs error of X @ W vs Y
MIN_COSINE = 0.9999  # the same weights, float32, encoded twice
# held-out MSE to the teacher, mapped student over the plain one (unrelated unit vectors)
MAX_MSE_RATIO = 0.8


class _Stub:
    """An encoder stand-in: sentence i of ``table`` embeds to row i (embed_sentences only)."""

    def __init__(self, table: dict[str, torch.Tensor]):
        self.table = table

    def embed_sentences(self, texts, normalize=True):
        x = torch.stack([self.table[t] for t in texts])  # (N, H)
        return torch.nn.functional.normalize(x, dim=-1) if normalize else x


def _stubs(n=64, seed=0):
    """A student and a teacher whose spaces differ by a known linear map R: teacher = normalise(student @ R)
    for the English sides; the source sides embed where the English ones do (perfect translations)."""
    g = torch.Generator().manual_seed(seed)
    R = torch.randn(H, H, generator=g)
    english = [f"en{i}" for i in range(n)]
    sources = [f"xx{i}" for i in range(n)]
    X = torch.randn(n, H, generator=g)  # (n, H) the student's unnormalised vectors
    student = _Stub({**dict(zip(english, X)), **dict(zip(sources, X))})
    teacher = _Stub(dict(zip(english, torch.nn.functional.normalize(X @ R, dim=-1))))
    return student, teacher, sources, english, X, R


def test_the_fitted_map_lowers_the_mse_to_the_teacher():
    student, teacher, sources, english, X, R = _stubs()
    fit = fit_linear_map(student, teacher, sources, english, ridge=1.0)
    assert fit.weight.shape == (H, H) and fit.weight.dtype == torch.float32 and fit.pairs == len(sources)
    assert fit.mse_after < 0.1 * fit.mse_before, (fit.mse_before, fit.mse_after)


def test_a_tiny_ridge_recovers_an_exact_linear_relation():
    """Unit teacher rows Y and student rows X = Y @ M^-1: Y = X @ M exactly, which a ridge of 1e-6 recovers."""
    g = torch.Generator().manual_seed(1)
    M = torch.randn(H, H, generator=g, dtype=torch.float64)
    Y = torch.nn.functional.normalize(torch.randn(40, H, generator=g, dtype=torch.float64), dim=-1)
    X = Y @ torch.linalg.inv(M)
    en = [f"en{i}" for i in range(40)]
    src = [f"xx{i}" for i in range(40)]
    student = _Stub({**dict(zip(en, X.float())), **dict(zip(src, X.float()))})
    teacher = _Stub(dict(zip(en, Y.float())))
    fit = fit_linear_map(student, teacher, src, en, ridge=1e-6)
    assert torch.allclose(X.float() @ fit.weight, Y.float(), atol=RECOVER_TOL)


@pytest.mark.parametrize("kw, message", [
    (dict(sources=["a"], english=[]), "equal length"),
    (dict(sources=[], english=[]), "non-empty"),
    (dict(ridge=0.0), "ridge must be > 0"),
])
def test_bad_inputs_are_named(kw, message):
    student, teacher, sources, english, _, _ = _stubs(n=4)
    args = dict(sources=sources, english=english, ridge=1.0) | kw
    with pytest.raises(ValueError, match=message):
        fit_linear_map(student, teacher, args["sources"], args["english"], ridge=args["ridge"])


class _Inner(torch.nn.Module):
    """A transformers-like encoder: hidden states of 3 layers, the last one ``last_hidden_state``."""

    def __init__(self):
        super().__init__()
        self.config = type("Config", (), {"hidden_size": H, "num_hidden_layers": 2})()
        self.proj = torch.nn.Linear(H, H)

    def forward(self, x, output_hidden_states=True):
        from transformers.modeling_outputs import BaseModelOutput

        h1 = self.proj(x)
        h2 = torch.tanh(h1)
        return BaseModelOutput(last_hidden_state=h2, hidden_states=(x, h1, h2) if output_hidden_states else None)


def test_mapped_model_maps_the_last_layer_per_token_and_commutes_with_mean_pooling():
    torch.manual_seed(0)
    inner, linear = _Inner(), torch.nn.Linear(H, H, bias=True)
    model = MappedModel(inner, linear)
    x = torch.randn(2, 5, H)  # (B, T, H)
    out, ref = model(x), inner(x)
    assert torch.equal(out.last_hidden_state, linear(ref.last_hidden_state))
    assert out.hidden_states[-1] is out.last_hidden_state
    assert all(torch.equal(a, b) for a, b in zip(out.hidden_states[:-1], ref.hidden_states[:-1]))  # inner layers as they were
    assert torch.allclose(out.last_hidden_state.mean(1), linear(ref.last_hidden_state.mean(1)), atol=1e-6)
    assert model.config.hidden_size == H  # the inner model's attributes show through
    assert {n for n, _ in model.named_parameters()} >= {"linear_map.weight", "linear_map.bias"}


@pytest.mark.parametrize("bias", [False, True])
def test_dense_folder_round_trips(tmp_path, bias):
    torch.manual_seed(0)
    linear = torch.nn.Linear(H, H, bias=bias)
    write_dense(tmp_path, linear)
    weight, b = read_dense(tmp_path / "2_Dense")
    x = torch.randn(3, H)
    got = x @ weight + (b if b is not None else 0)
    assert torch.allclose(got, linear(x), atol=1e-6) and (b is not None) == bias


def test_a_nonlinear_dense_is_refused(tmp_path):
    write_dense(tmp_path, torch.nn.Linear(H, H))
    cfg = tmp_path / "2_Dense" / "config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "activation_function": "torch.nn.modules.activation.Tanh"}))
    with pytest.raises(ValueError, match="activation 'torch.nn.modules.activation.Tanh' cannot be used"):
        read_dense(tmp_path / "2_Dense")


@pytest.mark.parametrize("start, message", [
    ({"method": "procrustes"}, r"start\.method"),
    ({"method": "linear_map", "ridge": 0}, r"start\.ridge must be > 0"),
    ({"method": "linear_map", "pairs": 0}, r"start\.pairs must be >= 1"),
])
def test_start_config_is_checked(tmp_path, start, message):
    with pytest.raises(ValueError, match=message):
        tiny_distill_config(tmp_path, start=start)


@pytest.mark.slow  # a 2-step run with two tiny models, then three encodings
def test_a_minilm_student_starts_in_the_teachers_space_and_reloads(tiny_e5_dir, tiny_minilm_dir, data_root, tmp_path):
    """MiniLM teaches e5 with ``start: linear_map``, both as tiny random twins (conftest: two
    tokenizers, one hidden size). The map fitted on 160 training pairs lowers the MSE to the
    teacher on held-out FLORES dev pairs (no map: two unrelated spaces); the saved student
    reloads (load_encoder and sentence-transformers) and encodes the same vectors as the
    trained one in memory."""
    from sentence_transformers import SentenceTransformer

    from optical_viz.data import load_flores
    from optical_viz.distill import build_trainer, distill
    from optical_viz.encoder import load_encoder

    minilm = str(tiny_minilm_dir)
    cfg = tiny_distill_config(tmp_path / "run", teacher=minilm, student=str(tiny_e5_dir), loss={"name": "mse"},
                              steps=2, max_length=16, eval={"heldout_sentences": 4},
                              start={"method": "linear_map", "pairs": 160, "ridge": 1.0})
    result = distill(cfg, root=data_root, progress=False)
    step0 = result.metrics[0]
    assert step0["step"] == 0 and step0["start_pairs"] == 160 and step0["start_mse_after"] < step0["start_mse_before"]

    yo = load_flores("yor_Latn", split="dev", root=data_root).texts[:16]
    en = load_flores("eng_Latn", split="dev", root=data_root).texts[:16]
    teacher = load_encoder(minilm, device="cpu")
    t = teacher.embed_sentences(en)  # (16, H)
    plain = load_encoder(tiny_e5_dir, device="cpu")
    student = load_encoder(result.student_dir, device="cpu")
    assert isinstance(student.model, MappedModel) and student.identity != plain.identity

    def mse(enc):
        return float(((torch.cat([enc.embed_sentences(yo), enc.embed_sentences(en)]) - t.repeat(2, 1)) ** 2).mean())

    assert mse(student) < MAX_MSE_RATIO * mse(plain), (mse(student), mse(plain))

    # the same vectors: in memory after training, reloaded, and through sentence-transformers
    trainer = build_trainer(cfg, root=data_root)  # fits the same map (same seed and pairs), untrained
    assert torch.allclose(trainer.student.model.linear_map.weight, read_dense(tmp_path / "run/student/2_Dense")[0].T,
                          atol=0.05)  # 2 steps at lr 1e-4 move it a little
    st = torch.tensor(SentenceTransformer(str(result.student_dir), device="cpu").encode(yo))  # (16, H), "query: "
    ours = student.embed_sentences(yo)
    assert torch.nn.functional.cosine_similarity(st, ours, dim=-1).min() >= MIN_COSINE
    modules = json.loads((result.student_dir / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Dense", "Normalize"]
    info = json.loads((result.student_dir / "optical_viz_training.json").read_text())
    assert info["start"] == {"method": "linear_map", "pairs": 160, "ridge": 1.0}
    assert np.isfinite([m["loss"] for m in result.metrics if "loss" in m]).all()


@pytest.mark.slow  # three runs of two tiny models
def test_a_resumed_run_with_the_start_gives_the_metrics_of_an_uninterrupted_one(tiny_e5_dir, tiny_minilm_dir, data_root,
                                                                                tmp_path):
    """Resuming does not fit the map again: the checkpoint holds the trained map (and the student)."""
    from optical_viz.distill import distill, read_metrics

    def cfg(out):
        return tiny_distill_config(out, teacher=str(tiny_minilm_dir), student=str(tiny_e5_dir),
                                   loss={"name": "contrastive"}, steps=3, max_length=16, checkpoint_every=1,
                                   eval={"heldout_sentences": 4}, start={"method": "linear_map", "pairs": 16})

    def losses(out):
        return [(m["step"], m["loss"]) for m in read_metrics(out) if "loss" in m]

    distill(cfg(tmp_path / "whole"), root=data_root, progress=False)
    first = distill(cfg(tmp_path / "parts"), root=data_root, progress=False, max_steps=2)
    assert first.student_dir is None
    distill(cfg(tmp_path / "parts"), resume=True, root=data_root, progress=False)
    assert losses(tmp_path / "parts") == losses(tmp_path / "whole") and len(losses(tmp_path / "whole")) == 3
    whole, parts = (read_dense(tmp_path / name / "student" / "2_Dense")[0] for name in ("whole", "parts"))
    assert torch.equal(whole, parts)


def test_the_padding_free_forward_trains_a_mapped_student_as_its_own_forward(tiny_e5_dir, tiny_minilm_dir, data_root,
                                                                             tmp_path):
    """RQ3's student is a MappedModel: DistillConfig.unpad runs it on real tokens and maps the
    last layer there (the first unpad skipped the map). Three OT + MSE steps with dropout on:
    the losses equal those of the wrapper's own forward."""
    from optical_viz.distill import distill, read_metrics

    def losses(unpad: bool):
        out = tmp_path / f"unpad-{unpad}"
        cfg = tiny_distill_config(out, teacher=str(tiny_minilm_dir), student=str(tiny_e5_dir), unpad=unpad,
                                  loss={"name": "ot+mse"}, steps=3, max_length=16, eval={"heldout_sentences": 4},
                                  start={"method": "linear_map", "pairs": 16})
        distill(cfg, root=data_root, progress=False)
        return [(m["step"], m["loss"]) for m in read_metrics(out) if "loss" in m]

    padded, unpadded = losses(False), losses(True)
    assert [s for s, _ in padded] == [s for s, _ in unpadded] == [1, 2, 3]
    np.testing.assert_allclose([l for _, l in unpadded], [l for _, l in padded], rtol=0, atol=1e-5)
    assert len({l for _, l in padded}) == 3  # the steps differ: the test compares a moving trajectory
