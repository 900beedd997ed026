"""Tensor parallelism (Megatron-style, on DTensor): attention heads and MLP columns are split
over the tensor-parallel ranks; each block needs one all-reduce per attention and per MLP in
forward, which gloo supports (no sequence parallelism, which would need reduce-scatter)."""

from __future__ import annotations

from lmforge.model.layers import Block
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module


def apply_tensor_parallel(model: nn.Module, *, mesh: DeviceMesh, n_head: int) -> nn.Module:
    tp = mesh.size()
    if n_head % tp:
        raise ValueError(f"n_head={n_head} is not divisible by tensor_parallel.size={tp}")
    plan = {"attn.q": ColwiseParallel(), "attn.k": ColwiseParallel(),
            "attn.v": ColwiseParallel(), "attn.proj": RowwiseParallel(),
            "mlp.up": ColwiseParallel(), "mlp.down": RowwiseParallel()}
    for block in (m for m in model.modules() if isinstance(m, Block)):
        if block.cross is not None:
            raise ValueError("tensor parallelism supports decoder-only models here; use "
                             "arch 'causal' or 'prefix'")
        parallelize_module(block, mesh, plan)
    return model
