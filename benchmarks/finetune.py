"""Peak memory and tokens/s of full fine-tuning against LoRA and LoRA on an NF4 (4-bit) or int8
frozen base (QLoRA-style), on the same model, rows and batch, in one run. Anchor: litgpt's table
(LoRA about 0.72x the memory of full fine-tuning on gemma-2b).

    python benchmarks/finetune.py [--layers 8 --width 512 --steps 4] [--device cuda --bf16]

Each variant runs in its own process (peak RSS is per process): the trainer's own accounting
(parameters, gradients, AdamW state, in MiB) and the process's peak memory (RSS on CPU,
``max_memory_allocated`` on CUDA) are printed with their ratio to full fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {"full": {"kind": "full"},
            "lora": {"kind": "lora", "rank": 8, "target_modules": ["q", "k", "v", "proj"]},
            "lora-int8": {"kind": "lora", "rank": 8, "target_modules": ["q", "k", "v", "proj"],
                          "base_bits": 8},
            "lora-nf4": {"kind": "lora", "rank": 8, "target_modules": ["q", "k", "v", "proj"],
                         "base_bits": 4}}


def one(args: argparse.Namespace, variant: str) -> dict[str, float]:
    """Runs in the child: fine-tune ``variant`` for ``args.steps`` timed steps."""
    import numpy as np
    import psutil
    import torch
    from lmforge.model.checkpoint import save_model
    from lmforge.model.config import ModelConfig
    from lmforge.model.data import Rows
    from lmforge.model.distributed import Runtime
    from lmforge.model.finetune import apply_method, count_trainable
    from lmforge.model.objectives import IGNORE
    from lmforge.model.train_config import TrainConfig
    from lmforge.model.trainer import Trainer
    from lmforge.model.transformer import build_model

    base_mb = psutil.Process().memory_info().rss / 2**20 if args.device == "cpu" else 0.0
    tmp = Path(tempfile.mkdtemp())
    cfg = ModelConfig(vocab_size=args.vocab, n_layer=args.layers, n_head=args.width // 64,
                      n_embd=args.width, block_size=args.seq)
    torch.manual_seed(0)
    base = save_model(tmp / "base.pt", build_model(cfg), cfg, step=0, tokens_seen=0)
    rng = np.random.default_rng(0)
    rows = np.zeros((64, 4, args.seq), dtype=np.int32)
    rows[:, 0] = rng.integers(0, args.vocab, (64, args.seq))
    rows[:, 1] = np.where(rng.random((64, args.seq)) < 0.5, rows[:, 0], IGNORE)
    np.save(tmp / "rows.npy", rows)
    state = torch.load(base, weights_only=True)

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def init(model: torch.nn.Module) -> torch.nn.Module:
        model.load_state_dict(state["model"])
        return apply_method(model, VARIANTS[variant])

    deepspeed = {"bf16": {"enabled": True}} if args.bf16 else {}
    trainer = Trainer(cfg, TrainConfig(steps=args.steps + 1, batch_size=args.batch,
                                       device=args.device, objective={"kind": "sft"},
                                       deepspeed=deepspeed),
                      Runtime(0, 1, 0, device), train=Rows(tmp / "rows.npy"), val=None,
                      out_dir=tmp / "out", init=init, adapter=VARIANTS[variant])
    state.clear()  # the base copy: not part of what training holds
    batches = iter(trainer.loader)
    trainer.train_step(batches)  # warm-up: allocations, optimizer state
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step(batches)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    memory = trainer.memory()
    trainable, total = count_trainable(trainer.inner)
    buffers = sum(b.numel() * b.element_size() for b in trainer.inner.buffers()) / 2**20
    return {"tokens_per_s": args.steps * args.batch * args.seq / seconds,
            "state_mb": memory["memory/rank0/params_mb"] + memory["memory/rank0/grads_mb"]
            + memory["memory/rank0/optimizer_mb"] + buffers,
            "peak_mb": memory["memory/rank0/peak_mb"], "base_mb": base_mb,
            "trainable": trainable, "total": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args, args.child)))
        return
    results = {}
    for variant in VARIANTS:
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", variant],
                              capture_output=True, text=True, check=True)
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    full = results["full"]
    print(f"model: {args.layers} layers x {args.width}, vocab {args.vocab}, {args.batch} x "
          f"{args.seq} tokens per step, {args.device}{' bf16' if args.bf16 else ''}")
    print("state: parameters + gradients + AdamW state + buffers (exact accounting); peak: the "
          "process's high-water mark above its memory after imports (CUDA: max allocated; CPU: "
          "RSS, which includes building and loading the fp32 model before quantizing it)")
    print(f"{'variant':<10} {'trainable':>10} {'state MiB':>10} {'x full':>7} {'peak MiB':>9} "
          f"{'x full':>7} {'tokens/s':>9} {'x full':>7}")
    for name, r in results.items():
        peak, full_peak = r["peak_mb"] - r["base_mb"], full["peak_mb"] - full["base_mb"]
        print(f"{name:<10} {r['trainable'] / r['total']:>10.2%} {r['state_mb']:>10.1f} "
              f"{r['state_mb'] / full['state_mb']:>7.2f} {peak:>9.0f} {peak / full_peak:>7.2f} "
              f"{r['tokens_per_s']:>9.0f} {r['tokens_per_s'] / full['tokens_per_s']:>7.2f}")


if __name__ == "__main__":
    main()
