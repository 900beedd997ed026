"""Prefix tuning (Li & Liang 2021): every self-attention layer gets ``length`` trainable key and
value vectors that each query sees ahead of the sequence (the base is frozen). The prefix starts
as the layer's own keys and values of ``length`` real tokens (the paper's initialisation with
activations of real words, which it found to matter with little data): random vectors of the
scale of a 0.02-initialised table get almost no attention from a trained model, so they
receive almost no gradient. ``hidden`` > 0 adds the paper's MLP reparametrisation (a residual
update on top of that start). Built on our attention
(``Attention.kv_prefix``) rather than with peft, whose prefix tuning hands ``past_key_values``
to a ``transformers`` model's forward, which our models do not take."""

from __future__ import annotations

from typing import Literal

import torch
from lmforge.model.finetune.base import Method, MethodConfig, freeze
from lmforge.model.layers import Attention
from pydantic import Field
from torch import nn


class PrefixConfig(MethodConfig):
    kind: Literal["prefix"] = "prefix"
    length: int = Field(16, ge=1, description="prefix keys/values per layer")
    hidden: int = Field(0, ge=0, description="width of the reparametrising MLP (0 = free "
                        "key/value vectors)")


class KVPrefix(nn.Module):
    """(B, heads, length, head_dim) keys and values of one attention layer."""

    def __init__(self, start: torch.Tensor, n_head: int, hidden: int) -> None:
        """``start``: (length, 2C) keys and values of real tokens, the prefix's first value."""
        super().__init__()
        self.length, self.n_head = start.shape[0], n_head
        self.seed = nn.Parameter(start.detach().clone())
        self.mlp = None
        if hidden:
            self.mlp = nn.Sequential(nn.Linear(start.shape[1], hidden), nn.Tanh(),
                                     nn.Linear(hidden, start.shape[1]))
            nn.init.zeros_(self.mlp[2].weight)
            nn.init.zeros_(self.mlp[2].bias)

    def forward(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        kv = self.seed + self.mlp(self.seed) if self.mlp is not None else self.seed  # (P, 2C)
        k, v = kv.view(self.length, 2, self.n_head, -1).permute(1, 2, 0, 3)  # (nh, P, hs)
        return k[None].expand(batch, -1, -1, -1), v[None].expand(batch, -1, -1, -1)


def apply(model: nn.Module, cfg: MethodConfig) -> None:
    assert isinstance(cfg, PrefixConfig)
    freeze(model)
    mc = model.cfg  # type: ignore[attr-defined]
    tokens = torch.randint(0, mc.vocab_size, (cfg.length,))
    with torch.no_grad():
        words = model.embed.tok(tokens)  # type: ignore[attr-defined]
    for block in model.modules():
        attn = getattr(block, "attn", None)
        if isinstance(attn, Attention) and isinstance(getattr(block, "ln_1", None), nn.Module):
            with torch.no_grad():
                h = block.ln_1(words)  # type: ignore[operator]
                start = torch.cat([attn.k(h), attn.v(h)], dim=-1)
            attn.kv_prefix = KVPrefix(start, mc.n_head, cfg.hidden)


METHOD = Method("prefix", PrefixConfig, apply)
