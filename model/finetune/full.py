"""Full fine-tuning: every parameter trains (the baseline the parameter-efficient methods are
measured against)."""

from __future__ import annotations

from typing import Literal

from lmforge.model.finetune.base import Method, MethodConfig
from torch import nn


class FullConfig(MethodConfig):
    kind: Literal["full"] = "full"


def apply(model: nn.Module, cfg: MethodConfig) -> None:
    for p in model.parameters():
        p.requires_grad_(True)


METHOD = Method("full", FullConfig, apply)
