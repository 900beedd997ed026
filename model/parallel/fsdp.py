"""ZeRO stages 2 and 3 with FSDP2: every block, then the root, is sharded over the
data-parallel ranks; stage 3 re-shards parameters after forward, stage 2 keeps them gathered
until backward is done. Mixed precision and CPU offload are FSDP2 policies."""

from __future__ import annotations

import torch
from lmforge.model.layers import Block
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard


def apply_fsdp(model: nn.Module, *, mesh: DeviceMesh, reshard_after_forward: bool,
               param_dtype: torch.dtype | None, offload: bool) -> nn.Module:
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32) \
        if param_dtype is not None else MixedPrecisionPolicy()
    kwargs = {"mesh": mesh, "mp_policy": mp}
    if offload:
        kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=torch.cuda.is_available())
    for block in (m for m in model.modules() if isinstance(m, Block)):
        fully_shard(block, reshard_after_forward=reshard_after_forward, **kwargs)
    fully_shard(model, reshard_after_forward=reshard_after_forward, **kwargs)
    return model
