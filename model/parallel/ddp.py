"""ZeRO stage 0: DistributedDataParallel, gradients all-reduced in buckets while backward
runs (DeepSpeed's overlap_comm / reduce_bucket_size)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def apply_ddp(model: nn.Module, *, device: torch.device, bucket_elements: int,
              overlap: bool) -> nn.Module:
    bucket_mb = bucket_elements * 4 / 2**20
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        bucket_cap_mb=bucket_mb if overlap else 1e6,  # one huge bucket = reduce after backward
        gradient_as_bucket_view=True)
