"""Optimisation arithmetic of the trainer: learning-rate schedule, AdamW parameter groups,
FLOPs per token for MFU, and gradient/memory accounting across sharded and plain tensors."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from lmforge.model.config import ModelConfig
from torch import nn
from torch.distributed.tensor import DTensor


def lr_at(step: int, *, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warmup to ``lr``, then cosine decay to ``min_lr`` at ``total_steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def flops_per_token(model_cfg: ModelConfig, n_params: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the matrices plus attention scores (PaLM, App. B)."""
    layers = model_cfg.n_layer + (model_cfg.n_encoder_layer
                                  if model_cfg.arch == "encoder_decoder" else 0)
    return 6 * n_params + 12 * layers * model_cfg.n_embd * seq_len


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices (Linear, Embedding), none on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def local_bytes(tensors: Iterator[torch.Tensor | None]) -> int:
    """Bytes this rank stores for the tensors (its shard of a DTensor)."""
    total = 0
    for t in tensors:
        if t is not None:
            local = t.to_local() if isinstance(t, DTensor) else t
            total += local.numel() * local.element_size()
    return total


def total_grad_norm(params: list[nn.Parameter], pipeline: bool) -> torch.Tensor:
    """Global L2 norm of the gradients, whatever holds them: plain tensors, DTensor shards
    (FSDP, tensor parallel; reduced by DTensor), or pipeline stages (summed over ranks)."""
    sharded = [p.grad for p in params if p.grad is not None and isinstance(p.grad, DTensor)]
    plain = [p.grad for p in params if p.grad is not None and not isinstance(p.grad, DTensor)]
    sq = torch.zeros((), dtype=torch.float32,
                     device=(plain or [g.to_local() for g in sharded])[0].device)
    if plain:
        sq = sq + torch.nn.utils.get_total_norm(plain).float() ** 2
    if sharded:
        norm = torch.nn.utils.get_total_norm(sharded)
        sq = sq + (norm.full_tensor() if isinstance(norm, DTensor) else norm).float() ** 2
    if pipeline:  # each stage holds different parameters
        dist.all_reduce(sq)
    return sq.sqrt()
