"""The start of a cross-model distillation (issue 26): a linear map from the student's token
space to the teacher's, fitted on bitext before step 1 and trained with the student.

Two unrelated encoders (multilingual-e5-small and all-MiniLM-L6-v2, say) put their vectors
in unrelated spaces: at step 0 a student is at chance against teacher-encoded passages, and
neither token-level OT costs nor an MSE pull carry signal there (results/pilots/rq3/).
A ridge least-squares map, fitted in closed form on mean-pooled bitext embeddings, moves
the student into the teacher's space before training starts::

    W = argmin_W  ||X W - Y||^2 + ridge ||W||^2  =  (X^T X + ridge I)^-1 X^T Y

with X the student's unnormalised mean-pooled embeddings of both sides of N bitext pairs,
(2N, H_s), and Y the teacher's L2-normalised embeddings of the English sides, repeated,
(2N, H_t): student(L) and student(en) both regressed on teacher(en), as Reimers & Gurevych.

The map is applied to every token of the student's last layer (:class:`MappedModel`), so the
token-level OT costs and the pooled sentence embedding both live in the teacher's space; a
linear map commutes with mean pooling, so a sentence-transformers ``Dense`` module (identity
activation) after the pooling gives the same sentence vectors: a student directory with the
map loads with ``SentenceTransformer(dir)`` and with ``load_encoder(dir)`` alike.

>>> fit = fit_linear_map(student, teacher, sources, english, ridge=1.0)   # doctest: +SKIP
>>> attach_linear_map(student, fit.weight)   # student.model is now a MappedModel  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

# how a distillation student starts (DistillConfig.start.method): as loaded, or with a fitted
# map; owned by options (the config imports no torch)
from optical_viz.options import START_METHODS

__all__ = ["START_METHODS", "LinearMapFit", "MappedModel", "fit_linear_map", "attach_linear_map", "write_dense", "read_dense",
           "DENSE_DIR", "IDENTITY_ACTIVATION"]

DENSE_DIR = "2_Dense"  # the sentence-transformers module folder of the map in a student directory
IDENTITY_ACTIVATION = "torch.nn.modules.linear.Identity"


@dataclass
class LinearMapFit:
    """A fitted map and how well it fits its bitext.

    weight: (H_s, H_t) float32, student vectors ``x`` map to ``x @ weight``.
    pairs: the number of bitext pairs it was fitted on (2 * pairs rows).
    mse_before / mse_after: mean squared error per coordinate between the student's
        L2-normalised sentence embeddings and the teacher's, without / with the map, on the
        fitting pairs (both sides).
    """

    weight: torch.Tensor
    pairs: int
    ridge: float
    mse_before: float
    mse_after: float


class MappedModel(torch.nn.Module):
    """A transformers encoder whose last hidden layer goes through ``linear_map``, per token.

    ``forward`` returns the inner model's output with ``last_hidden_state`` (B, T, H_t) and
    the last entry of ``hidden_states`` mapped; the inner layers are left as they are (the
    map is fitted on the last layer). Other attributes (``config``, ``save_pretrained``,
    checkpointing switches) are the inner model's.
    """

    def __init__(self, transformer: torch.nn.Module, linear_map: torch.nn.Linear):
        super().__init__()
        self.transformer = transformer
        self.linear_map = linear_map

    def forward(self, *args, **kwargs):
        from transformers.modeling_outputs import BaseModelOutput

        out = self.transformer(*args, **kwargs)
        last = self.linear_map(out.last_hidden_state)  # (B, T, H_s) -> (B, T, H_t)
        hidden = out.hidden_states
        if hidden is not None:
            hidden = tuple(hidden[:-1]) + (last,)
        return BaseModelOutput(last_hidden_state=last, hidden_states=hidden, attentions=out.attentions)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)  # parameters, buffers and submodules
        except AttributeError:
            return getattr(super().__getattr__("transformer"), name)


def _mean_squared(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean())


def fit_linear_map(student, teacher, sources: list[str], english: list[str], ridge: float = 1.0) -> LinearMapFit:
    """Fit the ridge least-squares map from ``student``'s space to ``teacher``'s (see the module docstring).

    student, teacher: :class:`optical_viz.encoder.Encoder` (each with its own prompt).
    sources, english: the two sides of N bitext pairs (N >= 1, equal lengths).
    ridge: the L2 penalty (> 0); 1.0 was best of 0.1 / 1 / 10 on the dev pilot
        (results/pilots/rq3/linear-map.json).
    """
    if len(sources) != len(english) or not sources:
        raise ValueError(f"sources and english must be two non-empty lists of equal length, got {len(sources)} and {len(english)}")
    if not ridge > 0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    with torch.no_grad():
        s_src = student.embed_sentences(sources, normalize=False)  # (N, H_s)
        s_en = student.embed_sentences(english, normalize=False)  # (N, H_s)
        t_en = teacher.embed_sentences(english, normalize=True)  # (N, H_t)
    X = torch.cat([s_src, s_en]).double()  # (2N, H_s)
    Y = t_en.repeat(2, 1).double()  # (2N, H_t)
    H = X.shape[1]
    W = torch.linalg.solve(X.T @ X + ridge * torch.eye(H, dtype=X.dtype, device=X.device), X.T @ Y)  # (H_s, H_t)
    W = W.float()
    norm = torch.nn.functional.normalize
    before = _mean_squared(norm(X.float(), dim=-1), Y.float()) if X.shape[1] == Y.shape[1] else float("nan")
    after = _mean_squared(norm(X.float() @ W, dim=-1), Y.float())
    return LinearMapFit(weight=W, pairs=len(sources), ridge=float(ridge), mse_before=before, mse_after=after)


def attach_linear_map(encoder, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    """Put the map ``weight`` (H_s, H_t) (and ``bias`` (H_t,), if any) on top of ``encoder``'s
    last layer: ``encoder.model`` becomes a :class:`MappedModel` (a trainable ``nn.Linear``
    on the model's device), and ``encoder.identity`` names the map (caches keep them apart)."""
    if isinstance(encoder.model, MappedModel):
        raise ValueError(f"{encoder.name} already has a linear map")
    H_s, H_t = weight.shape
    if H_s != encoder.hidden_size or H_t != encoder.hidden_size:
        raise ValueError(f"weight must be ({encoder.hidden_size}, {encoder.hidden_size}) for {encoder.name}, "
                         f"got {tuple(weight.shape)} (a map that changes the width is not supported)")
    linear = torch.nn.Linear(H_s, H_t, bias=bias is not None)
    with torch.no_grad():
        linear.weight.copy_(weight.T)  # nn.Linear computes x @ weight.T
        if bias is not None:
            linear.bias.copy_(bias)
    param = next(encoder.model.parameters())
    encoder.model = MappedModel(encoder.model, linear.to(device=param.device, dtype=param.dtype))
    digest = hashlib.sha256(weight.detach().cpu().float().numpy().tobytes()).hexdigest()[:12]
    encoder.identity = f"{encoder.identity}:map-{digest}"


def write_dense(path: str | os.PathLike, linear: torch.nn.Linear) -> None:
    """Write ``linear`` as the sentence-transformers ``Dense`` module ``path/2_Dense`` (identity
    activation; ``model.safetensors`` with ``linear.weight`` (H_t, H_s) and ``linear.bias``)."""
    from safetensors.torch import save_file

    out = Path(path) / DENSE_DIR
    out.mkdir(exist_ok=True)
    cfg = {"in_features": linear.in_features, "out_features": linear.out_features, "bias": linear.bias is not None,
           "activation_function": IDENTITY_ACTIVATION}
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    tensors = {"linear.weight": linear.weight.detach().cpu().float().contiguous()}
    if linear.bias is not None:
        tensors["linear.bias"] = linear.bias.detach().cpu().float().contiguous()
    save_file(tensors, str(out / "model.safetensors"))


def read_dense(folder: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The map of a sentence-transformers ``Dense`` folder -> (weight (H_s, H_t), bias (H_t,) or None).

    Raises ValueError for an activation other than the identity (a non-linear head does not
    commute with pooling, so it cannot be applied per token) and FileNotFoundError without weights.
    """
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    act = cfg.get("activation_function", "torch.nn.modules.activation.Tanh")  # sentence-transformers' default
    if act != IDENTITY_ACTIVATION:
        raise ValueError(f"{folder / 'config.json'}: a Dense module with activation {act!r} cannot be used; optical_viz "
                         f"applies a Dense module per token, which needs the identity ({IDENTITY_ACTIVATION})")
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        tensors = load_file(str(folder / "model.safetensors"))
    elif (folder / "pytorch_model.bin").is_file():
        tensors = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{folder}: no model.safetensors or pytorch_model.bin (the Dense module's weights)")
    return tensors["linear.weight"].T.contiguous(), tensors.get("linear.bias")
