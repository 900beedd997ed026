"""Parallelism and memory techniques, one ``apply_<technique>`` per module, composed by
:func:`parallelize` in torchtitan's order: tensor parallel → activation checkpointing →
(compile) → FSDP / DDP. Pipeline parallelism replaces the model by its stage
(``model.parallel.pipeline``)."""

from __future__ import annotations

import torch
from lmforge.model.parallel.activation import apply_activation_checkpointing
from lmforge.model.parallel.config import DeepSpeedConfig
from lmforge.model.parallel.ddp import apply_ddp
from lmforge.model.parallel.dims import ParallelDims
from lmforge.model.parallel.fsdp import apply_fsdp
from lmforge.model.parallel.tensor import apply_tensor_parallel
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

__all__ = ["DeepSpeedConfig", "ParallelDims", "parallelize"]

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def parallelize(model: nn.Module, *, cfg: DeepSpeedConfig, dims: ParallelDims,
                device: torch.device, mesh: DeviceMesh | None, n_head: int,
                compile_model: bool = False) -> nn.Module:
    """Apply what ``cfg`` asks for, in order; returns the module to train."""
    if dims.tp_enabled:
        assert mesh is not None
        # tensor parallelism first: it changes the parameters that FSDP later shards
        apply_tensor_parallel(model, mesh=mesh["tp"], n_head=n_head)
    if cfg.activation_checkpointing.enabled:
        # before FSDP, so recomputation happens inside each sharded block
        apply_activation_checkpointing(model)
    if compile_model:
        model = torch.compile(model)
    stage = cfg.zero_optimization.stage
    if stage >= 2:
        assert mesh is not None
        offload = "cpu" in (cfg.zero_optimization.offload_optimizer.device,
                            cfg.zero_optimization.offload_param.device)
        return apply_fsdp(model, mesh=mesh["dp"], reshard_after_forward=stage == 3,
                          param_dtype=DTYPES[cfg.precision], offload=offload)
    if dims.dp_enabled:
        return apply_ddp(model, device=device,
                         bucket_elements=cfg.zero_optimization.reduce_bucket_size,
                         overlap=cfg.zero_optimization.overlap_comm)
    return model
