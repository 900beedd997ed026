"""DeepSpeed's configuration vocabulary, validated, mapped onto torch-native techniques.

| DeepSpeed key | torch technique |
|---|---|
| ``zero_optimization.stage: 0`` | DDP, bucketed all-reduce overlapped with backward |
| ``stage: 1`` | DDP + ``ZeroRedundancyOptimizer`` (optimizer state sharded) |
| ``stage: 2`` | FSDP2 ``fully_shard(reshard_after_forward=False)``: gradients, optimizer |
|   | state and parameters sharded at rest; parameters stay gathered forward → backward |
| ``stage: 3`` | FSDP2 ``fully_shard(reshard_after_forward=True)``: re-sharded after forward |
| ``offload_optimizer`` / ``offload_param`` | FSDP2 ``CPUOffloadPolicy`` (stages 2/3) |
| ``bf16`` / ``fp16`` | autocast with fp32 master weights (FSDP2: ``MixedPrecisionPolicy``); |
|   | fp16 adds a dynamic ``GradScaler`` |
| ``activation_checkpointing`` | per-block recomputation (``torch.utils.checkpoint``) |
| ``tensor_parallel.size`` | DTensor column/row-parallel attention and MLP |
| ``pipeline.stages`` | ``torch.distributed.pipelining`` (GPipe or 1F1B) |
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class OffloadConfig(BaseModel):
    model_config = _FROZEN
    device: Literal["none", "cpu"] = Field("none", description="where the state lives")


class ZeroConfig(BaseModel):
    """ZeRO (Rajbhandari et al. 2020) stages."""

    model_config = _FROZEN
    stage: Literal[0, 1, 2, 3] = Field(0, description="0 DDP, 1 optimizer state, 2 + "
                                       "gradients, 3 + parameters sharded")
    offload_optimizer: OffloadConfig = Field(default_factory=OffloadConfig,
                                             description="optimizer state to CPU (stage 2/3)")
    offload_param: OffloadConfig = Field(default_factory=OffloadConfig,
                                         description="parameters to CPU (stage 3)")
    overlap_comm: bool = Field(True, description="overlap gradient reduction with backward")
    reduce_bucket_size: int = Field(25_000_000, ge=1, description="elements per gradient "
                                    "bucket (DDP bucket_cap_mb = this x 4 bytes)")


class Flag(BaseModel):
    model_config = _FROZEN
    enabled: bool = Field(False, description="on or off")


class Fp16Config(BaseModel):
    model_config = _FROZEN
    enabled: bool = Field(False, description="fp16 compute with dynamic loss scaling")
    initial_scale_power: int = Field(16, ge=0, le=32, description="first loss scale 2^N")


class TensorParallelConfig(BaseModel):
    model_config = _FROZEN
    size: int = Field(1, ge=1, description="ranks sharing each layer's heads and MLP")


class PipelineConfig(BaseModel):
    model_config = _FROZEN
    stages: int = Field(1, ge=1, description="ranks holding consecutive blocks")
    schedule: Literal["gpipe", "1f1b"] = Field("1f1b", description="micro-batch schedule")
    microbatches: int = Field(4, ge=1, description="micro-batches per step")


class DeepSpeedConfig(BaseModel):
    """Memory and precision techniques of a training run, in DeepSpeed's terms."""

    model_config = _FROZEN
    zero_optimization: ZeroConfig = Field(default_factory=ZeroConfig, description="ZeRO")
    bf16: Flag = Field(default_factory=Flag, description="bfloat16 compute")
    fp16: Fp16Config = Field(default_factory=Fp16Config, description="float16 compute")
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-batches per step")
    gradient_clipping: float | None = Field(1.0, gt=0, description="max global grad norm")
    activation_checkpointing: Flag = Field(default_factory=Flag,
                                           description="recompute block activations")
    tensor_parallel: TensorParallelConfig = Field(default_factory=TensorParallelConfig,
                                                  description="tensor parallelism")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig,
                                     description="pipeline parallelism")

    @model_validator(mode="after")
    def _coherent(self) -> DeepSpeedConfig:
        z, problems = self.zero_optimization, []
        if self.bf16.enabled and self.fp16.enabled:
            problems.append("bf16.enabled and fp16.enabled are exclusive: pick one")
        offload = z.offload_optimizer.device == "cpu" or z.offload_param.device == "cpu"
        if offload and z.stage < 2:
            problems.append("offload_optimizer/offload_param need zero_optimization.stage 2 or "
                            "3 (FSDP2 CPUOffloadPolicy)")
        if z.offload_param.device == "cpu" and z.stage != 3:
            problems.append("offload_param needs zero_optimization.stage 3")
        if self.pipeline.stages > 1 and (z.stage > 0 or self.tensor_parallel.size > 1):
            problems.append("pipeline.stages > 1 runs alone here: set zero_optimization.stage "
                            "0 and tensor_parallel.size 1")
        if self.tensor_parallel.size > 1 and z.stage == 1:
            problems.append("tensor_parallel with zero stage 1 is not supported: use stage 0 "
                            "(tensor parallel only) or 2/3 (FSDP2 over the data-parallel ranks)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16.enabled else "fp16" if self.fp16.enabled else "fp32"
