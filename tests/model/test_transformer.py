from __future__ import annotations

import pytest
import torch
from lmforge.model.config import ModelConfig
from lmforge.model.layers import apply_rotary, prefix_mask, rotary_tables
from lmforge.model.transformer import DecoderLM, EncoderDecoderLM, build_model

V = 50


def cfg(**kw) -> ModelConfig:
    base = {"flavor": "custom", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16,
            "vocab_size": V}
    return ModelConfig(**(base | kw))


def test_output_shape_tied_weights_and_stable_names() -> None:
    model = build_model(cfg())
    assert isinstance(model, DecoderLM)
    assert model(torch.randint(0, V, (3, 16))).shape == (3, 16, V)
    assert model.lm_head.weight is model.embed.tok.weight
    untied = build_model(cfg(tie_weights=False))
    assert untied.lm_head.weight is not untied.embed.tok.weight
    assert list(model.layers.keys()) == ["0", "1"]


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rotary"])
def test_causal_decoder_never_sees_the_future(position: str) -> None:
    torch.manual_seed(0)
    model = build_model(cfg(position=position)).eval()
    x = torch.randint(0, V, (1, 12))
    y = x.clone()
    y[0, 8:] = (y[0, 8:] + 1) % V  # change only the future
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.allclose(a[0, :8], b[0, :8], atol=1e-6)
    assert not torch.allclose(a[0, 8:], b[0, 8:])


def test_prefix_mask_is_bidirectional_in_the_prefix_and_causal_after() -> None:
    mask = prefix_mask(torch.tensor([3, 0]), 5)[:, 0]
    expected = torch.tensor([[1, 1, 1, 0, 0],
                             [1, 1, 1, 0, 0],
                             [1, 1, 1, 0, 0],
                             [1, 1, 1, 1, 0],
                             [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask[0], expected)
    assert torch.equal(mask[1], torch.ones(5, 5).tril().bool())  # empty prefix = causal


def test_prefix_decoder_attention() -> None:
    torch.manual_seed(0)
    model = build_model(cfg(arch="prefix")).eval()
    x = torch.randint(0, V, (1, 10))
    prefix = torch.tensor([4])
    inside, after = x.clone(), x.clone()
    inside[0, 3] = (inside[0, 3] + 1) % V  # last prefix token
    after[0, 6] = (after[0, 6] + 1) % V
    with torch.no_grad():
        base = model(x, prefix_len=prefix)
        a, b = model(inside, prefix_len=prefix), model(after, prefix_len=prefix)
        causal = model(inside)
    assert not torch.allclose(a[0, 0], base[0, 0])  # the prefix is read both ways
    assert torch.allclose(causal[0, 0], model(x)[0, 0], atol=1e-6)  # causal mask: not
    assert torch.allclose(b[0, :6], base[0, :6], atol=1e-6)  # after the prefix: causal
    assert not torch.allclose(b[0, 6:], base[0, 6:])


def test_encoder_decoder_reads_source_both_ways_and_target_causally() -> None:
    torch.manual_seed(0)
    model = build_model(cfg(arch="encoder_decoder", n_encoder_layer=1)).eval()
    assert isinstance(model, EncoderDecoderLM) and len(model.encoder) == 1
    src, tgt = torch.randint(0, V, (1, 9)), torch.randint(0, V, (1, 6))
    src2, tgt2 = src.clone(), tgt.clone()
    src2[0, -1] = (src2[0, -1] + 1) % V
    tgt2[0, 4] = (tgt2[0, 4] + 1) % V
    with torch.no_grad():
        base = model(src, tgt)
        assert base.shape == (1, 6, V)
        assert not torch.allclose(model(src2, tgt)[0, 0], base[0, 0])  # every target sees src
        changed = model(src, tgt2)
    assert torch.allclose(changed[0, :4], base[0, :4], atol=1e-6)
    assert not torch.allclose(changed[0, 4:], base[0, 4:])


def test_rotary_scores_depend_on_relative_position_only() -> None:
    cos, sin = rotary_tables(32, 8, 10_000.0)
    q, k = torch.randn(8), torch.randn(8)

    def score(i: int, j: int) -> float:
        qi = apply_rotary(q.expand(1, 1, 32, 8), cos, sin)[0, 0, i]
        kj = apply_rotary(k.expand(1, 1, 32, 8), cos, sin)[0, 0, j]
        return float(qi @ kj)

    assert score(5, 2) == pytest.approx(score(20, 17), rel=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 4), rel=1e-3)


def test_flavors_and_validation() -> None:
    assert ModelConfig(flavor="125m").n_layer == 12
    assert ModelConfig(flavor="debug", n_layer=3).n_layer == 3
    assert ModelConfig(flavor="debug", arch="encoder_decoder").n_encoder_layer == 2
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(flavor="custom", n_layer=1, n_head=3, n_embd=32)
    with pytest.raises(ValueError, match="even head size"):
        ModelConfig(flavor="custom", n_layer=1, n_head=4, n_embd=36, position="rotary")
    with pytest.raises(ValueError, match="vocab_size"):
        build_model(ModelConfig(flavor="debug"))


def test_gpt2_small_size() -> None:
    from lmforge.model.transformer import count_params

    with torch.device("meta"):
        model = build_model(ModelConfig(flavor="125m", block_size=1024, vocab_size=50257))
    assert 123e6 < count_params(model, non_embedding=False) < 125e6  # GPT-2 small: 124M


def test_too_long_input_is_refused() -> None:
    with pytest.raises(ValueError, match="block_size"):
        build_model(cfg())(torch.zeros(1, 17, dtype=torch.long))
