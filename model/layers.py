"""Transformer building blocks, bottom-up: positions → attention → MLP → blocks.

Attention always goes through ``scaled_dot_product_attention`` (FlashAttention or
memory-efficient kernels on GPU); masks are either the causal fast path or an explicit boolean
mask (prefix-LM, padding).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from lmforge.model.config import ModelConfig
from torch import nn
from torch.utils.checkpoint import checkpoint


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """Vaswani et al. 2017, §3.5: sin on even, cos on odd channels. (length, dim)"""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10_000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)
    return table


def rotary_tables(length: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of RoPE's rotation angles, each (length, head_dim / 2)."""
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv)
    return angles.cos(), angles.sin()


Start = int | torch.Tensor
"""Position of a sequence's first token: one int for the batch, a (B,) tensor of per-row
starts (batched generation, where rows of different lengths share the cache's columns), or a
(B, T) tensor of every token's position (packed rows, where each sequence starts at 0)."""


def positions(start: Start, length: int, device: torch.device) -> torch.Tensor:
    """(T,) positions ``start..start+T``, or (B, T) for per-row starts or given positions."""
    if isinstance(start, torch.Tensor) and start.dim() == 2:
        return start
    steps = torch.arange(length, device=device)
    return steps + start if isinstance(start, int) else start[:, None] + steps


def last_position(start: Start, length: int) -> int:
    """The highest position a forward pass of ``length`` tokens from ``start`` reaches, + 1."""
    if isinstance(start, int):
        return start + length
    return int(start.max()) + (1 if start.dim() == 2 else length)


def segment_positions(segments: torch.Tensor) -> torch.Tensor:
    """(B, T) position of each token inside its own sequence of a packed row (segment ids
    non-decreasing along the row): every packed sequence starts at position 0."""
    T = segments.shape[1]
    steps = torch.arange(T, device=segments.device).expand_as(segments)
    new = torch.ones_like(segments, dtype=torch.bool)
    new[:, 1:] = segments[:, 1:] != segments[:, :-1]
    first = torch.cummax(torch.where(new, steps, torch.zeros_like(steps)), dim=1).values
    return steps - first


def segment_mask(segments: torch.Tensor, bidirectional: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """(B, 1, T, T) mask of a packed row: a token sees the earlier tokens of its own sequence
    only (no attention across packed samples); with ``bidirectional`` (B, T), the flagged
    tokens of a sequence (a prefix decoder's prompt) also see each other both ways."""
    T = segments.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=segments.device).tril()
    same = segments[:, :, None] == segments[:, None, :]
    allowed = same & causal
    if bidirectional is not None:
        allowed = allowed | (same & bidirectional[:, :, None] & bidirectional[:, None, :])
    return allowed[:, None]


