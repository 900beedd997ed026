"""The paged-KV engine: 32 concurrent ragged requests, joining and leaving between steps, give
what one-request greedy decoding gives, and every block is free afterwards; prompts with a
common start share its blocks; streaming, stop strings and sampling behave."""

from __future__ import annotations

import random

import pytest
import torch
from lmforge.model.config import ModelConfig
from lmforge.model.engine import CacheFull, Engine, generate_many
from lmforge.model.generate import Sampling, generate
from lmforge.model.transformer import build_model


def _model(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=101, n_layer=2, n_head=4, n_embd=32, block_size=96, **kw)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.mark.parametrize("arch,position", [("causal", "rotary"), ("causal", "learned"),
                                           ("prefix", "sinusoidal"), ("encoder_decoder", "rotary")])
def test_32_ragged_requests_equal_one_at_a_time_and_free_every_block(arch, position) -> None:
    model = _model(arch=arch, position=position)
    rng = random.Random(0)
    requests = [([rng.randrange(3, 101) for _ in range(rng.randint(1, 40))],
                 Sampling(max_new_tokens=rng.randint(1, 24), stop=frozenset({7})))
                for _ in range(32)]
    # 8 slots and a cache too small for all at once: requests wait, join and leave mid-run
    engine = Engine(model, num_blocks=40, block_tokens=8, max_batch=8)
    ids = [engine.add(p, s) for p, s in requests]
    steps = 0
    while not engine.idle:
        engine.step()
        steps += 1
        assert len(engine.running) <= 8
    got = {i: engine.finished[i].generated for i in ids}
    for (prompt, sampling), i in zip(requests, ids, strict=True):
        assert got[i] == generate(model, prompt, sampling, use_cache=False), i
    assert engine.cache.used == 0 and sorted(engine.cache.free) == list(range(40))
    assert all(r == 0 for r in engine.cache.refs) and not engine.cache.by_hash
    assert steps < sum(s.max_new_tokens for _, s in requests)  # batched, not one by one
    assert engine.cache.peak_used <= 40


def test_common_prompt_starts_share_blocks_and_compute_the_same() -> None:
    model = _model(position="rotary")
    rng = random.Random(1)
    system = [rng.randrange(3, 101) for _ in range(32)]
    prompts = [system + [rng.randrange(3, 101) for _ in range(rng.randint(1, 9))]
               for _ in range(8)]
    sampling = Sampling(max_new_tokens=6)
    shared = Engine(model, num_blocks=64, block_tokens=8)
    ids = [shared.add(p, sampling) for p in prompts]
    shared.step()  # all admitted: the first prompt's 4 full blocks serve the other 7
    held = shared.cache.used
    out = shared.run()
    alone = Engine(model, num_blocks=64, block_tokens=8)
    alone.cache.share_prefixes = False
    for p in prompts:
        alone.add(p, sampling)
    alone.step()
    assert held == alone.cache.used - 7 * 4
    for p, i in zip(prompts, ids, strict=True):
        assert out[i] == generate(model, p, sampling, use_cache=False)
    assert shared.cache.used == 0


def test_stream_stop_strings_and_sampling() -> None:
    model = _model(position="rotary")
    decode = lambda ids: "".join(chr(97 + i % 26) for i in ids)  # noqa: E731
    engine = Engine(model, num_blocks=32, block_tokens=8, decode=decode)
    greedy = generate(model, [5, 6, 7], Sampling(max_new_tokens=10))
    stop = decode(greedy)[3:5]
    first = engine.add([5, 6, 7], Sampling(max_new_tokens=10), stop_strings=(stop,))
    other = engine.add([9, 9], Sampling(max_new_tokens=4))
    streamed = list(engine.stream(first))
    assert stop in decode(streamed) and stop not in decode(streamed[:-1])
    assert engine.finished[first].finish_reason == "stop"
    assert streamed == greedy[:len(streamed)]
    engine.run()
    assert engine.finished[other].finish_reason == "length"
    sampled = Sampling(max_new_tokens=12, temperature=0.9, top_k=20, top_p=0.9, seed=3)
    assert generate_many(model, [[1, 2, 3]], sampled) == generate_many(model, [[1, 2, 3]],
                                                                       sampled)
    with pytest.raises(CacheFull, match="needs"):
        Engine(model, num_blocks=2, block_tokens=8).add(list(range(3, 40)),
                                                        Sampling(max_new_tokens=8))


def test_kv_memory_per_token() -> None:
    model = _model()
    cache = Engine(model, num_blocks=4, block_tokens=8).cache
    assert cache.bytes_per_token() == 2 * 2 * 32 * 4  # K and V, 2 layers, width 32, fp32


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_a_shared_start_next_to_a_long_prompt_near_the_block_end(position) -> None:
    """One prefill batch holding a row that starts after shared blocks and a row whose prompt
    nearly fills the block: the short row's padding lies past the block (found by the
    evaluation suite's few-shot prompts)."""
    model = _model(position=position)
    rng = random.Random(2)
    common = [rng.randrange(3, 101) for _ in range(48)]
    prompts = [[*common, 5, 6], [*common, 7, 8, 9], [rng.randrange(3, 101) for _ in range(90)]]
    sampling = Sampling(max_new_tokens=4)
    engine = Engine(model, num_blocks=64, block_tokens=8)
    engine.add(prompts[0], sampling)
    engine.step()  # the common start is in the cache now
    ids = [engine.add(p, sampling) for p in prompts[1:]]
    out = engine.run()
    for p, i in zip(prompts[1:], ids, strict=True):
        assert out[i] == generate(model, p, sampling, use_cache=False)
