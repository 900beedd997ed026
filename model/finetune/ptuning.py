"""P-tuning (Liu et al. 2021, "GPT Understands, Too"): ``length`` virtual tokens ahead of the
input (of the encoder, for an encoder-decoder) whose embeddings come from a small prompt
encoder (a bidirectional LSTM then an MLP, as in the paper, or an MLP alone) over trainable
seeds; the base is frozen. The seeds start as the embeddings of random real tokens and the
encoder's output layer at zero, so training starts from a prompt of real words and learns a
residual on it (a random prompt at a 0.02 scale is all but ignored by a trained model). Built
on our models (``DecoderLM.prompt``) rather than with peft, whose prompt learning passes
``inputs_embeds`` to a ``transformers`` model's forward.

Measured on the sample instruction set (2-layer, 64-wide base): prefix and P-tuning lower the
loss from where their prompt starts but barely below the base's own, while LoRA and full
fine-tuning go well below it: prompt methods steer what a model can already do, and match
fine-tuning only at scale (Lester et al. 2021)."""

from __future__ import annotations

from typing import Literal

import torch
from lmforge.model.finetune.base import Method, MethodConfig, freeze
from pydantic import Field
from torch import nn


class PTuningConfig(MethodConfig):
    kind: Literal["ptuning"] = "ptuning"
    length: int = Field(16, ge=1, description="virtual tokens ahead of the input")
    encoder: Literal["lstm", "mlp"] = Field("lstm", description="the prompt encoder")
    hidden: int = Field(64, ge=1, description="width of the prompt encoder")


class PromptEncoder(nn.Module):
    """(B, length, C) virtual token embeddings."""

    def __init__(self, start: torch.Tensor, kind: str, hidden: int) -> None:
        super().__init__()
        length, n_embd = start.shape
        self.length = length
        self.seed = nn.Parameter(start.detach().clone())
        self.lstm = nn.LSTM(n_embd, hidden, bidirectional=True, batch_first=True) \
            if kind == "lstm" else None
        width = 2 * hidden if self.lstm is not None else n_embd
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, n_embd))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, batch: int) -> torch.Tensor:
        h = self.seed[None]
        if self.lstm is not None:
            h = self.lstm(h)[0]
        return (self.seed + self.mlp(h)).expand(batch, -1, -1)


def apply(model: nn.Module, cfg: MethodConfig) -> None:
    assert isinstance(cfg, PTuningConfig)
    freeze(model)
    mc = model.cfg  # type: ignore[attr-defined]
    if not hasattr(model, "prompt"):
        raise ValueError(f"{type(model).__name__} takes no virtual prompt")
    with torch.no_grad():
        words = model.embed.tok(torch.randint(0, mc.vocab_size, (cfg.length,)))  # type: ignore
    model.prompt = PromptEncoder(words, cfg.encoder, cfg.hidden)


METHOD = Method("ptuning", PTuningConfig, apply)
