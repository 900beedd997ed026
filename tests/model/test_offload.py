"""Layer-by-layer offload: with a budget that holds two of four blocks, generation through the
engine and the training forward equal the in-memory model's, the resident blocks never exceed
the budget, and a budget below one block is refused with the sizes."""

from __future__ import annotations

import copy

import pytest
import torch
from lmforge.model.config import ModelConfig
from lmforge.model.generate import Sampling, generate_batch
from lmforge.model.offload import offload
from lmforge.model.transformer import build_model


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(flavor="custom", n_layer=4, n_head=4, n_embd=32, vocab_size=97,
                      block_size=64, position="learned")
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def test_offloaded_generation_equals_in_memory(tmp_path) -> None:
    model = _model()
    prompts = [[5, 6, 7], list(range(10, 40)), [3] * 12, [50, 51]]
    sampling = Sampling(max_new_tokens=10)
    expected = generate_batch(model, prompts, sampling)
    x = torch.tensor([prompts[1]])
    logits = model(x)
    off = copy.deepcopy(model)
    block = sum(t.numel() * 4 for t in off.layers["0"].state_dict().values())
    rest = sum(t.numel() * 4 for t in off.state_dict().values()) - 4 * block
    store = offload(off, tmp_path / "blocks", budget_bytes=rest + 2 * block)
    assert len(store.resident) == 2 and store.used <= store.budget
    assert sorted(p.name for p in (tmp_path / "blocks").iterdir()) == [
        f"block-{i:03d}.safetensors" for i in range(4)]
    seen = []
    fetch = store.fetch

    def watched(i: int) -> None:
        fetch(i)
        seen.append(store.used)

    store.fetch = watched  # type: ignore[method-assign]
    assert generate_batch(off, prompts, sampling) == expected
    torch.testing.assert_close(off(x), logits)
    assert max(seen) <= store.budget and store.reads > 4  # blocks were read back, in budget
    resident = sum(t.numel() for b in store.blocks for t in b.state_dict().values())
    assert resident * 4 <= 2 * block


def test_a_budget_below_one_block_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="cannot hold the embeddings"):
        offload(_model(), tmp_path, budget_bytes=1000)
