"""The record every fine-tuning method registers, and what all methods share: freezing the base
and naming the trainable (adapter) parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn


class MethodConfig(BaseModel):
    """Base of every method's config; ``kind`` names the method."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str


@dataclass(frozen=True)
class Method:
    """One fine-tuning method: its config model, and ``apply(model, cfg)`` that changes the
    model in place (adds the adapter, freezes what is not trained). ``unload(model)``, where a
    method has one, folds the adapter into the base and returns the plain architecture (LoRA),
    so the result loads without lmforge's adapter code."""

    kind: str
    config: type[MethodConfig]
    apply: Callable[[nn.Module, MethodConfig], None]
    unload: Callable[[nn.Module], nn.Module] | None = None


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters a method trains, by name (what an adapter file holds)."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights counted once, a low-bit frozen weight
    (stored as a buffer) as the parameters it stands for."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in seen.values())
    total += sum(m.in_features * m.out_features for m in model.modules()
                 if type(m).__name__ == "LowBitLinear")
    return sum(p.numel() for p in seen.values() if p.requires_grad), total
