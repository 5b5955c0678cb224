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


@pytest.mark.parametrize("training", [False, True])
def test_states_and_gradients_are_the_models(tiny, training):
    model, tok = tiny
    ids, mask = _batch(tok, TEXTS)
    real = mask.bool()
    model.train(training)
    runs = []
    for path in ("model", "unpad"):
        model.zero_grad()
        torch.manual_seed(3)
        states = (model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
                  if path == "model" else unpad.hidden_states(model, ids, mask))
        (states[-1][real].square().sum() + states[1][real].sum()).backward()
        runs.append(([s.detach() for s in states], {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (ref, ref_grad), (ours, grad) = runs
    assert len(ours) == len(ref) == model.config.num_hidden_layers + 1
    for r, o in zip(ref, ours):
        assert torch.allclose(r[real], o[real], atol=1e-5, rtol=0)
        assert (o[~real] == 0).all()
    assert ref_grad.keys() == grad.keys()
    for name in ref_grad:
        assert torch.allclose(ref_grad[name], grad[name], atol=1e-5, rtol=1e-4), name
    model.eval()


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


def test_a_student_with_the_starts_linear_map_takes_its_own_forward(tiny):
    """linear_map.MappedModel passes attribute access to the transformer inside; unpad must not
    take it for a plain encoder (it would skip the map: the RQ3 dev run at eps 0.05 did)."""
    from optical_viz.linear_map import MappedModel

    model, _ = tiny
    mapped = MappedModel(model, torch.nn.Linear(model.config.hidden_size, model.config.hidden_size))
    assert hasattr(mapped, "encoder") and not unpad.supports(mapped)
