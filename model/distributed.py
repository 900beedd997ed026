"""Process groups and devices: gloo on CPU, NCCL on GPU, chosen automatically; a single
process needs no group at all."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import torch
import torch.distributed as dist
from lmforge.model.parallel.dims import ParallelDims
from pydantic import BaseModel, ConfigDict, Field
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh


class LaunchConfig(BaseModel):
    """How many processes train, on how many machines (torchrun's vocabulary). One process on
    one node trains in-process; anything else is launched with ``torchrun``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    nproc_per_node: int = Field(1, ge=1, description="processes per machine (one per GPU)")
    nnodes: int = Field(1, ge=1, description="machines")
    node_rank: int = Field(0, ge=0, description="this machine's index (multi-node)")
    rdzv_endpoint: str = Field("127.0.0.1:0", description="host:port every node can reach; "
                               "port 0 = pick a free one (single node only)")
    rdzv_id: str = Field("lmforge", description="job id shared by the nodes of one run")
    max_restarts: int = Field(0, ge=0, description="torchrun restarts of a failed worker group")
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="process-group backend; auto = nccl on GPU, gloo on CPU")
    collective_timeout_s: int = Field(
        1800, ge=1, description="a collective waiting longer fails its rank, so torchrun can "
        "restart the group from the last checkpoint (torch's default 30 min)")

    @property
    def world(self) -> int:
        return self.nproc_per_node * self.nnodes


@dataclass(frozen=True)
class Runtime:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device, local_rank) if device == "cuda" else torch.device(device)


def init_runtime(device: str = "auto", backend: str = "auto",
                 timeout_s: float = 1800) -> Runtime:
    """From torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); one process without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if backend == "auto":
            backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return Runtime(rank, world, local_rank, dev)


def build_mesh(runtime: Runtime, dims: ParallelDims) -> DeviceMesh | None:
    """A (dp, tp) mesh over all ranks, or None for a single process."""
    if not runtime.distributed or dims.pp_enabled:
        return None
    return init_device_mesh(runtime.device.type, (dims.dp, dims.tp), mesh_dim_names=("dp", "tp"))


def all_sum(values: list[float], runtime: Runtime) -> list[float]:
    """Element-wise sum over ranks (identity for one process)."""
    if not runtime.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=runtime.device)
    dist.all_reduce(t)
    return t.tolist()


def shutdown(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
