"""Glue between preference pairs (``tasks.preference``), a model and the trainer: the reward
model (Bradley-Terry) and DPO against a frozen copy of the starting model, run by the
pretraining trainer (ZeRO, mixed precision, DCP checkpoints, exact resume); and the held-out
pair metrics both are judged by."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lmforge.model.align import ReferenceCache, dpo_loss, dpo_margins, reward_loss, rewards
from lmforge.model.checkpoint import load_model
from lmforge.model.config import ModelConfig
from lmforge.model.data import Rows
from lmforge.model.distributed import Runtime
from lmforge.model.finetune import METHODS, MethodConfig, MethodSpec, apply_method, parse_method
from lmforge.model.objectives import pair_batch
from lmforge.model.ppo import PPOConfig
from lmforge.model.train_config import LogMetrics, TrainConfig, TrainResult
from lmforge.model.trainer import Trainer
from lmforge.tasks.finetuning import base_state, sft_manifest, under_train_defaults
from lmforge.tasks.sft import SFTDataConfig
from lmforge.tasks.training import special_token_ids
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

Objective = Literal["reward", "dpo"]
Stage = Literal["reward", "dpo", "ppo", "safety"]


def align(pairs_dir: Path, base_model: Path, objective: Objective, cfg: TrainConfig,
          out_dir: Path, runtime: Runtime, *, method: MethodConfig | None = None,
          beta: float = 0.1, log_metrics: LogMetrics | None = None, run_id: str | None = None,
          on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Train a reward model (the base with a scalar head, all weights trained) or DPO-tune the
    base (``method``: full or LoRA...) on the pairs of ``pairs_dir``."""
    manifest = sft_manifest(pairs_dir)
    state = base_state(base_model)
    model_cfg = ModelConfig.model_validate(state["model_config"])
    if manifest["arch"] != model_cfg.arch:
        raise ValueError(f"the pairs were prepared for arch {manifest['arch']!r}, the model is "
                         f"{model_cfg.arch!r}")
    spec = parse_method({"kind": "reward"}) if objective == "reward" else (
        method or parse_method({"kind": "full"}))
    loss = reward_loss if objective == "reward" else dpo_loss(
        ReferenceCache(load_model(base_model).to(runtime.device)), beta)

    def init(model: nn.Module) -> nn.Module:
        model.load_state_dict(state["model"])
        return apply_method(model, spec)

    cfg = cfg.model_copy(update={"objective": cfg.objective.model_copy(update={"kind": "sft"})})
    val = Rows(pairs_dir / "val.npy")
    trainer = Trainer(model_cfg, cfg, runtime, train=Rows(pairs_dir / "train.npy"),
                      val=val if len(val) else None, out_dir=out_dir,
                      special=special_token_ids(manifest["tokenizer"]),
                      log_metrics=log_metrics, run_id=run_id, init=init,
                      adapter=spec.model_dump(mode="json"),
                      base={"path": str(base_model), "objective": objective}, loss_fn=loss)
    if cfg.resume == "auto":
        trainer.resume()
    return trainer.fit(on_step)


@torch.no_grad()
def pair_metrics(model: nn.Module, rows: Rows, arch: str, objective: Objective, *,
                 reference: nn.Module | None = None, beta: float = 0.1,
                 batch_size: int = 16) -> dict[str, float]:
    """Held-out pair accuracy (chosen scored above rejected) and mean margin: of the rewards
    (reward model), or of DPO's implicit reward beta * (log-ratio chosen - rejected)."""
    model.eval()
    cache = ReferenceCache(reference) if reference is not None else None
    margins = []
    for start in range(0, len(rows), batch_size):
        window = torch.from_numpy(np.stack([rows[i] for i in range(
            start, min(len(rows), start + batch_size))]).astype(np.int64))
        batch = pair_batch(window, arch)
        if objective == "reward":
            r = rewards(model, batch)
            margins.append(r[:batch.pairs] - r[batch.pairs:])
        else:
            assert cache is not None, "DPO metrics need the reference model"
            margins.append(dpo_margins(model, batch, cache, beta))
    m = torch.cat(margins) if margins else torch.zeros(0)
    return {"pair_accuracy": float((m > 0).float().mean()) if len(m) else float("nan"),
            "margin": float(m.mean()) if len(m) else float("nan"), "pairs": float(len(m))}



# alignment's own defaults under whatever align.train sets (DPO's usual small rate)
ALIGN_TRAIN = {"steps": 100, "lr": 5e-4, "min_lr": 5e-5, "warmup_steps": 10,
               "weight_decay": 0.0, "eval_every": 50, "batch_size": 8, "alias": "aligned"}


class SafetyTuneConfig(BaseModel):
    """Safety tuning: supervised refusals mixed into SFT, and safe-context distillation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    refusals: tuple[str, ...] = Field(min_length=1, description="chat files answering harmful "
                                      "requests with refusals (OpenAI messages, ShareGPT...)")
    eval_prompts: str = Field(description="held-out harmful prompts (JSONL with 'prompt'): "
                              "the refusal rate before and after")
    distill_prompts: str | None = Field(None, description="prompts (JSONL with 'prompt') "
                                        "answered with the safety preamble, trained without it")
    instructions: tuple[str, ...] = Field((), description="instruction files mixed in, so "
                                          "helpfulness is kept (default: finetune.data.paths)")


class AlignConfig(BaseModel):
    """The ``align:`` section: preference pairs, the objective, the method and optimisation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    data: SFTDataConfig = Field(description="preference files (HH-RLHF chosen/rejected "
                                "transcripts or prompt/chosen/rejected triples)")
    objective: Stage = Field("dpo", description="dpo (tune the model against a frozen copy of "
                             "itself), reward (a reward model), ppo (RLHF against the reward "
                             "model) or safety (refusals + safe-context distillation)")
    reward_model: Path | None = Field(None, description="PPO: the reward model (default: "
                                      "DIR/align/reward/model.pt)")
    ppo: PPOConfig = Field(default_factory=PPOConfig, description="PPO's rollouts and losses")
    safety_weight: float = Field(0.0, ge=0, description="PPO: weight of the safety penalty "
                                 "(toxicity and PII scorers of curation) in the reward")
    safety: SafetyTuneConfig | None = Field(None, description="safety tuning's data")
    beta: float = Field(0.1, gt=0, description="DPO: strength of the KL constraint to the "
                        "reference")
    method: MethodSpec = Field(default_factory=METHODS["full"].config,  # type: ignore
                               description="DPO: full or a parameter-efficient method")
    base: Path | None = Field(None, description="model.pt to start from (default: "
                              "DIR/finetune/model.pt when it exists, else DIR/model/model.pt)")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(**ALIGN_TRAIN),
                               description="optimisation (train.alias: the registry alias of "
                               "the DPO model, default aligned)")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        return under_train_defaults(data, ALIGN_TRAIN)
