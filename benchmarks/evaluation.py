"""Evaluation: generation with the KV cache against recomputing the sequence every step, and
batched log-likelihood scoring against one request at a time. All numbers come from this run.

    python -m benchmarks.evaluation [--device cpu|cuda] [--new-tokens 96] [--prompts 32]
                                    [--requests 192]

1. new tokens/s of greedy generation (64-token prompt) with and without the cache, alternating
   rounds, median of rounds; the outputs must be identical;
2. new tokens/s of greedy generation for ``--prompts`` ragged prompts (16-96 tokens), one at a
   time and batched 16 at a time (``generate_batch``); the outputs must be identical;
3. requests/s of ``loglikelihood`` at batch size 1 and 16 (multiple-choice shaped requests:
   a 96-token context, a 1-8 token continuation); the scores must agree to 1e-4.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from lmforge.model.config import ModelConfig
from lmforge.model.generate import Sampling, generate, generate_batch
from lmforge.model.score import Request, loglikelihood
from lmforge.model.transformer import build_model

MODEL = {"flavor": "custom", "n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256,
         "vocab_size": 8192}


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--requests", type=int, default=192)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model(ModelConfig(**MODEL)).to(args.device).eval()
    rng = random.Random(0)
    prompt = [rng.randrange(1, 8192) for _ in range(64)]
    sampling = Sampling(max_new_tokens=args.new_tokens)
    times: dict[str, list[float]] = {"cache": [], "no cache": []}
    outputs = {}
    for _ in range(args.rounds):
        for name, cache in (("cache", True), ("no cache", False)):
            seconds, outputs[name] = timed(lambda c=cache: generate(model, prompt, sampling,
                                                                     use_cache=c))
            times[name].append(seconds)
    assert outputs["cache"] == outputs["no cache"], "cached generation differs"
    speed = {k: args.new_tokens / statistics.median(v) for k, v in times.items()}
    print(f"generation ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, "
          f"{args.new_tokens} new tokens after 64):")
    print(f"  no cache {speed['no cache']:8.1f} tok/s   KV cache {speed['cache']:8.1f} tok/s   "
          f"ratio {speed['cache'] / speed['no cache']:.2f}x")

    prompts = [[rng.randrange(1, 8192) for _ in range(rng.randint(16, 96))]
               for _ in range(args.prompts)]
    short = Sampling(max_new_tokens=32)
    batch_times: dict[str, list[float]] = {"one at a time": [], "batch 16": []}
    for _ in range(args.rounds):
        seconds, single = timed(lambda: [generate(model, p, short) for p in prompts])
        batch_times["one at a time"].append(seconds)
        seconds, batched = timed(lambda: [g for at in range(0, len(prompts), 16)
                                          for g in generate_batch(model, prompts[at:at + 16],
                                                                  short)])
        batch_times["batch 16"].append(seconds)
        assert batched == single, "batched generation differs"
    new = args.prompts * short.max_new_tokens
    one, sixteen = (new / statistics.median(v) for v in batch_times.values())
    print(f"batched generation ({args.prompts} prompts of 16-96 tokens, 32 new tokens each):")
    print(f"  one at a time {one:8.1f} tok/s   batch 16 {sixteen:8.1f} tok/s   "
          f"ratio {sixteen / one:.2f}x")

    requests = [Request(tuple(rng.randrange(1, 8192) for _ in range(96)),
                        tuple(rng.randrange(1, 8192) for _ in range(rng.randint(1, 8))))
                for _ in range(args.requests)]
    rates: dict[int, list[float]] = {1: [], 16: []}
    scores = {}
    for _ in range(args.rounds):
        for size, rate in rates.items():
            seconds, scores[size] = timed(lambda s=size: loglikelihood(model, requests,
                                                                       batch_size=s))
            rate.append(len(requests) / seconds)
    worst = max(abs(a.logprob - b.logprob) for a, b in zip(scores[1], scores[16], strict=True))
    assert worst < 1e-3, f"batch size changed a score by {worst}"
    r1, r16 = (statistics.median(rates[s]) for s in (1, 16))
    print(f"log-likelihood ({args.requests} requests, max |diff| {worst:.1e}):")
    print(f"  batch 1 {r1:8.1f} req/s   batch 16 {r16:8.1f} req/s   ratio {r16 / r1:.2f}x")


if __name__ == "__main__":
    main()
