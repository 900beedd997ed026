"""Training: lmforge's Trainer against a bare PyTorch loop, ZeRO memory per rank, and the cost of
activation checkpointing. All numbers come from this run.

    python -m benchmarks.train [--device cpu|cuda] [--steps 20] [--rounds 3]
                               [--peak-flops 989e12]   # MFU on GPU (H100 bf16 dense)

1. tokens/s of ``Trainer.train_step`` and of the bare loop below (same model, data, batch,
   optimizer, schedule and clipping), measured in alternating rounds, median of rounds;
2. per-rank parameter + gradient + optimizer MiB under ZeRO stages 0/1/2/3 on 2 ranks (torchrun,
   gloo on CPU / NCCL on GPU), and the parameters held between forward and backward;
3. tokens/s with activation checkpointing on against off (the recomputation slowdown).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from lmforge.model.config import ModelConfig
from lmforge.model.data import PackedSequences, TokenStream
from lmforge.model.distributed import Runtime, init_runtime, shutdown
from lmforge.model.optim import lr_at
from lmforge.model.train_config import TrainConfig
from lmforge.model.trainer import Trainer
from lmforge.model.transformer import build_model

MODEL = {"flavor": "custom", "n_layer": 4, "n_head": 4, "n_embd": 256, "block_size": 256,
         "vocab_size": 8192}
SEQ = 256


# --- the bare baseline: what a researcher would write in an afternoon -------------------------

def bare_loop(model_cfg: ModelConfig, data: PackedSequences, *, batch: int, steps: int,
              cfg: TrainConfig, device: torch.device, dtype: torch.dtype | None
              ) -> tuple[float, float]:
    """Plain training loop; returns (tokens/s, last loss)."""
    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": other, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            fused=device.type == "cuda")
    order = np.random.default_rng(cfg.seed).permutation(len(data))
    loss = torch.zeros(())
    tokens, start = 0, 0.0
    for step in range(steps + 1):  # step 0 warms up and is not timed
        if step == 1:
            _sync(device)
            start = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, lr=cfg.lr, min_lr=cfg.min_lr,
                                warmup_steps=cfg.warmup_steps, total_steps=steps)
        rows = order[step * batch:(step + 1) * batch]
        window = torch.from_numpy(np.stack([data[int(i)] for i in rows]).astype(np.int64))
        x, y = window[:, :-1].to(device), window[:, 1:].to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += x.numel() if step else 0
    _sync(device)
    return tokens / (time.perf_counter() - start), loss.item()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- lmforge --------------------------------------------------------------------------------

def lmforge_rate(trainer: Trainer, steps: int, device: torch.device) -> tuple[float, float]:
    batches = iter(trainer.loader)
    trainer.train_step(batches)  # warm-up, not timed
    _sync(device)
    start, tokens, out = time.perf_counter(), 0.0, {}
    for _ in range(steps):
        out = trainer.train_step(batches)
        tokens += out["tokens"]
    _sync(device)
    return tokens / (time.perf_counter() - start), out["loss"]


def make_data(folder: Path, vocab: int, tokens: int = 2_000_000) -> PackedSequences:
    path = folder / "tokens.bin"
    if not path.exists():
        # Zipf-like token ids: a realistic softmax, no dependence on a tokenizer
        rng = np.random.default_rng(0)
        ids = np.minimum(rng.zipf(1.2, tokens), vocab) - 1
        ids.astype("<u2").tofile(path)
    return PackedSequences(TokenStream([path], "<u2"), SEQ)


def trainer_for(data: PackedSequences, folder: Path, device: torch.device, *, batch: int,
                steps: int, precision: str, **deepspeed: object) -> Trainer:
    ds = {**deepspeed, **({precision: {"enabled": True}} if precision != "fp32" else {})}
    cfg = TrainConfig(steps=steps + 1, batch_size=batch, lr=3e-4, min_lr=3e-5, warmup_steps=2,
                      device=device.type, deepspeed=ds)
    runtime = Runtime(0, 1, 0, device) if not torch.distributed.is_initialized() else \
        init_runtime(device.type)
    return Trainer(ModelConfig(**MODEL), cfg, runtime, train=data, val=None, out_dir=folder)


def worker(spec_path: str) -> None:
    """One rank of the ZeRO memory measurement (run under torchrun)."""
    spec = json.loads(Path(spec_path).read_text())
    runtime = init_runtime(spec["device"])
    data = make_data(Path(spec["folder"]), MODEL["vocab_size"])
    rows = {}
    for stage in (0, 1, 2, 3):
        trainer = trainer_for(data, Path(spec["folder"]) / f"z{stage}", runtime.device,
                              batch=spec["batch"], steps=2, precision=spec["precision"],
                              zero_optimization={"stage": stage})
        lmforge_rate(trainer, 2, runtime.device)
        memory = trainer.memory()
        rows[stage] = {k.split("/", 2)[2]: v for k, v in memory.items()
                       if k.startswith("memory/rank1/")}
        del trainer
    if runtime.main:
        Path(spec["out"]).write_text(json.dumps(rows))
    shutdown(runtime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", default=None, choices=["fp32", "bf16"],
                        help="default: bf16 on cuda, fp32 on cpu")
    parser.add_argument("--peak-flops", type=float, default=0.0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    device = torch.device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    dtype = torch.bfloat16 if precision == "bf16" else None
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = make_data(folder, MODEL["vocab_size"])
        model_cfg = ModelConfig(**MODEL)
        cfg = TrainConfig(steps=args.steps, batch_size=args.batch, lr=3e-4, min_lr=3e-5,
                          warmup_steps=2)
        n = sum(p.numel() for p in build_model(model_cfg).parameters())
        print(f"model: {n / 1e6:.1f}M parameters, seq {SEQ}, batch {args.batch}, "
              f"{precision} on {device}")

        # 1. lmforge vs bare loop, alternating rounds
        bare, ours, ac = [], [], []
        for _ in range(args.rounds):
            bare.append(bare_loop(model_cfg, data, batch=args.batch, steps=args.steps, cfg=cfg,
                                  device=device, dtype=dtype)[0])
            trainer = trainer_for(data, folder / "t", device, batch=args.batch,
                                  steps=args.steps, precision=precision)
            ours.append(lmforge_rate(trainer, args.steps, device)[0])
            del trainer
            trainer = trainer_for(data, folder / "ac", device, batch=args.batch,
                                  steps=args.steps, precision=precision,
                                  activation_checkpointing={"enabled": True})
            ac.append(lmforge_rate(trainer, args.steps, device)[0])
            del trainer
        b, o, a = statistics.median(bare), statistics.median(ours), statistics.median(ac)
        print("\n1. throughput (median of rounds)")
        print(f"   bare PyTorch loop      {b:10,.0f} tokens/s")
        print(f"   lmforge Trainer        {o:10,.0f} tokens/s   ratio {o / b:.3f} "
              f"({(o / b - 1) * 100:+.1f}%)")
        if args.peak_flops:
            from lmforge.model.optim import flops_per_token
            from lmforge.model.transformer import count_params

            fpt = flops_per_token(model_cfg, count_params(build_model(model_cfg)), SEQ)
            print(f"   MFU: lmforge {o * fpt / args.peak_flops:.3f}, "
                  f"bare {b * fpt / args.peak_flops:.3f}")

        # 2. ZeRO memory on 2 ranks
        out = folder / "zero.json"
        spec = folder / "spec.json"
        spec.write_text(json.dumps({"device": args.device, "folder": str(folder),
                                    "batch": args.batch, "precision": precision,
                                    "out": str(out)}))
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone",
             "--nproc-per-node=2", __file__, "--worker", str(spec)],
            capture_output=True, text=True, check=False)
        if proc.returncode:
            raise SystemExit(proc.stdout[-2000:] + proc.stderr[-4000:])
        rows = json.loads(out.read_text())
        base = sum(rows["0"][k] for k in ("params_mb", "grads_mb", "optimizer_mb"))
        print("\n2. per-rank state on 2 ranks (MiB, rank 1)")
        print("   stage  params  grads  optimizer  total  vs stage 0  params fwd→bwd")
        for stage, r in rows.items():
            total = r["params_mb"] + r["grads_mb"] + r["optimizer_mb"]
            print(f"   {stage:>5}  {r['params_mb']:6.1f} {r['grads_mb']:6.1f} "
                  f"{r['optimizer_mb']:10.1f} {total:6.1f}  {total / base:9.2f}x "
                  f"{r['params_in_step_mb']:14.1f}")

        # 3. activation checkpointing
        print("\n3. activation checkpointing")
        print(f"   tokens/s with / without: {a:,.0f} / {o:,.0f} = {a / o:.3f} "
              f"(slowdown {(1 - a / o) * 100:.1f}%)")
        print(f"\n(per round: bare {[round(x) for x in bare]}, lmforge "
              f"{[round(x) for x in ours]}, checkpointing {[round(x) for x in ac]})")


if __name__ == "__main__":
    main()
