"""distill: knowledge distillation (Hinton et al. 2015) into a smaller student: the student
keeps evenly spaced blocks of the teacher (DistilBERT's initialisation, Sanh et al. 2019) and
is trained through the trainer on ``alpha`` x T^2 x KL(teacher || student) at temperature T
plus (1 - alpha) x the LM loss on the training split. The student is a plain architecture
(its own, shallower config), so it saves, exports and serves like any model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from lmforge.model.compress.base import CompressConfig, Compression, State
from lmforge.model.objectives import IGNORE, Batch, batch_output
from pydantic import Field
from torch import nn


class Config(CompressConfig):
    kind: Literal["distill"] = "distill"
    layers: int = Field(0, ge=0, description="student blocks (0 = half the teacher's)")
    temperature: float = Field(2.0, gt=0, description="softmax temperature of both models")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the KL term (the LM loss "
                         "gets 1 - alpha)")
    steps: int = Field(60, ge=1, description="distillation steps through the trainer")
    lr: float = Field(1e-3, gt=0, description="peak learning rate of the distillation")


def kept_blocks(n_layer: int, cfg: Config) -> list[int]:
    keep = cfg.layers or max(1, n_layer // 2)
    if keep >= n_layer:
        raise ValueError(f"distill.layers={keep}: the student must have fewer than the "
                         f"teacher's {n_layer} blocks")
    return sorted({round(i * (n_layer - 1) / max(1, keep - 1)) for i in range(keep)}) \
        if keep > 1 else [0]


def apply(model: nn.Module, cfg: CompressConfig) -> None:
    """Turn ``model`` into the student (in place): the kept blocks, renumbered."""
    assert isinstance(cfg, Config)
    for stack_name, count in (("layers", "n_layer"), ("encoder", "n_encoder_layer")):
        stack = getattr(model, stack_name, None)
        if not isinstance(stack, nn.ModuleDict):
            continue
        blocks = list(stack.values())
        keep = kept_blocks(len(blocks), cfg)
        setattr(model, stack_name, nn.ModuleDict({str(i): blocks[k]
                                                  for i, k in enumerate(keep)}))
        model.cfg = model.cfg.model_copy(update={count: len(keep)})  # type: ignore


def rebuild(model: nn.Module, cfg: CompressConfig, state: State) -> None:
    """Nothing to change: a saved student carries its own (shallower) config."""


def kd_loss(teacher: nn.Module, cfg: Config
            ) -> Callable[[nn.Module, Batch, str], torch.Tensor]:
    """The trainer's ``loss_fn``: per scored token, alpha T^2 KL + (1 - alpha) cross-entropy."""
    teacher.eval()
    T = cfg.temperature

    def loss(model: nn.Module, batch: Batch, reduction: str = "mean") -> torch.Tensor:
        student = batch_output(model, batch).float()  # (B, L, V)
        with torch.no_grad():
            target = batch_output(teacher, batch).float()
        kl = F.kl_div(F.log_softmax(student / T, -1), F.log_softmax(target / T, -1),
                      log_target=True, reduction="none").sum(-1) * T * T  # (B, L)
        ce = F.cross_entropy(student.flatten(0, 1), batch.targets.flatten(),
                             ignore_index=IGNORE, reduction="none").view_as(kl)
        per = (cfg.alpha * kl + (1 - cfg.alpha) * ce)[batch.targets != IGNORE]
        return per.sum() if reduction == "sum" else per.mean()

    return loss


METHOD = Compression("distill", Config, apply, rebuild, teacher=True)
