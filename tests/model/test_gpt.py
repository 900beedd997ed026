from __future__ import annotations

import pytest
import torch

from model.config import ModelConfig
from model.gpt import GPT


def tiny(**kw) -> GPT:
    return GPT(ModelConfig(flavor="custom", n_layer=2, n_head=2, n_embd=32, block_size=16,
                           vocab_size=50, **kw))


def test_output_shape_and_tied_weights() -> None:
    model = tiny()
    logits = model(torch.randint(0, 50, (3, 16)))
    assert logits.shape == (3, 16, 50)
    assert model.lm_head.weight is model.tok_emb.weight
    assert list(model.layers.keys()) == ["0", "1"]


def test_attention_is_causal() -> None:
    torch.manual_seed(0)
    model = tiny().eval()
    x = torch.randint(0, 50, (1, 12))
    y = x.clone()
    y[0, 8:] = (y[0, 8:] + 1) % 50  # change only the future
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.allclose(a[0, :8], b[0, :8], atol=1e-6)
    assert not torch.allclose(a[0, 8:], b[0, 8:])


def test_flavors_and_validation() -> None:
    assert ModelConfig(flavor="125m").n_layer == 12
    assert ModelConfig(flavor="debug", n_layer=3).n_layer == 3
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(flavor="custom", n_layer=1, n_head=3, n_embd=32)
    with pytest.raises(ValueError, match="vocab_size"):
        GPT(ModelConfig(flavor="debug"))


def test_too_long_input_is_refused() -> None:
    with pytest.raises(ValueError, match="block_size"):
        tiny()(torch.zeros(1, 17, dtype=torch.long))
