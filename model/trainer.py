"""The training loop: AdamW, warmup + cosine schedule, gradient accumulation and clipping,
periodic evaluation and checkpoints. Metrics leave through a ``log_metrics(step, values)``
callback; the loop itself knows nothing of MLflow or Prefect.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from model.checkpoint import save_checkpoint
from model.config import ModelConfig
from model.data import PackedSequences, SequenceLoader
from model.evaluate import evaluate_lm
from model.objectives import lm_loss

LogMetrics = Callable[[int, Mapping[str, float]], None]


class TrainConfig(BaseModel):
    """Optimisation settings of one training run."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    steps: int = Field(200, ge=1, description="optimizer steps")
    batch_size: int = Field(16, ge=1, description="sequences per micro-batch per rank")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(3e-3, gt=0, description="peak learning rate")
    min_lr: float = Field(3e-4, ge=0, description="learning rate at the end of the cosine decay")
    warmup_steps: int = Field(20, ge=0, description="linear warmup steps")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decay on matrices only")
    beta1: float = Field(0.9, gt=0, lt=1, description="AdamW beta1")
    beta2: float = Field(0.95, gt=0, lt=1, description="AdamW beta2")
    grad_clip: float | None = Field(1.0, gt=0, description="max global grad norm; null = off")
    eval_every: int = Field(50, ge=1, description="evaluate every N steps (and at the end)")
    eval_batches: int = Field(8, ge=1, description="validation batches per evaluation")
    log_every: int = Field(10, ge=1, description="log training metrics every N steps")
    seed: int = Field(1337, description="seed of initialisation and data order")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda if present")


def lr_at(step: int, *, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warmup to ``lr``, then cosine decay to ``min_lr`` at ``total_steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """Weight decay on matrices (Linear, Embedding), none on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


@dataclass(frozen=True)
class TrainResult:
    steps: int
    tokens_seen: int
    train_loss: float
    val_loss: float
    checkpoint: Path
    seconds: float


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer,
               batches: Iterator[tuple[torch.Tensor, torch.Tensor]], cfg: TrainConfig,
               device: torch.device) -> tuple[float, float, int]:
    """One optimizer step over ``grad_accum`` micro-batches: (loss, grad norm, tokens)."""
    optimizer.zero_grad(set_to_none=True)
    total, tokens = 0.0, 0
    for _ in range(cfg.grad_accum):
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = lm_loss(model(x), y) / cfg.grad_accum
        loss.backward()
        total += float(loss.detach())
        tokens += y.numel()
    params = [p for p in model.parameters() if p.grad is not None]
    max_norm = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
    norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    optimizer.step()
    return total, norm, tokens


def fit(model: nn.Module, model_cfg: ModelConfig, loader: SequenceLoader, val: PackedSequences,
        cfg: TrainConfig, *, out_dir: Path, log_metrics: LogMetrics,
        on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Train for ``cfg.steps`` steps; returns the final checkpoint and losses."""
    device = resolve_device(cfg.device)
    model.to(device).train()
    optimizer = build_optimizer(model, cfg)
    batches = iter(loader)
    start, tokens_seen, train_loss, val_loss = time.perf_counter(), 0, float("nan"), float("nan")
    for step in range(cfg.steps):
        lr = lr_at(step, lr=cfg.lr, min_lr=cfg.min_lr, warmup_steps=cfg.warmup_steps,
                   total_steps=cfg.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        t0 = time.perf_counter()
        train_loss, grad_norm, tokens = train_step(model, optimizer, batches, cfg, device)
        tokens_seen += tokens
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log_metrics(step, {"train/loss": train_loss, "train/lr": lr,
                               "train/grad_norm": grad_norm,
                               "train/tokens_per_s": tokens / (time.perf_counter() - t0),
                               "train/tokens_seen": float(tokens_seen)})
        if (step + 1) % cfg.eval_every == 0 or step == cfg.steps - 1:
            metrics = evaluate_lm(model, val, batch_size=cfg.batch_size,
                                  max_batches=cfg.eval_batches, device=str(device))
            val_loss = metrics["loss"]
            log_metrics(step, {"val/loss": val_loss, "val/perplexity": metrics["perplexity"]})
        if on_step is not None:
            on_step(step)
    checkpoint = save_checkpoint(out_dir / "model.pt", model=model, model_cfg=model_cfg,
                                 step=cfg.steps, tokens_seen=tokens_seen, optimizer=optimizer,
                                 extra={"train_config": cfg.model_dump(),
                                        "loader": loader.state_dict()})
    return TrainResult(steps=cfg.steps, tokens_seen=tokens_seen, train_loss=train_loss,
                       val_loss=val_loss, checkpoint=checkpoint,
                       seconds=time.perf_counter() - start)
