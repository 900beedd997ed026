"""Our causal decoder in transformers' GPT-2 and GPT-NeoX layouts: the same logits (fp32, max
abs difference <= 1e-4) for every position scheme, with and without biases and tied weights,
and back to exactly the weights it left with; models whose blocks compute something else are
refused by name."""

from __future__ import annotations

import pytest
import torch
from lmforge.model.config import ModelConfig
from lmforge.model.interchange import from_hf_state, hf_state, to_transformers
from lmforge.model.transformer import build_model


def _model(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=97, n_layer=2, n_head=4, n_embd=32, block_size=64, **kw)
    model = build_model(cfg).eval()
    with torch.no_grad():  # away from the initialisation: zero biases would hide a mix-up
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("position,layout", [("learned", "GPT2LMHeadModel"),
                                             ("sinusoidal", "GPT2LMHeadModel"),
                                             ("rotary", "GPTNeoXForCausalLM")])
@pytest.mark.parametrize("bias,tie", [(False, True), (True, False)])
def test_transformers_gives_our_logits_and_imports_back(position, layout, bias, tie) -> None:
    model = _model(position=position, bias=bias, tie_weights=tie)
    hf = to_transformers(model)
    assert type(hf).__name__ == layout
    x = torch.randint(0, 97, (3, 50))
    with torch.no_grad():
        ours, theirs = model(x), hf(x).logits
    assert (ours - theirs).abs().max() <= 1e-4
    # padded batch: transformers' attention mask, our per-row lengths
    mask = torch.ones_like(x)
    mask[0, 30:] = 0
    with torch.no_grad():
        padded = hf(x, attention_mask=mask).logits
    assert (padded[0, :30] - ours[0, :30]).abs().max() <= 1e-4
    config, state = hf_state(model)
    back = from_hf_state(config, state)
    assert back.cfg == model.cfg
    theirs_state, ours_state = back.state_dict(), model.state_dict()
    assert theirs_state.keys() == ours_state.keys()
    for key, value in ours_state.items():
        assert torch.equal(theirs_state[key], value), key


def test_an_hf_model_without_our_config_imports_from_its_own() -> None:
    """A GPT-NeoX written by transformers itself (no lmforge record) comes back by its
    config: rotary, biases, untied head."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(1)
    hf = GPTNeoXForCausalLM(GPTNeoXConfig(
        vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64, use_parallel_residual=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10_000.0,
                         "partial_rotary_factor": 1.0})).eval()
    with torch.no_grad():  # transformers starts biases at zero
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours = from_hf_state(hf.config.to_dict(), hf.state_dict())
    assert ours.cfg.position == "rotary" and ours.cfg.bias and not ours.cfg.tie_weights
    x = torch.randint(0, 60, (2, 20))
    with torch.no_grad():
        assert (ours(x) - hf(x).logits).abs().max() <= 1e-4


@pytest.mark.parametrize("change,message", [
    ({"activation_function": "gelu_new"}, "exact GELU"),
    ({"n_inner": 100}, "4 x n_embd")])
def test_gpt2_models_computing_otherwise_are_refused(change, message) -> None:
    config, state = hf_state(_model())
    config.pop("lmforge_model_config")
    with pytest.raises(ValueError, match=message):
        from_hf_state({**config, **change}, state)


def test_prefix_decoders_and_prefix_tuning_do_not_export() -> None:
    with pytest.raises(ValueError, match="only the causal decoder"):
        hf_state(_model(arch="prefix"))
