"""What one training run is asked to do (``TrainConfig``) and what it reports back
(``TrainResult``): the ``train:`` section of the pipeline config, validated."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lmforge.model.config import ModelConfig
from lmforge.model.distributed import LaunchConfig
from lmforge.model.objectives import ObjectiveConfig
from lmforge.model.parallel import DeepSpeedConfig, ParallelDims
from pydantic import BaseModel, ConfigDict, Field

LogMetrics = Callable[[int, Mapping[str, float]], None]


class TrainConfig(BaseModel):
    """Optimisation, objective, parallelism and checkpointing of one training run."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    steps: int = Field(200, ge=1, description="optimizer steps")
    batch_size: int = Field(16, ge=1, description="sequences per micro-batch per data-parallel "
                            "rank (DeepSpeed's train_micro_batch_size_per_gpu)")
    lr: float = Field(3e-3, gt=0, description="peak learning rate")
    min_lr: float = Field(3e-4, ge=0, description="learning rate at the end of the cosine decay")
    warmup_steps: int = Field(20, ge=0, description="linear warmup steps")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decay on matrices only")
    beta1: float = Field(0.9, gt=0, lt=1, description="AdamW beta1")
    beta2: float = Field(0.95, gt=0, lt=1, description="AdamW beta2")
    eval_every: int = Field(50, ge=1, description="evaluate every N steps (and at the end)")
    eval_batches: int = Field(8, ge=1, description="validation batches per rank per evaluation")
    log_every: int = Field(10, ge=1, description="log training metrics every N steps")
    checkpoint_every: int = Field(0, ge=0, description="sharded checkpoint every N steps "
                                  "(0 = only at the end)")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept (newest first)")
    resume: Literal["auto", "never"] = Field("auto", description="auto = continue from the "
                                             "newest complete checkpoint of the output folder")
    seed: int = Field(1337, description="seed of initialisation, data order and corruption")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda if present")
    peak_flops: float = Field(0.0, ge=0, description="peak FLOP/s of one device for MFU "
                              "(e.g. 989e12 for H100 bf16 dense); 0 = do not report MFU")
    compile: bool = Field(False, description="torch.compile each transformer block")
    register_as: str | None = Field(None, description="MLflow registered-model name of the "
                                    "final model (default <tracking.experiment>-<model.arch>)")
    alias: str = Field("candidate", description="alias set on the registered version")
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig,
                                       description="what the model learns")
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig,
                                       description="ZeRO, precision, accumulation, clipping")
    launch: LaunchConfig = Field(default_factory=LaunchConfig, description="processes/nodes")



@dataclass(frozen=True)
class TrainResult:
    steps: int
    tokens_seen: int
    train_loss: float
    val_loss: float
    checkpoint: Path
    model_path: Path
    seconds: float
    tokens_per_s: float
    resumed_from: int | None


def check_supported(model_cfg: ModelConfig, cfg: TrainConfig, dims: ParallelDims,
                    world: int) -> None:
    """Refuse, with what to change, the combinations the trainer cannot run."""
    arch, ds = model_cfg.arch, cfg.deepspeed
    kind = cfg.objective.kind
    if arch == "causal" and kind == "denoise":
        raise ValueError("objective 'denoise' needs model.arch 'prefix' or 'encoder_decoder' "
                         "(a causal decoder cannot read the corrupted input both ways)")
    if arch == "encoder_decoder" and kind == "lm":
        raise ValueError("model.arch 'encoder_decoder' trains with objective 'denoise' "
                         "(T5 span corruption)")
    if dims.pp_enabled:
        if arch != "causal" or kind != "lm":
            raise ValueError("pipeline.stages > 1 supports arch 'causal' with objective "
                             "'lm' (one tensor flows between stages)")
        if model_cfg.tie_weights:
            raise ValueError("pipeline.stages > 1 needs model.tie_weights: false (the "
                             "embedding and the output layer live on different stages)")
        if dims.pp != world:
            raise ValueError(f"pipeline.stages={dims.pp} must equal the number of "
                             f"ranks ({world}) here")
        if cfg.batch_size % ds.pipeline.microbatches:
            raise ValueError(f"batch_size={cfg.batch_size} must be divisible by "
                             f"pipeline.microbatches={ds.pipeline.microbatches}")
    if dims.tp_enabled and dims.dp_enabled and ds.zero_optimization.stage == 0:
        raise ValueError("tensor_parallel with several data-parallel groups needs "
                         "zero_optimization.stage 2 or 3 (FSDP2 over the dp dimension)")
    offload = "cpu" in (ds.zero_optimization.offload_optimizer.device,
                        ds.zero_optimization.offload_param.device)
    if offload and world == 1:
        raise ValueError("offload_* needs FSDP2, i.e. at least 2 ranks with "
                         "zero_optimization.stage 2 or 3")
    if ds.zero_optimization.stage >= 2 and world == 1:
        raise ValueError("zero_optimization.stage 2/3 shards over ranks: launch at least 2 "
                         "processes (train.launch.nproc_per_node) or use stage 0")
    if ds.precision == "fp16" and (ds.zero_optimization.stage >= 2
                                   or dims.pp_enabled):
        raise ValueError("fp16 loss scaling is not supported with FSDP2 or pipeline stages "
                         "here; use bf16 (no loss scaling needed)")
