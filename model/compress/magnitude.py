"""magnitude: unstructured magnitude pruning (Han et al. 2015; the baseline of Zhu & Gupta 2017
and of SparseGPT/Wanda's comparisons): the smallest-magnitude weights of every block linear
layer are set to zero, per layer (each layer loses ``sparsity`` of its weights) or globally
(one threshold for all). A short recovery fine-tune follows, with pruned weights held at zero
(their gradients masked). Stored as a bit mask and the kept values, so the file shrinks."""

from __future__ import annotations

from typing import Literal

import torch
from lmforge.model.compress.base import CompressConfig, Compression, State, target_linears
from pydantic import Field
from torch import nn

MASK, VALUES, SHAPE = "__mask", "__values", "__shape"


class Config(CompressConfig):
    kind: Literal["magnitude"] = "magnitude"
    sparsity: float = Field(0.5, gt=0, lt=1, description="fraction of weights set to zero")
    scope: Literal["layer", "global"] = Field("layer", description="a threshold per layer, "
                                              "or one over every block weight")


def apply(model: nn.Module, cfg: CompressConfig) -> None:
    assert isinstance(cfg, Config)
    weights = [linear.weight for *_, linear in target_linears(model)]
    with torch.no_grad():
        if cfg.scope == "global":
            every = torch.cat([w.detach().abs().flatten() for w in weights])
            cut = torch.kthvalue(every, max(1, int(cfg.sparsity * every.numel()))).values
            for w in weights:
                w.mul_(w.abs() > cut)
        else:
            for w in weights:
                k = max(1, int(cfg.sparsity * w.numel()))
                cut = torch.kthvalue(w.detach().abs().flatten(), k).values
                w.mul_(w.abs() > cut)


def rebuild(model: nn.Module, cfg: CompressConfig, state: State) -> None:
    """Nothing to change: the architecture is the dense one."""


def hold(model: nn.Module) -> None:
    """Keep pruned weights at zero while fine-tuning: their gradients are masked."""
    for *_, linear in target_linears(model):
        mask = (linear.weight.detach() != 0).to(linear.weight.dtype)
        linear.weight.register_hook(lambda grad, mask=mask: grad * mask.to(grad.device))


def encode(state: State) -> State:
    out: State = {}
    for name, t in state.items():
        zeros = float((t == 0).float().mean()) if t.dim() == 2 and t.is_floating_point() else 0
        if zeros < 0.25:  # a bit per weight costs 1/32 of fp32: worth it past a quarter zero
            out[name] = t
            continue
        keep = t != 0
        out[name + MASK] = _pack(keep.flatten())
        out[name + VALUES] = t[keep].clone()
        out[name + SHAPE] = torch.tensor(t.shape)
    return out


def decode(state: State) -> State:
    out: State = {n: t for n, t in state.items() if not n.endswith((MASK, VALUES, SHAPE))}
    for name in [n[:-len(MASK)] for n in state if n.endswith(MASK)]:
        shape = torch.Size(state[name + SHAPE].tolist())
        keep = _unpack(state[name + MASK], shape.numel()).view(shape)
        values = state[name + VALUES]
        dense = torch.zeros(shape, dtype=values.dtype)
        dense[keep] = values
        out[name] = dense
    return out


def _pack(bits: torch.Tensor) -> torch.Tensor:
    pad = (-bits.numel()) % 8
    b = torch.cat([bits, bits.new_zeros(pad)]).view(-1, 8).to(torch.uint8)
    return (b << torch.arange(8, dtype=torch.uint8)).sum(1, dtype=torch.uint8)


def _unpack(packed: torch.Tensor, n: int) -> torch.Tensor:
    bits = (packed[:, None] >> torch.arange(8, dtype=torch.uint8)) & 1
    return bits.flatten()[:n].bool()


METHOD = Compression("magnitude", Config, apply, rebuild, encode=encode, decode=decode,
                     recover=True, hold=hold)
