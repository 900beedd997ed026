"""Frozen low-bit weights for a QLoRA-style base (Dettmers et al. 2023): NF4 (4-bit NormalFloat,
blocks of 64 weights with an absmax scale each) or int8 (per output row absmax). The weight is
stored packed and dequantized to the input's dtype in each forward; only the adapters on top
train. Written here rather than with bitsandbytes, whose 4-bit kernels need CUDA; torchao's
NF4 tensor also works on CPU but its subclass does not pass through FSDP2 and DCP here. Not
done (as the paper does): double quantization of the scales, paged optimizers."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# The 16 NF4 levels: quantiles of N(0, 1) normalised to [-1, 1] (QLoRA, Appendix E)
NF4 = torch.tensor([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                    0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                    0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                    0.7229568362236023, 1.0])
BLOCK = 64


class LowBitLinear(nn.Module):
    """A frozen ``nn.Linear`` whose weight lives in 4 or 8 bits; the bias stays as it was."""

    def __init__(self, linear: nn.Linear, bits: int) -> None:
        super().__init__()
        if bits not in (4, 8):
            raise ValueError(f"bits must be 4 (NF4) or 8 (int8), not {bits}")
        w = linear.weight.detach().float()
        self.bits, self.in_features, self.out_features = bits, w.shape[1], w.shape[0]
        if bits == 8:
            scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
            self.register_buffer("codes", torch.round(w / scale).to(torch.int8))
        else:
            flat = w.flatten()
            pad = (-flat.numel()) % BLOCK
            blocks = F.pad(flat, (0, pad)).view(-1, BLOCK)
            scale = blocks.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
            idx = (blocks / scale)[..., None].sub(NF4).abs().argmin(-1).to(torch.uint8)
            idx = idx.flatten()
            self.register_buffer("codes", (idx[0::2] << 4 | idx[1::2]).to(torch.uint8))
        self.register_buffer("scale", scale.float())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(),
                                                                  requires_grad=False)

    @property
    def weight(self) -> torch.Tensor:  # peft and our code read `.weight` of a base layer
        return self.dequantize()

    def dequantize(self) -> torch.Tensor:
        if self.bits == 8:
            return self.codes.float() * self.scale
        idx = torch.stack([self.codes >> 4, self.codes & 0xF], dim=-1).flatten().long()
        values = NF4.to(self.scale.device)[idx].view(-1, BLOCK) * self.scale
        return values.flatten()[: self.in_features * self.out_features].view(
            self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _LowBitMatmul.apply(x, self)
        return y + self.bias.to(y.dtype) if self.bias is not None else y

    def nbytes(self) -> int:
        return self.codes.numel() * self.codes.element_size() + self.scale.numel() * 4


class _LowBitMatmul(torch.autograd.Function):
    """``x @ W.T`` with W dequantized in forward and again in backward, so autograd keeps the
    packed codes instead of a full-precision copy of every frozen weight (as bitsandbytes'
    4-bit matmul does); the weight gets no gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, layer: LowBitLinear) -> torch.Tensor:
        ctx.layer = layer
        return F.linear(x, layer.dequantize().to(x.dtype))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad @ ctx.layer.dequantize().to(grad.dtype), None


def quantize_linears(module: nn.Module, bits: int) -> int:
    """Replace every ``nn.Linear`` under ``module`` (LoRA's base layers included) by its frozen
    low-bit copy; returns how many were replaced."""
    replaced = 0
    for name, child in list(module.named_children()):
        if name.startswith("lora_"):  # the adapter's own matrices train in full precision
            continue
        if isinstance(child, nn.Linear):
            setattr(module, name, LowBitLinear(child, bits))
            replaced += 1
        else:
            replaced += quantize_linears(child, bits)
    return replaced
