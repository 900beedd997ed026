"""The cost of alignment steps relative to a supervised fine-tuning step on the same model and
batch, and PPO rollout speed with and without the KV cache, in one run.

    python benchmarks/align.py [--layers 4 --width 256 --batch 8 --seq 128]

Printed: seconds per optimizer step of SFT (the baseline), the reward model, DPO with the
reference log-probabilities computed every step and DPO with them cached (second epoch on),
and one PPO iteration (rollouts + 2 epochs); then rollout tokens/s with the KV cache against
recomputing the whole sequence for every new token.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from lmforge.model.align import ReferenceCache, dpo_loss, reward_loss
from lmforge.model.config import ModelConfig
from lmforge.model.data import Rows
from lmforge.model.distributed import Runtime
from lmforge.model.finetune import apply_method
from lmforge.model.generate import Sampling, generate, generate_batch
from lmforge.model.objectives import IGNORE
from lmforge.model.ppo import PPOConfig, add_value_head, ppo, reward_scorer
from lmforge.model.train_config import TrainConfig
from lmforge.model.trainer import Trainer
from lmforge.model.transformer import build_model


def rows(tmp: Path, args: argparse.Namespace, pairs: bool) -> Path:
    rng = np.random.default_rng(0)
    shape = (64, 2, 4, args.seq) if pairs else (64, 4, args.seq)
    data = np.zeros(shape, dtype=np.int32)
    data[..., 0, :] = rng.integers(4, args.vocab, (*shape[:-2], args.seq))
    half = args.seq // 2
    data[..., 1, :] = IGNORE
    data[..., 1, half:-1] = data[..., 0, half + 1:]  # the reply: the second half
    path = tmp / ("pairs.npy" if pairs else "sft.npy")
    np.save(path, data)
    return path


def step_seconds(cfg: ModelConfig, args: argparse.Namespace, data: Path, *, init=None,
                 loss_fn=None, steps: int = 4) -> float:
    trainer = Trainer(cfg, TrainConfig(steps=steps + 1, batch_size=args.batch, device="cpu",
                                       objective={"kind": "sft"}),
                      Runtime(0, 1, 0, torch.device("cpu")), train=Rows(data), val=None,
                      out_dir=data.parent / "out", init=init, loss_fn=loss_fn)
    batches = iter(trainer.loader)
    trainer.train_step(batches)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batches)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=args.vocab, n_layer=args.layers, n_head=args.width // 64,
                      n_embd=args.width, block_size=args.seq + 32)
    tmp = Path(tempfile.mkdtemp())
    sft, pairs = rows(tmp, args, False), rows(tmp, args, True)
    base = build_model(cfg)
    state = base.state_dict()

    def from_base(model: torch.nn.Module) -> torch.nn.Module:
        model.load_state_dict(state)
        return model

    def reward_init(model: torch.nn.Module) -> torch.nn.Module:
        return apply_method(from_base(model), {"kind": "reward"})

    baseline = step_seconds(cfg, args, sft, init=from_base)
    results = {"reward model": step_seconds(cfg, args, pairs, init=reward_init,
                                            loss_fn=reward_loss)}
    fresh = ReferenceCache(base)

    def uncached(model, batch, reduction):  # a new cache each call: the reference every step
        return dpo_loss(ReferenceCache(fresh.reference), 0.1)(model, batch, reduction)

    results["DPO, reference every step"] = step_seconds(cfg, args, pairs, init=from_base,
                                                        loss_fn=uncached)
    cached = ReferenceCache(base)
    step_seconds(cfg, args, pairs, init=from_base, loss_fn=dpo_loss(cached, 0.1), steps=8)
    results["DPO, reference cached"] = step_seconds(  # the same rows again: all cached
        cfg, args, pairs, init=from_base, loss_fn=dpo_loss(cached, 0.1), steps=4)
    policy, reference = add_value_head(build_model(cfg)), build_model(cfg)
    policy.load_state_dict(state, strict=False)
    reference.load_state_dict(state)
    rm = apply_method(build_model(cfg), {"kind": "reward"})
    prompts = [list(range(4, 4 + args.seq // 2)) for _ in range(args.batch)]
    ppo_cfg = PPOConfig(iterations=1, rollouts=args.batch, minibatch=args.batch, epochs=2,
                        max_new_tokens=32)
    start = time.perf_counter()
    ppo(policy, reference, reward_scorer(rm), prompts, ppo_cfg, stop=-1, pad=0)
    results["PPO iteration (rollouts + 2 epochs)"] = time.perf_counter() - start
    print(f"model: {args.layers} layers x {args.width}; a step: {args.batch} SFT rows, or "
          f"{args.batch} pairs (2 x {args.batch} rows) of {args.seq} tokens; cpu")
    print(f"{'SFT step (baseline)':<38} {baseline:7.3f} s   1.00x")
    for name, seconds in results.items():
        print(f"{name:<38} {seconds:7.3f} s   {seconds / baseline:.2f}x")
    sampling = Sampling(max_new_tokens=32, temperature=1.0, stop=frozenset())
    start = time.perf_counter()
    generate_batch(reference, prompts, sampling, seeds=list(range(len(prompts))))
    cached_tps = len(prompts) * 32 / (time.perf_counter() - start)
    timed = {}
    for use_cache in (True, False):  # one prompt at a time: the cache alone
        start = time.perf_counter()
        for prompt in prompts[:2]:
            generate(reference, prompt, sampling, use_cache=use_cache)
        timed[use_cache] = 2 * 32 / (time.perf_counter() - start)
    print(f"rollout tokens/s: batched with the KV cache {cached_tps:.0f}; one prompt at a time "
          f"with the cache {timed[True]:.0f}, recomputing the sequence {timed[False]:.0f} "
          f"(cache {timed[True] / timed[False]:.1f}x, batching {cached_tps / timed[True]:.1f}x)")


if __name__ == "__main__":
    main()