def with_virtual(mask: torch.Tensor | None, virtual: int, length: int, device: torch.device,
                 *, rows: bool = False) -> torch.Tensor:
    """Extend a (B|1, 1, T, T) mask (None: causal) by ``virtual`` leading columns that every
    token sees (prefix tuning's keys); with ``rows``, by ``virtual`` leading rows too, for
    virtual tokens that are part of the input (P-tuning's prompt: they see each other
    causally, and no real token)."""
    if mask is None:
        mask = torch.ones(length, length, dtype=torch.bool, device=device).tril()[None, None]
    lead = torch.ones(*mask.shape[:-1], virtual, dtype=torch.bool, device=device)
    out = torch.cat([lead, mask], dim=-1)
    if not rows:
        return out
    top = torch.zeros(mask.shape[0], 1, virtual, virtual + mask.shape[-1], dtype=torch.bool,
                      device=device)
    top[..., :virtual] = torch.ones(virtual, virtual, dtype=torch.bool, device=device).tril()
    return torch.cat([top, out.expand(top.shape[0], 1, *out.shape[2:])], dim=-2)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start: Start = 0
                 ) -> torch.Tensor:
    """Rotate channel pairs of (B, nh, T, hs) at positions ``start..start+T``."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    if isinstance(start, int):
        stop = start + x.shape[-2]
        cos, sin = cos[start:stop].to(x.dtype), sin[start:stop].to(x.dtype)
    else:  # per row: (B, 1, T, hs/2), broadcast over heads
        where = positions(start, x.shape[-2], x.device)
        cos, sin = cos[where][:, None].to(x.dtype), sin[where][:, None].to(x.dtype)
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2)


def prefix_mask(prefix_len: torch.Tensor, length: int) -> torch.Tensor:
    """(B, 1, T, T) boolean mask: full attention inside each row's prefix, causal after it."""
    i = torch.arange(length, device=prefix_len.device)[:, None]
    j = torch.arange(length, device=prefix_len.device)[None, :]
    p = prefix_len[:, None, None]
    allowed = (j <= i) | ((i < p) & (j < p))
    return allowed[:, None]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, *, cross: bool = False) -> None:
        super().__init__()
        self.head_dim, self.cross = cfg.head_size, cross
        inner = cfg.n_head * cfg.head_size  # n_embd unless heads were pruned
        # separate projections: tensor parallelism shards each one by heads
        self.q = nn.Linear(cfg.n_embd, inner, bias=cfg.bias)
        self.k = nn.Linear(cfg.n_embd, inner, bias=cfg.bias)
        self.v = nn.Linear(cfg.n_embd, inner, bias=cfg.bias)
        self.proj = nn.Linear(inner, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        # prefix tuning (model.finetune): a module returning (B, nh, P, hs) keys and values
        # that every query of this layer sees ahead of the sequence
        self.kv_prefix: nn.Module | None = None

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, T, _ = t.shape  # the width is local under tensor parallelism
        return t.view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None,
                causal: bool = False, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                memory: torch.Tensor | None = None, start: Start = 0) -> torch.Tensor:
        """Self-attention over ``x`` at positions ``start..`` (or cross-attention over
        ``memory``); generation runs through ``model.engine``'s own cached path instead."""
        B, T, _ = x.shape
        q = self._heads(self.q(x))
        source = memory if self.cross else x
        k, v = self._heads(self.k(source)), self._heads(self.v(source))
        if rope is not None and not self.cross:
            q, k = apply_rotary(q, *rope, start), apply_rotary(k, *rope, start)
        if self.kv_prefix is not None and not self.cross:  # prefix tuning: keys ahead
            pk, pv = self.kv_prefix(B)
            k, v = torch.cat([pk.to(k.dtype), k], dim=2), torch.cat([pv.to(v.dtype), v], 2)
            mask, causal = with_virtual(mask if mask is not None or causal else
                                        torch.ones(1, 1, T, T, dtype=torch.bool,
                                                   device=x.device),
                                        pk.shape[2], T, x.device), False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal and mask is None,
            dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.up = nn.Linear(cfg.n_embd, cfg.mlp_width, bias=cfg.bias)
        self.down = nn.Linear(cfg.mlp_width, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x))))


class Block(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention (decoder of encoder-decoder),
    MLP, each a residual branch."""

    def __init__(self, cfg: ModelConfig, *, cross: bool = False) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = Attention(cfg)
        self.ln_x = nn.LayerNorm(cfg.n_embd, bias=cfg.bias) if cross else None
        self.cross = Attention(cfg, cross=True) if cross else None
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)
        self.checkpointing = False  # set by model.parallel.apply_activation_checkpointing

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None,
                causal: bool = False, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                memory: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, start: Start = 0) -> torch.Tensor:
        if self.checkpointing and self.training and torch.is_grad_enabled():
            # keep only the block's input; recompute its activations in backward
            return checkpoint(self._forward, x, mask, causal, rope, memory, memory_mask, start,
                              use_reentrant=False)
        return self._forward(x, mask, causal, rope, memory, memory_mask, start)

    def _forward(self, x: torch.Tensor, mask: torch.Tensor | None, causal: bool,
                 rope: tuple[torch.Tensor, torch.Tensor] | None, memory: torch.Tensor | None,
                 memory_mask: torch.Tensor | None, start: Start = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask=mask, causal=causal, rope=rope, start=start)
        if self.cross is not None and self.ln_x is not None:
            x = x + self.cross(self.ln_x(x), mask=memory_mask, memory=memory)
        return x + self.mlp(self.ln_2(x))
