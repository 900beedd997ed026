"""The quantization methods, three records over ``model.compress.quant``'s layers:
``int8-dynamic`` (int8 weights and per-token int8 activations), ``int8-weight`` (int8
weights, float activations) and ``int4-weight`` (4-bit grouped weights, float activations).
Rebuilding before a load quantizes the fresh model's weights: the shapes and buffers are what
matter, the stored codes then replace them."""

from __future__ import annotations

from typing import Literal

from lmforge.model.compress.base import CompressConfig, Compression, State
from lmforge.model.compress.quant import (
    Int4WeightLinear,
    Int8DynamicLinear,
    Int8WeightLinear,
    replace_linears,
)
from pydantic import Field
from torch import nn


class Int8DynamicConfig(CompressConfig):
    kind: Literal["int8-dynamic"] = "int8-dynamic"


class Int8WeightConfig(CompressConfig):
    kind: Literal["int8-weight"] = "int8-weight"


class Int4WeightConfig(CompressConfig):
    kind: Literal["int4-weight"] = "int4-weight"
    group: int = Field(32, ge=2, description="input channels sharing one scale and zero "
                       "point (torchao's int4 default is 128; small models need smaller)")


def apply(model: nn.Module, cfg: CompressConfig) -> None:
    if isinstance(cfg, Int4WeightConfig):
        replace_linears(model, lambda linear: Int4WeightLinear(linear, cfg.group))
    else:
        replace_linears(model, Int8DynamicLinear if isinstance(cfg, Int8DynamicConfig)
                        else Int8WeightLinear)


def rebuild(model: nn.Module, cfg: CompressConfig, state: State) -> None:
    apply(model, cfg)


METHODS = (Compression("int8-dynamic", Int8DynamicConfig, apply, rebuild),
           Compression("int8-weight", Int8WeightConfig, apply, rebuild),
           Compression("int4-weight", Int4WeightConfig, apply, rebuild))
