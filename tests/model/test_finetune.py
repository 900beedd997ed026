"""Fine-tuning methods on tiny models of all three architectures: packing boundaries, LoRA
(peft layers, merge/unmerge, unload, low-bit base), prefix tuning and P-tuning (own parameters
only, generation with the KV cache), adapters saved apart from the base."""

from __future__ import annotations

import pytest
import torch
from lmforge.model.config import ModelConfig
from lmforge.model.finetune import (
    METHODS,
    apply_method,
    count_trainable,
    load_adapter,
    parse_method,
    save_adapter,
    trainable_state,
    unload,
)
from lmforge.model.finetune.lora import merge, unmerge
from lmforge.model.finetune.lowbit import LowBitLinear
from lmforge.model.generate import Sampling, generate, generate_batch
from lmforge.model.objectives import forward_loss, sft_batch
from lmforge.model.transformer import build_model
from torch import nn

V = 97


def tiny(arch: str = "causal", position: str = "rotary", **kw) -> nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, vocab_size=V, n_layer=2, n_head=2, n_embd=32, block_size=96,
                      position=position, **({"n_encoder_layer": 2}
                                         if arch == "encoder_decoder" else {}), **kw)
    return build_model(cfg).eval()


def logits(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    if model.cfg.arch == "encoder_decoder":
        return model(idx, idx[:, :6])
    return model(idx)


def perturb(model: nn.Module) -> None:
    """Move trainable parameters off their initial values (LoRA's B starts at zero)."""
    g = torch.Generator().manual_seed(1)
    for p in model.parameters():
        if p.requires_grad:
            p.data.add_(torch.randn(p.shape, generator=g) * 0.05)


def test_every_method_is_one_registered_record() -> None:
    assert set(METHODS) == {"full", "lora", "prefix", "ptuning", "reward"}
    assert parse_method({"kind": "lora", "rank": 4}).rank == 4
    with pytest.raises(ValueError, match="kind"):
        parse_method({"kind": "adapter-h"})


@pytest.mark.parametrize(("arch", "position"), [("causal", "rotary"), ("causal", "learned"),
                                                 ("prefix", "rotary")])
def test_packed_samples_do_not_attend_to_each_other(arch, position) -> None:
    model = tiny(arch, position)
    torch.manual_seed(3)
    lengths = [7, 11, 5]
    seqs = [torch.randint(2, V, (n,)) for n in lengths]
    row = torch.cat(seqs)[None]
    segments = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None]
    flags = torch.cat([torch.arange(n) < 3 for n in lengths])[None] if arch == "prefix" else None
    packed = model(row, segments=segments, bidirectional=flags)
    changed = row.clone()
    changed[0, 7:18] = torch.randint(2, V, (11,))  # the middle sample, rewritten
    other = model(changed, segments=segments, bidirectional=flags)
    assert torch.equal(packed[0, :7], other[0, :7]) and torch.equal(packed[0, 18:], other[0, 18:])
    assert not torch.allclose(packed[0, 7:18], other[0, 7:18])
    at = 0
    for seq in seqs:  # a packed sample gives what it gives alone
        alone = model(seq[None], prefix_len=torch.tensor([3])) if arch == "prefix" \
            else model(seq[None])
        torch.testing.assert_close(packed[0, at:at + len(seq)], alone[0], atol=1e-5, rtol=1e-5)
        at += len(seq)


def test_lora_trains_under_one_percent_and_merges_exactly() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=4096, n_layer=4, n_head=4, n_embd=256,
                                    block_size=64)).eval()
    apply_method(model, {"kind": "lora", "rank": 4})
    trainable, total = count_trainable(model)
    assert trainable / total < 0.01, (trainable, total)
    assert all("lora_" in n for n in trainable_state(model))
    perturb(model)
    idx = torch.randint(0, 4096, (2, 16))
    before = model(idx)
    merge(model)
    merged = model(idx)
    unmerge(model)
    torch.testing.assert_close(merged, before, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(idx), before, atol=1e-5, rtol=1e-5)
    plain = unload(model, {"kind": "lora"})
    assert not any("lora_" in n or "base_layer" in n for n, _ in plain.named_parameters())
    fresh = build_model(plain.cfg).eval()
    fresh.load_state_dict(plain.state_dict())  # the plain architecture again
    torch.testing.assert_close(fresh(idx), before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["causal", "prefix", "encoder_decoder"])
@pytest.mark.parametrize("spec", [{"kind": "lora", "rank": 4}, {"kind": "prefix", "length": 4},
                                  {"kind": "ptuning", "length": 4},
                                  {"kind": "lora", "base_bits": 4}])
def test_adapters_save_apart_load_onto_the_base_and_generate(arch, spec, tmp_path) -> None:
    model = apply_method(tiny(arch), spec)
    perturb(model)
    idx = torch.randint(2, V, (2, 12))
    expected = logits(model, idx)
    path = save_adapter(tmp_path / "adapter.safetensors", model, parse_method(spec),
                        {"registry_version": 3})
    assert path.stat().st_size < sum(t.numel() * 4 for t in model.state_dict().values())
    loaded, base = load_adapter(tiny(arch), path)
    assert base == {"registry_version": 3}
    torch.testing.assert_close(logits(loaded, idx), expected)
    # the KV-cache generator with the adapter: ragged batch == one prompt at a time == no cache
    sampling = Sampling(max_new_tokens=5, temperature=0.0, stop=frozenset())
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    batch = generate_batch(loaded, prompts, sampling)
    assert batch == [generate(loaded, p, sampling) for p in prompts]
    assert batch == [generate(loaded, p, sampling, use_cache=False) for p in prompts]


@pytest.mark.parametrize("kind", ["prefix", "ptuning", "lora"])
def test_peft_changes_only_its_own_parameters_and_lowers_the_loss(kind) -> None:
    model = apply_method(tiny("causal"), {"kind": kind}).train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    own = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    torch.manual_seed(5)
    pattern = torch.randint(2, V, (13,))
    rows = torch.stack([torch.stack([pattern.roll(i)[:-1], pattern.roll(i)[1:],
                                     torch.zeros(12, dtype=torch.long),
                                     torch.zeros(12, dtype=torch.long)]) for i in range(8)])
    batch = sft_batch(rows, "causal")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    with torch.no_grad():
        first = float(forward_loss(model, batch))
    for _ in range(50):
        opt.zero_grad()
        forward_loss(model, batch).backward()
        opt.step()
    with torch.no_grad():  # a random base: prompts move it little (the trainer tests use a
        assert float(forward_loss(model, batch)) < 0.99 * first  # trained one)
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], t) for n, t in frozen.items())
    assert all(not torch.equal(after[n], t) for n, t in own.items())


def test_low_bit_base_stores_a_fraction_and_stays_close() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(256, 128)
    x = torch.randn(4, 256)
    for bits, budget, error in ((4, 0.16, 0.12), (8, 0.27, 0.01)):
        low = LowBitLinear(linear, bits)
        assert low.nbytes() / (linear.weight.numel() * 4) < budget
        ref = linear(x)
        assert float((low(x) - ref).norm() / ref.norm()) < error
    model = apply_method(tiny(), {"kind": "lora", "base_bits": 4})
    assert sum(isinstance(m, LowBitLinear) for m in model.modules()) == 12  # 6 per block
    assert count_trainable(model)[0] == sum(p.numel() for n, p in model.named_parameters()
                                            if "lora_" in n)
