"""structured: structured pruning of attention heads and MLP channels (Michel et al. 2019's
head pruning; LLM-Pruner, Ma et al. 2023, for channels): in every block the ``heads`` share of
heads and the ``channels`` share of MLP hidden channels with the smallest weight norm are
removed, so the projections really shrink (fewer FLOPs and bytes; the config records the new
head count, head size and MLP width). Importance is the L2 norm of a head's query/key/value
rows and output columns, and of a channel's up row and down column (LLM-Pruner's first-order
importance needs gradients; the norm is its data-free baseline). The same count is removed
in every block, as the config has one head count. A short recovery fine-tune follows."""

from __future__ import annotations

from typing import Literal

import torch
from lmforge.model.compress.base import CompressConfig, Compression, State
from lmforge.model.layers import MLP, Attention
from pydantic import Field
from torch import nn


class Config(CompressConfig):
    kind: Literal["structured"] = "structured"
    heads: float = Field(0.25, ge=0, lt=1, description="share of heads removed per block")
    channels: float = Field(0.25, ge=0, lt=1, description="share of MLP channels removed")


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    out = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        out.weight.copy_(weight)
        if bias is not None:
            out.bias.copy_(bias)
    return out


def _rows(linear: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    return _linear(linear.weight[keep], linear.bias[keep] if linear.bias is not None else None)


def _cols(linear: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    return _linear(linear.weight[:, keep], linear.bias)


def _prune_heads(attn: Attention, keep_heads: int) -> None:
    hs = attn.head_dim
    heads = attn.q.weight.shape[0] // hs
    score = sum(m.weight.detach().view(heads, hs, -1).pow(2).sum((1, 2))
                for m in (attn.q, attn.k, attn.v))
    score = score + attn.proj.weight.detach().view(-1, heads, hs).pow(2).sum((0, 2))
    kept = torch.sort(torch.topk(score, keep_heads).indices).values
    idx = (kept[:, None] * hs + torch.arange(hs)[None, :]).flatten()
    attn.q, attn.k, attn.v = _rows(attn.q, idx), _rows(attn.k, idx), _rows(attn.v, idx)
    attn.proj = _cols(attn.proj, idx)


def _prune_channels(mlp: MLP, keep: int) -> None:
    score = mlp.up.weight.detach().pow(2).sum(1) + mlp.down.weight.detach().pow(2).sum(0)
    idx = torch.sort(torch.topk(score, keep).indices).values
    mlp.up, mlp.down = _rows(mlp.up, idx), _cols(mlp.down, idx)


def apply(model: nn.Module, cfg: CompressConfig) -> None:
    assert isinstance(cfg, Config)
    mc = model.cfg  # type: ignore[union-attr]
    heads = max(1, mc.n_head - round(cfg.heads * mc.n_head))
    width = max(1, mc.mlp_width - round(cfg.channels * mc.mlp_width))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, Attention) and heads < mc.n_head:
                if module.kv_prefix is not None:
                    raise ValueError("structured pruning of a prefix-tuned model is not "
                                     "supported: merge or drop the prefix first")
                _prune_heads(module, heads)
            elif isinstance(module, MLP) and width < mc.mlp_width:
                _prune_channels(module, width)
    model.cfg = mc.model_copy(update={"n_head": heads, "head_dim": mc.head_size,  # type: ignore
                                      "mlp_hidden": width})


def rebuild(model: nn.Module, cfg: CompressConfig, state: State) -> None:
    """Nothing to change: a saved pruned model carries its own (narrower) config."""


METHOD = Compression("structured", Config, apply, rebuild, recover=True)
