"""LoRA (Hu et al. 2021): a trainable low-rank update ``B A`` (rank r, scaled by alpha / r) beside
each targeted frozen ``nn.Linear``; optionally over a frozen 4- or 8-bit base (QLoRA-style,
``model.finetune.lowbit``). The adapter layers are peft's (``inject_adapter_in_model``: our
projections are plain ``nn.Linear``, which is what peft's LoRA wraps); merging into plain
``nn.Linear`` again (``unload``) is ours, because peft's ``merge_and_unload`` belongs to its
``PeftModel`` wrapper, which expects a ``transformers`` model."""

from __future__ import annotations

from typing import Literal

import torch
from lmforge.model.finetune.base import Method, MethodConfig, freeze
from lmforge.model.finetune.lowbit import quantize_linears
from pydantic import Field
from torch import nn

TARGETS = ("q", "k", "v", "proj", "up", "down")


class LoraConfig(MethodConfig):
    kind: Literal["lora"] = "lora"
    rank: int = Field(8, ge=1, description="rank r of the update")
    alpha: float = Field(16.0, gt=0, description="scale: the update is multiplied by alpha / r")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: tuple[Literal["q", "k", "v", "proj", "up", "down"], ...] = Field(
        ("q", "v"), min_length=1, description=f"projections that get an adapter, of {TARGETS}")
    base_bits: Literal[16, 8, 4] = Field(16, description="16 = the base as it is; 8 = int8, "
                                         "4 = NF4 frozen weights under the adapters (QLoRA)")


def _lora_layers(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    from peft.tuners.lora import LoraLayer

    return [(parent, name, child) for parent in model.modules()
            for name, child in parent.named_children() if isinstance(child, LoraLayer)]


def apply(model: nn.Module, cfg: MethodConfig) -> None:
    assert isinstance(cfg, LoraConfig)
    from peft import LoraConfig as PeftLora
    from peft import inject_adapter_in_model

    freeze(model)
    inject_adapter_in_model(PeftLora(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                     target_modules=list(cfg.target_modules), bias="none"),
                            model)
    if cfg.base_bits < 16:
        for stack in ("layers", "encoder"):
            if isinstance(getattr(model, stack, None), nn.Module):
                quantize_linears(getattr(model, stack), cfg.base_bits)


def merge(model: nn.Module) -> None:
    """Fold every adapter into its (full-precision) base weight; ``unmerge`` takes it out."""
    for _, _, layer in _lora_layers(model):
        layer.merge()


def unmerge(model: nn.Module) -> None:
    for _, _, layer in _lora_layers(model):
        layer.unmerge()


@torch.no_grad()
def unload(model: nn.Module) -> nn.Module:
    """Replace every adapter layer by a plain ``nn.Linear`` holding base + update (from a
    low-bit base: its dequantized weight), so the model is the plain architecture again."""
    for parent, name, layer in _lora_layers(model):
        base = layer.get_base_layer()
        weight = base.weight.float()
        if not getattr(layer, "merged", False):
            weight = weight + layer.get_delta_weight("default").float()
        plain = nn.Linear(weight.shape[1], weight.shape[0], bias=base.bias is not None)
        plain.weight.copy_(weight)
        if base.bias is not None:
            plain.bias.copy_(base.bias)
        setattr(parent, name, plain)
    for module in list(model.modules()):  # a low-bit base outside the adapters: dequantize
        for name, child in list(module.named_children()):
            if child.__class__.__name__ == "LowBitLinear":
                plain = nn.Linear(child.in_features, child.out_features,
                                  bias=child.bias is not None)
                plain.weight.copy_(child.dequantize())
                if child.bias is not None:
                    plain.bias.copy_(child.bias)
                setattr(module, name, plain)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


METHOD = Method("lora", LoraConfig, apply, unload)
