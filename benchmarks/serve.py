"""Generation serving: tokens/s and p50/p99 request latency at 1, 8 and 32 concurrent requests
for the paged-KV engine (continuous batching) against Hugging Face ``transformers``' batched
``generate`` on the same model exported (``model.interchange``: GPT-NeoX layout, equal logits;
one left-padded batch with its KV cache: the best a user has without lmforge) and a naive loop
recomputing the whole sequence for every token, and the KV memory per token, in one run.

    python benchmarks/serve.py [--layers 4 --width 256 --new 32 --device cpu]

All requests arrive at once; a request's latency is the time until its last token (the batch
loop returns every request of a batch together). Prompts are 8-96 tokens, ragged, and each asks
for 8..--new tokens, so requests finish at different steps.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch
from lmforge.model.config import ModelConfig
from lmforge.model.engine import Engine
from lmforge.model.generate import Sampling, generate
from lmforge.model.interchange import to_transformers
from lmforge.model.transformer import build_model


def workload(n: int, vocab: int, new: int) -> list[tuple[list[int], Sampling]]:
    rng = random.Random(n)
    return [([rng.randrange(4, vocab) for _ in range(rng.randint(8, 96))],
             Sampling(max_new_tokens=rng.randint(8, new))) for _ in range(n)]


def engine_run(model, work) -> tuple[float, list[float], int]:
    eng = Engine(model, num_blocks=4096, block_tokens=16, max_batch=32)
    t0 = time.perf_counter()
    ids = [eng.add(p, s) for p, s in work]
    done: dict[int, float] = {}
    while not eng.idle:
        for event in eng.step():
            if event.finished:
                done[event.request] = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return total, [done[i] for i in ids], sum(len(eng.finished[i].generated) for i in ids)


def batch_run(hf, work) -> tuple[float, list[float], int]:
    """transformers' generate: one left-padded batch; it takes the longest budget and each
    row's output is cut afterwards (what a user of a static batch does)."""
    t0 = time.perf_counter()
    longest = max(s.max_new_tokens for _, s in work)
    width = max(len(p) for p, _ in work)
    ids = torch.zeros(len(work), width, dtype=torch.long)
    mask = torch.zeros(len(work), width, dtype=torch.long)
    for i, (p, _) in enumerate(work):
        ids[i, width - len(p):], mask[i, width - len(p):] = torch.tensor(p), 1
    ids, mask = ids.to(hf.device), mask.to(hf.device)
    with torch.no_grad():
        out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=longest,
                          min_new_tokens=longest, do_sample=False, pad_token_id=0)
    total = time.perf_counter() - t0
    tokens = sum(min(out.shape[1] - width, s.max_new_tokens) for _, s in work)
    return total, [total] * len(work), tokens


def naive_run(model, work) -> tuple[float, list[float], int]:
    t0, lat, tokens = time.perf_counter(), [], 0
    for p, s in work:
        tokens += len(generate(model, p, s, use_cache=False))
        lat.append(time.perf_counter() - t0)
    return time.perf_counter() - t0, lat, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = ModelConfig(flavor="custom", n_layer=args.layers, n_head=4, n_embd=args.width,
                      vocab_size=args.vocab, block_size=256, position="rotary")
    model = build_model(cfg).to(args.device).eval()
    hf = to_transformers(model).to(args.device).eval()
    kv = Engine(model, num_blocks=1).cache.bytes_per_token()
    print(f"model: {args.layers} layers x {args.width}, device {args.device}; KV memory "
          f"{kv} bytes/token ({kv / 1024:.1f} KiB; the batch loop holds the same per "
          "position, padding included)")
    print("batch = transformers generate on the exported model (static left-padded batch)")
    print(f"{'concurrent':>10} {'method':>8} {'tokens/s':>9} {'p50 s':>7} {'p99 s':>7} "
          f"{'vs batch':>8}")
    warm = workload(2, args.vocab, 8)
    batch_run(hf, warm)  # first-call costs out of the figures
    engine_run(model, warm)
    naive_run(model, warm)
    for n in (1, 8, 32):
        work = workload(n, args.vocab, args.new)
        runs = {"batch": batch_run(hf, work), "engine": engine_run(model, work)}
        if n <= 8:  # 32 recomputing requests take minutes and say nothing new
            runs["naive"] = naive_run(model, work)
        base = runs["batch"][2] / runs["batch"][0]
        for name, (total, lat, tokens) in runs.items():
            tps = tokens / total
            print(f"{n:>10} {name:>8} {tps:>9.1f} {np.percentile(lat, 50):>7.2f} "
                  f"{np.percentile(lat, 99):>7.2f} {tps / base:>7.2f}x")


if __name__ == "__main__":
    main()
