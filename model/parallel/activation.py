"""Activation checkpointing: each block keeps only its input and recomputes its activations
during backward (non-reentrant ``torch.utils.checkpoint``)."""

from __future__ import annotations

from lmforge.model.layers import Block
from torch import nn


def apply_activation_checkpointing(model: nn.Module) -> int:
    """Turn recomputation on for every transformer block; returns how many."""
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    for block in blocks:
        block.checkpointing = True
    return len(blocks)
