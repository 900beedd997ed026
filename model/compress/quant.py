"""Quantized linear layers on torch's own CPU kernels, with plain tensors as state.

* :class:`Int8WeightLinear`: int8 weights, one absmax scale per output row; activations stay
  float: the codes are cast and the scale applied to the output (as torchao does on CPU;
  ``torch._weight_int8pack_mm`` measured 10-30x slower than that here).
* :class:`Int8DynamicLinear`: the same weights, and each input row quantized to int8 on the fly
  (absmax per token), an int8 x int8 -> int32 product (``torch._int_mm``), rescaled.
* :class:`Int4WeightLinear`: 4-bit weights in groups of ``group`` input channels, each group
  with a scale and zero point (asymmetric, as GPTQ/AWQ-style int4 and torchao's
  ``Int4WeightOnlyConfig``); for a few rows (decoding) ``torch._weight_int4pack_mm_for_cpu``
  on the kernel's packed layout, built on first use from the portable codes the state holds
  (two per byte), for more rows (prefill) the weights dequantized. Neither is faster than fp32
  on this CPU: without hand-written SIMD kernels (llama.cpp's) 4 bits buy size, not speed.

Why not torchao's tensor subclasses (0.18 installs and its int8 configs run on CPU here): their
state dicts hold subclass tensors that ``torch.load(weights_only=True)`` refuses without
allow-listing torchao classes and that safetensors cannot store, and its int4 weight-only
config needs the ``mslk`` package on CPU. ``tests/model/test_compress.py`` checks our int8
layers against torchao's on the same weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from lmforge.model.compress.base import target_linears
from torch import nn


def _bias(linear: nn.Linear) -> nn.Parameter | None:
    return None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(),
                                                         requires_grad=False)


def _rows(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    return x.reshape(-1, x.shape[-1]), x.shape[:-1]


class Int8WeightLinear(nn.Module):
    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127
        self.register_buffer("codes", torch.round(w / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale)
        self.bias = _bias(linear)

    def dequantize(self) -> torch.Tensor:
        return self.codes.float() * self.scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, lead = _rows(x)
        y = F.linear(rows, self.codes.to(rows.dtype)) * self.scale.to(rows.dtype)
        y = y if self.bias is None else y + self.bias.to(y.dtype)
        return y.view(*lead, self.out_features)


class Int8DynamicLinear(Int8WeightLinear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, lead = _rows(x)
        scale = rows.abs().amax(dim=1, keepdim=True).float().clamp_min(1e-12) / 127
        q = torch.round(rows.float() / scale).clamp(-127, 127).to(torch.int8)
        if rows.device.type == "cpu":
            acc = torch._int_mm(q, self.codes.t()).float()
        else:  # an int32 product where _int_mm's shape rules do not hold
            acc = q.float() @ self.codes.float().t()
        y = (acc * scale * self.scale[None, :]).to(x.dtype)
        y = y if self.bias is None else y + self.bias.to(y.dtype)
        return y.view(*lead, self.out_features)


class Int4WeightLinear(nn.Module):
    def __init__(self, linear: nn.Linear, group: int) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        N, K = w.shape
        if K % group:
            raise ValueError(f"in_features {K} is not a multiple of the group size {group}")
        self.in_features, self.out_features, self.group = K, N, group
        g = w.view(N, K // group, group)
        low, high = g.amin(-1), g.amax(-1)
        scale = ((high - low) / 15).clamp_min(1e-12)
        q = torch.clamp(torch.round((g - low[..., None]) / scale[..., None]), 0, 15)
        q = q.to(torch.uint8).view(N, K)
        self.register_buffer("codes", q[:, 0::2] | (q[:, 1::2] << 4))  # (N, K/2)
        self.register_buffer("scale", scale)  # (N, K/group)
        self.register_buffer("zero", low + 8 * scale)  # the kernel's (q - 8) * s + zero
        self.bias = _bias(linear)
        self._packed: torch.Tensor | None = None

    def _unpacked(self) -> torch.Tensor:
        return torch.stack([self.codes & 0xF, self.codes >> 4], dim=-1).view(
            self.out_features, self.in_features)

    def dequantize(self) -> torch.Tensor:
        q = self._unpacked().float().view(self.out_features, -1, self.group)
        w = (q - 8) * self.scale[..., None] + self.zero[..., None]
        return w.view(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, lead = _rows(x)
        if rows.device.type == "cpu" and rows.dtype == torch.float32 and rows.shape[0] <= 16:
            if self._packed is None:  # the kernel's own layout, built once (not stored)
                self._packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
                    self._unpacked().to(torch.int32), 1)
                self._zs = torch.stack([self.scale.t(), self.zero.t()], -1).contiguous()
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(rows.contiguous(), self._packed,
                                                            self.group, self._zs)
        else:
            y = rows @ self.dequantize().to(rows.dtype).t()
        y = y if self.bias is None else y + self.bias.to(y.dtype)
        return y.view(*lead, self.out_features)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._packed = None  # new codes: pack again on next use
        super()._load_from_state_dict(*args, **kwargs)


def replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> int:
    """Swap every block linear layer for ``make(layer)``; how many were swapped."""
    layers = target_linears(model)
    for _, parent, attr, linear in layers:
        setattr(parent, attr, make(linear))
    return len(layers)
