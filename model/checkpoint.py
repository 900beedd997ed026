"""Checkpoints that carry everything needed to resume or to load the model alone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.config import ModelConfig
from model.gpt import GPT


def save_checkpoint(path: Path, *, model: nn.Module, model_cfg: ModelConfig, step: int,
                    tokens_seen: int, optimizer: torch.optim.Optimizer | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write atomically: a crash mid-save never leaves a truncated checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "model_config": model_cfg.model_dump(),
        "step": step,
        "tokens_seen": tokens_seen,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "rng": torch.get_rng_state(),
        **(extra or {}),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def load_model(path: Path) -> GPT:
    """The model of a checkpoint, in eval mode."""
    state = load_checkpoint(path)
    model = GPT(ModelConfig.model_validate(state["model_config"]))
    model.load_state_dict(state["model"])
    return model.eval()
