"""A BERT-family forward that skips padding in every token-wise layer.

In a padded batch (B, T) of sentences of different lengths every linear layer, LayerNorm and
activation also runs on the padding: at the distillation protocol's batch 16 x 48, 22-30% of the
tokens are padding (``benchmarks/distill.json``, ``padding_efficiency``). :func:`hidden_states`
runs the same modules of the same model on the real tokens only, packed into (N, H), and
restores the padded layout only where tokens meet: the attention scores (B, heads, T, T). It
computes what ``model(input_ids, attention_mask, output_hidden_states=True).hidden_states``
computes, on real tokens: the same weights, the same attention implementation and mask, and
in training the same dropout masks (each is drawn on the padded shape, as the model draws it,
then packed), so that the random stream, and with it a run, is the same. Padding positions of
the returned states are zero.

Supported: BERT, RoBERTa and XLM-R encoders (``supports``), also behind the start's linear map
(:class:`optical_viz.linear_map.MappedModel`: the map is applied to the last layer's real
tokens, as its forward applies it to every token); anything else, and a model that recomputes
activations (gradient checkpointing), takes the model's own forward.

>>> states = hidden_states(model, ids, mask)  # doctest: +SKIP
>>> states[-1].shape  # (B, T, H), as model(...).hidden_states[-1]  # doctest: +SKIP
"""
from __future__ import annotations

import torch
from torch import Tensor

from optical_viz.linear_map import MappedModel

__all__ = ["supports", "hidden_states"]

# encoder layers built as BertLayer: attention.self.{query,key,value}, attention.output,
# intermediate, output
_LAYERS = {"BertLayer", "RobertaLayer", "XLMRobertaLayer"}


def _unwrap(model) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """(the transformer, the map on its last layer or None)."""
    if isinstance(model, MappedModel):
        return model.transformer, model.linear_map
    return model, None


def supports(model) -> bool:
    """Whether :func:`hidden_states` can run ``model`` (a BERT-family encoder, alone or behind
    a :class:`~optical_viz.linear_map.MappedModel`; no gradient checkpointing, no decoder or
    cross-attention)."""
    from transformers import PreTrainedModel

    model, _ = _unwrap(model)
    if not isinstance(model, PreTrainedModel):  # another wrapper may add to the forward: take its own
        return False
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    config = getattr(model, "config", None)
    return (
        layers is not None and len(layers) > 0 and all(type(l).__name__ in _LAYERS for l in layers)
        and hasattr(model, "embeddings") and config is not None and not config.is_decoder
        and not _checkpointing(model)
        and all(getattr(l, "chunk_size_feed_forward", 0) == 0 for l in layers)
    )


def _checkpointing(model) -> bool:
    if hasattr(type(model), "is_activation_checkpointing"):  # transformers >= 5.2 (the old name warns)
        return bool(model.is_activation_checkpointing)
    return bool(getattr(model, "is_gradient_checkpointing", False))


def _dropout(x: Tensor, p: float, training: bool, shape: tuple[int, ...], rows: Tensor) -> Tensor:
    """Dropout of the packed rows ``x`` (N, H) with the mask the model would draw on the padded
    ``shape`` (B, T, H): the same draw from the random stream (``bernoulli_`` on the padded
    shape, as ``torch.nn.functional.dropout`` does on the CPU), then the real rows of it."""
    if not training or p == 0.0:
        return x
    noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1 - p).div_(1 - p)
    return x * noise.view(-1, shape[-1])[rows]


def hidden_states(model, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, ...]:
    """The embedding output and every layer's output, each (B, T, H), as the model's
    ``hidden_states``, computed on the real tokens only (see the module docstring).

    input_ids (B, T) long; attention_mask (B, T), 1 on real tokens. Raises ValueError for a
    model that :func:`supports` rejects.
    """
    if not supports(model):
        raise ValueError(f"{type(model).__name__}: not a BERT-family encoder without gradient checkpointing")
    model, head = _unwrap(model)
    from transformers.masking_utils import create_bidirectional_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.bert.modeling_bert import eager_attention_forward

    B, T = input_ids.shape
    emb = model.embeddings(input_ids=input_ids)  # (B, T, H), its dropout drawn on the padded shape
    H = emb.shape[-1]
    shape = (B, T, H)
    rows = attention_mask.reshape(-1).nonzero().squeeze(1)  # (N,) real tokens in the flattened batch
    mask4 = create_bidirectional_mask(config=model.config, inputs_embeds=emb, attention_mask=attention_mask)
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(model.config._attn_implementation, eager_attention_forward)

    def padded(x: Tensor) -> Tensor:  # (N, D) -> (B, T, D), zeros on padding
        out = x.new_zeros(B * T, x.shape[-1])
        return out.index_copy(0, rows, x).view(B, T, -1)

    x = emb.reshape(B * T, H)[rows]  # (N, H)
    out = [padded(x)]
    for layer in model.encoder.layer:
        sa, so = layer.attention.self, layer.attention.output
        heads = (B, T, -1, sa.attention_head_size)
        q, k, v = (padded(proj(x)).view(heads).transpose(1, 2) for proj in (sa.query, sa.key, sa.value))
        ctx, _ = attend(sa, q, k, v, mask4, dropout=sa.dropout.p if sa.training else 0.0, scaling=sa.scaling)
        ctx = ctx.reshape(B * T, -1)[rows]  # (N, H)
        h = so.LayerNorm(_dropout(so.dense(ctx), so.dropout.p, so.training, shape, rows) + x)
        y = layer.output.dense(layer.intermediate(h))
        x = layer.output.LayerNorm(_dropout(y, layer.output.dropout.p, layer.output.training, shape, rows) + h)
        out.append(padded(x))
    if head is not None:  # MappedModel: its forward maps the last layer, per token
        out[-1] = padded(head(x))
    return tuple(out)
