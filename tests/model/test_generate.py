"""Generation with a KV cache equals recomputing the whole sequence; sampling options behave."""

from __future__ import annotations

import pytest
import torch
from lmforge.model.config import ModelConfig
from lmforge.model.engine import Engine
from lmforge.model.generate import Sampling, generate, generate_batch, pick
from lmforge.model.transformer import build_model


def _model(arch: str, position: str) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(flavor="custom", n_layer=2, n_head=2, n_embd=32, vocab_size=50,
                      block_size=64, arch=arch, position=position)  # type: ignore[arg-type]
    return build_model(cfg).eval()


@pytest.mark.parametrize("arch", ["causal", "prefix", "encoder_decoder"])
@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rotary"])
def test_cached_greedy_equals_recomputed(arch: str, position: str) -> None:
    model = _model(arch, position)
    prompt = [3, 7, 11, 5, 9]
    s = Sampling(max_new_tokens=20)
    cached = generate(model, prompt, s, use_cache=True)
    plain = generate(model, prompt, s, use_cache=False)
    assert len(cached) == 20
    assert cached == plain


@pytest.mark.parametrize("arch", ["causal", "prefix", "encoder_decoder"])
def test_engine_logits_match_the_training_forward_at_every_step(arch: str) -> None:
    """The engine's own decode path (paged cache, cross blocks) gives, before every new token,
    the logits the training forward gives on the whole sequence so far."""
    model = _model(arch, "rotary")
    prompt = [1, 4, 9, 16, 25]
    engine = Engine(model, num_blocks=8, block_tokens=4)
    rid = engine.add(prompt, Sampling(max_new_tokens=6))
    seen = 0
    while not engine.idle:
        engine.step()
        req = next((r for r in engine.running if r.id == rid), None)
        if req is None:
            break
        done = req.generated
        with torch.no_grad():
            if arch == "encoder_decoder":
                full = model.decode(torch.tensor([[0, *done]]), model.encode(
                    torch.tensor([prompt])))[0, -1]
            else:
                seq = torch.tensor([prompt + done])
                full = model(seq, torch.tensor([len(prompt)]) if arch == "prefix" else None)[0, -1]
        torch.testing.assert_close(req.logits, full, atol=1e-5, rtol=1e-5)
        seen += 1
    assert seen == 5


def test_stop_token_ends_generation_and_prompt_keeps_room() -> None:
    model = _model("causal", "learned")
    first = generate(model, [1, 2, 3], Sampling(max_new_tokens=5))
    stopped = generate(model, [1, 2, 3], Sampling(max_new_tokens=5, stop=frozenset({first[2]})))
    assert stopped == first[:first.index(first[2]) + 1]
    long_prompt = list(range(1, 50)) * 3  # longer than the block: the tail is kept
    assert len(generate(model, long_prompt, Sampling(max_new_tokens=10))) == 10
    with pytest.raises(ValueError, match="no room"):
        generate(model, [1], Sampling(max_new_tokens=64))


def test_sampling_filters() -> None:
    logits = torch.tensor([0.0, 5.0, 4.9, -3.0, 1.0])
    g = torch.Generator().manual_seed(0)
    assert pick(logits, Sampling(), g) == 1
    assert pick(logits, Sampling(temperature=1.0, top_k=1), g) == 1
    draws = {pick(logits, Sampling(temperature=1.0, top_k=2), g) for _ in range(200)}
    assert draws == {1, 2}
    # nucleus: tokens 1 and 2 hold ~98% of the mass; top_p=0.9 keeps exactly them
    draws = {pick(logits, Sampling(temperature=1.0, top_p=0.9), g) for _ in range(200)}
    assert draws == {1, 2}
    draws = {pick(logits, Sampling(temperature=1.0, top_p=0.4), g) for _ in range(50)}
    assert draws == {1}
    wide = {pick(logits, Sampling(temperature=5.0), g) for _ in range(400)}
    assert len(wide) == 5


def test_seeded_sampling_is_reproducible() -> None:
    model = _model("prefix", "rotary")
    s = Sampling(max_new_tokens=15, temperature=1.0, top_p=0.95, seed=7)
    assert generate(model, [4, 5, 6], s) == generate(model, [4, 5, 6], s)
    assert generate(model, [4, 5, 6], s) == generate(model, [4, 5, 6], s, use_cache=False)


RAGGED = [[3, 7, 11, 5, 9], [4], [8, 8, 2, 30, 41, 12, 6, 1, 17], [22, 5], [9, 9, 9]]


@pytest.mark.parametrize("arch", ["causal", "prefix", "encoder_decoder"])
@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rotary"])
def test_batched_generation_equals_one_prompt_at_a_time(arch: str, position: str) -> None:
    """Ragged prompts in one batch: per-row positions and masked padding give every row what
    it generates alone; rows stopping early leave the batch without disturbing the others."""
    model = _model(arch, position).double()  # float64: no near-tie can flip an argmax
    with torch.no_grad():  # large random weights: outputs that differ between prompts
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    alone = [generate(model, p, Sampling(max_new_tokens=12)) for p in RAGGED]
    # a stop token that ends some rows early, at different steps, and leaves others running
    stop = next(frozenset({t}) for t in sorted({t for a in alone for t in a})
                if len({a.index(t) if t in a else 99 for a in alone}) >= 3)
    greedy = Sampling(max_new_tokens=12, stop=stop)
    expected = [generate(model, p, greedy, use_cache=False) for p in RAGGED]
    assert generate_batch(model, RAGGED, greedy) == expected
    assert len({len(e) for e in expected}) > 1  # the batch really lost rows on the way
    sampled = Sampling(max_new_tokens=12, temperature=1.0, top_p=0.9)
    seeds = [11, 12, 13, 14, 15]
    one_by_one = [generate(model, p, Sampling(max_new_tokens=12, temperature=1.0, top_p=0.9,
                                              seed=s)) for p, s in zip(RAGGED, seeds, strict=True)]
    assert generate_batch(model, RAGGED, sampled, seeds=seeds) == one_by_one


def test_batched_generation_checks_its_arguments() -> None:
    model = _model("causal", "rotary")
    assert generate_batch(model, [], Sampling()) == []
    with pytest.raises(ValueError, match="2 seeds for 1 prompts"):
        generate_batch(model, [[1, 2]], Sampling(), seeds=[1, 2])
