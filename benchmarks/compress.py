"""Compression: per variant, stored size, held-out perplexity change and generation tokens/s
on the serving engine relative to the base model, in one run.

    python benchmarks/compress.py [--layers 4 --width 256 --steps 400]

The base is a byte-level LM trained here on real text (the standard library's own source);
each variant is made by ``model.compress`` (pruning and sharing followed by a recovery
fine-tune of ``--recover`` steps, distillation trained as long on the trainer's loss; the base
fine-tuned as long is printed as the control for those rows), saved as a ``model.pt`` and
measured in a fresh process (``tasks.compression.measure``: memory added, tokens/s of 8 prompts
at once, one request's latency), so one variant's allocations do not count for the next.
Last, generation with half the blocks offloaded (``model.offload``) against all in memory.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lmforge.model.checkpoint import save_model
from lmforge.model.compress import COMPRESSIONS, compress, parse_compression
from lmforge.model.compress.distill import kd_loss
from lmforge.model.config import ModelConfig
from lmforge.model.generate import Sampling, generate_batch
from lmforge.model.objectives import Batch
from lmforge.model.offload import offload
from lmforge.model.transformer import build_model
from lmforge.tasks.compression import measure

T = 128
VARIANTS = [{"kind": "int8-weight"}, {"kind": "int8-dynamic"}, {"kind": "int4-weight"},
            {"kind": "magnitude", "sparsity": 0.5}, {"kind": "structured"},
            {"kind": "lowrank", "energy": 0.9},
            {"kind": "share", "group": 2}, {"kind": "distill", "layers": 2}]


def batches(src: torch.Tensor, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    while True:
        i = torch.randint(0, len(src) - T - 1, (n,), generator=g)
        yield (torch.stack([src[j:j + T] for j in i]),
               torch.stack([src[j + 1:j + T + 1] for j in i]))


def fit(model, train, steps: int, lr: float, seed: int, loss_fn=None) -> None:
    params = [p for p in model.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr)
    data = batches(train, 16, seed)
    model.train()
    for _ in range(steps):
        x, y = next(data)
        loss = loss_fn(model, Batch(inputs=x, targets=y)) if loss_fn is not None else \
            F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def perplexity(model, val) -> float:
    with torch.no_grad():
        return float(torch.stack([F.cross_entropy(model(x).flatten(0, 1), y.flatten())
                                  for x, y in val]).mean().exp())


def offloaded(base, prompts, folder: Path) -> None:
    """Generation with half the blocks resident (``model.offload``) against all in memory."""
    sampling = Sampling(max_new_tokens=32)
    rates = {}
    for name in ("in memory", "offloaded"):
        model = copy.deepcopy(base)
        if name == "offloaded":
            block = sum(t.numel() * 4 for t in model.layers["0"].state_dict().values())
            rest = sum(t.numel() * 4 for t in model.state_dict().values()) - \
                block * len(model.layers)
            store = offload(model, folder, rest + block * len(model.layers) // 2)
        generate_batch(model, prompts[:1], Sampling(max_new_tokens=2))
        t0 = time.perf_counter()
        out = generate_batch(model, prompts, sampling)
        rates[name] = sum(map(len, out)) / (time.perf_counter() - t0)
    print(f"offload (half the blocks resident, {store.reads} block reads): "
          f"{rates['offloaded']:.1f} tokens/s vs {rates['in memory']:.1f} in memory "
          f"({rates['offloaded'] / rates['in memory']:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--recover", type=int, default=100)
    args = ap.parse_args()
    torch.manual_seed(0)
    text = b"".join(Path(m.__file__).read_bytes() for m in (inspect, os, copy, argparse))
    data = torch.tensor(list(text), dtype=torch.long)
    train, held = data[: int(len(data) * 0.9)], data[int(len(data) * 0.9):]
    cfg = ModelConfig(flavor="custom", n_layer=args.layers, n_head=4, n_embd=args.width,
                      vocab_size=256, block_size=256, position="rotary")
    base = build_model(cfg)
    t0 = time.perf_counter()
    fit(base, train, args.steps, 2e-3, seed=0)
    val_it = batches(held, 16, seed=1)
    val = [next(val_it) for _ in range(8)]
    prompts = [val[0][0][i, :32].tolist() for i in range(8)]
    base_ppl = perplexity(base, val)
    print(f"base: {args.layers} layers x {args.width}, trained {args.steps} steps in "
          f"{time.perf_counter() - t0:.0f} s on {len(train)} bytes of stdlib source; held-out "
          f"perplexity {base_ppl:.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        base_path = save_model(Path(tmp) / "base.pt", base, cfg, step=args.steps, tokens_seen=0)
        base_cost = measure(base_path, prompts, 32)
        print(f"{'variant':>14} {'size':>7} {'ppl':>8} {'ppl chg':>8} {'tok/s':>7} "
              f"{'vs base':>7} {'mem MB':>8}")
        print(f"{'base':>14} {1.0:>6.3f}x {base_ppl:>8.3f} {0.0:>+7.2%} "
              f"{base_cost['tokens_per_s']:>7.1f} {1.0:>6.2f}x {base_cost['memory_mb']:>8.0f}")
        # the control: the base fine-tuned as long as a recovery (an undertrained base gains
        # from those steps whatever the compression; compare recovered variants with this)
        control = copy.deepcopy(base)
        fit(control, train, args.recover, 5e-4, seed=7)
        print(f"{'base +' + str(args.recover):>14} {1.0:>6.3f}x {perplexity(control, val):>8.3f} "
              f"{perplexity(control, val) / base_ppl - 1:>+7.2%}   (control for recovered rows)")
        for spec in VARIANTS:
            model = compress(copy.deepcopy(base), spec)
            method = COMPRESSIONS[spec["kind"]]
            if method.teacher:  # the trainer's distillation loss, in a plain loop here
                fit(model, train, args.recover, 5e-4, seed=7,
                    loss_fn=kd_loss(base, parse_compression(spec)))
            elif method.recover:
                if method.hold is not None:
                    method.hold(model)
                fit(model, train, args.recover, 5e-4, seed=7)
            path = save_model(Path(tmp) / f"{spec['kind']}.pt", model, model.cfg, step=args.steps,
                              tokens_seen=0, compression=[spec])
            cost = measure(path, prompts, 32)
            ppl = perplexity(model, val)
            print(f"{spec['kind']:>14} {path.stat().st_size / base_path.stat().st_size:>6.3f}x "
                  f"{ppl:>8.3f} {ppl / base_ppl - 1:>+7.2%} {cost['tokens_per_s']:>7.1f} "
                  f"{cost['tokens_per_s'] / base_cost['tokens_per_s']:>6.2f}x "
                  f"{cost['memory_mb']:>8.0f}")
        offloaded(base, prompts, Path(tmp) / "blocks")


if __name__ == "__main__":
    main()
