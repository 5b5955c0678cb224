"""unpad.hidden_states against the model's own forward: the same states on real tokens, in
eval and in training (dropout masks included), the same gradients, zeros on padding."""
from __future__ import annotations

import pytest
import torch

from optical_viz import unpad


def _batch(tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


TEXTS = ["query: Ẹ káàárọ̀, báwo ni?", "query: a", "query: Die Katze schläft auf dem warmen Sofa, seit heute Morgen."]


@pytest.fixture(scope="module")
def tiny(tiny_e5_dir):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_e5_dir, add_pooling_layer=False)
    return model, AutoTokenizer.from_pretrained(tiny_e5_dir)


def _assert_both_paths_agree(model, tok, training: bool, seed: int, layer: int):
    """The model's own forward and unpad.hidden_states from the same seed: the same states on
    real tokens (zeros on padding), the same gradients of a loss on the last and one inner
    layer. Returns the unpad states."""
    ids, mask = _batch(tok, TEXTS)
    real = mask.bool()
    model.train(training)
    runs = []
    try:
        for path in ("model", "unpad"):
            model.zero_grad()
            torch.manual_seed(seed)
            states = (model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
                      if path == "model" else unpad.hidden_states(model, ids, mask))
            (states[-1][real].square().sum() + states[layer][real].sum()).backward()
            runs.append(([s.detach() for s in states],
                         {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    finally:
        model.eval()
    (ref, ref_grad), (ours, grad) = runs
    assert len(ours) == len(ref)
    for r, o in zip(ref, ours):
        assert torch.allclose(r[real], o[real], atol=1e-5, rtol=0)
        assert (o[~real] == 0).all()
    assert ref_grad and ref_grad.keys() == grad.keys()
    for name in ref_grad:
        assert torch.allclose(ref_grad[name], grad[name], atol=1e-5, rtol=1e-4), name
    return ours, grad


@pytest.mark.parametrize("training", [False, True])
def test_states_and_gradients_are_the_models(tiny, training):
    model, tok = tiny
    states, _ = _assert_both_paths_agree(model, tok, training, seed=3, layer=1)
    assert len(states) == model.config.num_hidden_layers + 1


def test_dropout_changes_the_states_as_the_models_does(tiny):
    """In training the two paths agree only because they draw the same masks: another seed
    gives other states (the test above is not passing by dropout being off)."""
    model, tok = tiny
    ids, mask = _batch(tok, TEXTS)
    model.train()
    torch.manual_seed(3)
    a = unpad.hidden_states(model, ids, mask)[-1]
    torch.manual_seed(4)
    b = unpad.hidden_states(model, ids, mask)[-1]
    model.eval()
    assert not torch.allclose(a, b, atol=1e-3)


def test_unsupported_models_are_refused(tiny):
    model, _ = tiny
    assert unpad.supports(model)
    model.gradient_checkpointing_enable()
    try:
        assert not unpad.supports(model)
        with pytest.raises(ValueError, match="not a BERT-family encoder"):
            unpad.hidden_states(model, torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))
    finally:
        model.gradient_checkpointing_disable()
    assert not unpad.supports(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("training", [False, True])
def test_a_student_behind_the_starts_linear_map_gets_the_wrappers_states(tiny, training):
    """linear_map.MappedModel maps the last layer in its forward. unpad must map it too: the
    first unpad took the wrapper for a plain encoder (it passes attribute access through) and
    skipped the map, the RQ3 dev run at eps 0.05 trained that way. Same states (the last one
    mapped, of another width) and the same gradients, the map's included."""
    from optical_viz.linear_map import MappedModel

    model, tok = tiny
    torch.manual_seed(0)
    mapped = MappedModel(model, torch.nn.Linear(model.config.hidden_size, 24))  # another width, as MiniLM's 384 vs e5's
    assert unpad.supports(mapped)
    states, grad = _assert_both_paths_agree(mapped, tok, training, seed=5, layer=2)
    assert states[-1].shape[-1] == 24 and states[-2].shape[-1] == model.config.hidden_size
    assert "linear_map.weight" in grad


def test_another_wrapper_takes_its_own_forward(tiny):
    """A module that passes attribute access to an encoder inside but is not MappedModel may
    add anything to the forward: unpad must not take it for the encoder."""
    model, _ = tiny

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(super().__getattr__("inner"), name)

    wrapped = Wrapper(model)
    assert hasattr(wrapped, "encoder") and not unpad.supports(wrapped)
