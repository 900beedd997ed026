"""share: cross-layer weight sharing (ALBERT, Lan et al. 2020, trained it from the start; here
after training, as in Takase & Kiyono 2021's "cycle" study): consecutive groups of ``group``
blocks become one block, whose weights start as the mean of the group's, used ``group``
times in a row. A short recovery fine-tune follows. Parameters and the stored file shrink by
about the group size; compute does not."""

from __future__ import annotations

from typing import Literal

import torch
from lmforge.model.compress.base import CompressConfig, Compression, State
from pydantic import Field
from torch import nn


class Config(CompressConfig):
    kind: Literal["share"] = "share"
    group: int = Field(2, ge=2, description="consecutive blocks sharing one set of weights")


def _groups(stack: nn.ModuleDict, group: int) -> list[list[str]]:
    names = list(stack.keys())
    return [names[i:i + group] for i in range(0, len(names), group)]


def _tie(model: nn.Module, cfg: Config) -> None:
    for stack in (getattr(model, "layers", None), getattr(model, "encoder", None)):
        if isinstance(stack, nn.ModuleDict):
            for names in _groups(stack, cfg.group):
                for name in names[1:]:
                    stack[name] = stack[names[0]]


def apply(model: nn.Module, cfg: CompressConfig) -> None:
    assert isinstance(cfg, Config)
    with torch.no_grad():
        for stack in (getattr(model, "layers", None), getattr(model, "encoder", None)):
            if not isinstance(stack, nn.ModuleDict):
                continue
            for names in _groups(stack, cfg.group):
                members = [dict(stack[n].named_parameters()) for n in names]
                for pname, p in members[0].items():
                    p.copy_(torch.stack([m[pname] for m in members]).mean(0))
    _tie(model, cfg)


def rebuild(model: nn.Module, cfg: CompressConfig, state: State) -> None:
    assert isinstance(cfg, Config)
    _tie(model, cfg)


METHOD = Compression("share", Config, apply, rebuild, recover=True)
