"""lowrank: low-rank factorisation of the block linear layers by truncated SVD (Denton et al.
2014; Sainath et al. 2013): W (out, in) ~ B A with A = sqrt(S_r) V_r^T (r, in) and
B = U_r sqrt(S_r) (out, r), the rank r of each layer the smallest that keeps ``energy`` of
its squared singular values. A layer is factorised only where r (in + out) < in out (else it
would grow)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from lmforge.model.compress.base import CompressConfig, Compression, State, target_linears
from pydantic import Field
from torch import nn


class Config(CompressConfig):
    kind: Literal["lowrank"] = "lowrank"
    energy: float = Field(0.9, gt=0, le=1, description="share of the squared singular values "
                          "each factorised layer keeps")


class LowRankLinear(nn.Module):
    def __init__(self, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.a, self.b = nn.Parameter(a), nn.Parameter(b)  # (r, in), (out, r)
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.in_features, self.out_features = a.shape[1], b.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.a), self.b, self.bias)  # (..., r) then (..., out)


def rank_for(s: torch.Tensor, energy: float) -> int:
    """Smallest r whose leading singular values hold ``energy`` of sum(s^2)."""
    share = (s ** 2).cumsum(0) / (s ** 2).sum()
    return int((share < energy - 1e-9).sum()) + 1


def apply(model: nn.Module, cfg: CompressConfig) -> None:
    assert isinstance(cfg, Config)
    with torch.no_grad():
        for _, parent, attr, linear in target_linears(model):
            w = linear.weight.detach().float()
            u, s, vh = torch.linalg.svd(w, full_matrices=False)
            r = rank_for(s, cfg.energy)
            if r * (w.shape[0] + w.shape[1]) >= w.numel():
                continue
            root = s[:r].sqrt()
            bias = linear.bias.detach().clone() if linear.bias is not None else None
            setattr(parent, attr, LowRankLinear((root[:, None] * vh[:r]).to(w.dtype),
                                                (u[:, :r] * root[None, :]).to(w.dtype), bias))


def rebuild(model: nn.Module, cfg: CompressConfig, state: State) -> None:
    for name, parent, attr, linear in target_linears(model):
        if f"{name}.a" in state:
            a, b = state[f"{name}.a"], state[f"{name}.b"]
            setattr(parent, attr, LowRankLinear(torch.empty_like(a), torch.empty_like(b),
                                                torch.empty(b.shape[0])
                                                if linear.bias is not None else None))


METHOD = Compression("lowrank", Config, apply, rebuild)
