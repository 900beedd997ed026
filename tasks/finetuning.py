"""Glue between fine-tuning rows (``tasks.sft``), a base model and the trainer: every rank of a
launch calls :func:`finetune` with its own ``Runtime``; the trainer runs as in pretraining (ZeRO,
mixed precision, activation checkpointing, DCP checkpoints, exact resume), on the base's
weights with the method's adapter."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lmforge.model.config import ModelConfig
from lmforge.model.data import Rows
from lmforge.model.distributed import Runtime
from lmforge.model.finetune import METHODS, MethodConfig, MethodSpec, apply_method
from lmforge.model.train_config import LogMetrics, TrainConfig, TrainResult
from lmforge.model.trainer import Trainer
from lmforge.tasks.sft import SFTDataConfig
from lmforge.tasks.training import special_token_ids
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn


def sft_manifest(sft_dir: Path) -> dict[str, Any]:
    path = sft_dir / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"no fine-tuning rows at {sft_dir}: prepare them first "
                                "(tasks.sft.prepare_sft, or `lmforge finetune`)")
    return json.loads(path.read_text())


def base_state(base_model: Path) -> dict[str, Any]:
    """The consolidated base model (``model.pt``); a model that already carries an adapter
    module (prefix, P-tuning) cannot be the base of another one."""
    if not base_model.is_file():
        raise FileNotFoundError(f"base model {base_model} does not exist: train one first "
                                "(`lmforge train`) or point finetune.base at a model.pt")
    state = torch.load(base_model, map_location="cpu", weights_only=True)
    if state.get("adapter"):
        raise ValueError(f"{base_model} carries a {state['adapter']['kind']} adapter; fine-tune "
                         "from a plain model (LoRA and full fine-tuning export one)")
    return state


def check_fits(model_cfg: ModelConfig, method: MethodConfig, manifest: dict[str, Any]) -> None:
    virtual = int(getattr(method, "length", 0)) if method.kind == "ptuning" else 0
    if manifest["arch"] != model_cfg.arch:
        raise ValueError(f"the rows were prepared for arch {manifest['arch']!r}, the base model "
                         f"is {model_cfg.arch!r}")
    if int(manifest["seq_len"]) + virtual > model_cfg.block_size:
        raise ValueError(f"finetune data.seq_len={manifest['seq_len']} (+ {virtual} virtual "
                         f"tokens) exceeds the base model's block_size={model_cfg.block_size}")
    if method.kind not in METHODS or method.kind == "reward":
        raise ValueError(f"finetune.method.kind {method.kind!r}: use one of "
                         f"{sorted(set(METHODS) - {'reward'})} (a reward model trains on "
                         "preference pairs, tasks.alignment)")


def finetune(sft_dir: Path, base_model: Path, method: MethodConfig, cfg: TrainConfig,
             out_dir: Path, runtime: Runtime, *, log_metrics: LogMetrics | None = None,
             run_id: str | None = None, base: Mapping[str, Any] | None = None,
             on_step: Callable[[int], None] | None = None) -> TrainResult:
    """This rank's share of fine-tuning ``base_model`` on the rows of ``sft_dir``; continues
    from the newest checkpoint of ``out_dir`` when ``cfg.resume`` is auto."""
    manifest = sft_manifest(sft_dir)
    state = base_state(base_model)
    model_cfg = ModelConfig.model_validate(state["model_config"])
    check_fits(model_cfg, method, manifest)

    def init(model: nn.Module) -> nn.Module:
        model.load_state_dict(state["model"])
        return apply_method(model, method)

    cfg = cfg.model_copy(update={"objective": cfg.objective.model_copy(update={"kind": "sft"})})
    val = Rows(sft_dir / "val.npy")
    trainer = Trainer(model_cfg, cfg, runtime, train=Rows(sft_dir / "train.npy"),
                      val=val if len(val) else None, out_dir=out_dir,
                      special=special_token_ids(manifest["tokenizer"]),
                      log_metrics=log_metrics, run_id=run_id, init=init,
                      adapter=method.model_dump(mode="json"),
                      base={"path": str(base_model), "step": state.get("step"), **(base or {})})
    if cfg.resume == "auto":
        trainer.resume()
    return trainer.fit(on_step)


@torch.no_grad()
def heldout_loss(model: nn.Module, rows: Rows, arch: str, *, batch_size: int = 16
                 ) -> dict[str, float]:
    """Mean loss per scored (response) token over the rows, and its count: how base and
    fine-tuned models compare on held-out chats."""
    from lmforge.model.objectives import forward_loss, sft_batch

    was_training = model.training
    model.eval()
    nats, count = 0.0, 0
    device = next(model.parameters()).device
    for start in range(0, len(rows), batch_size):
        window = torch.from_numpy(np.stack([rows[i] for i in range(
            start, min(len(rows), start + batch_size))]).astype(np.int64))
        batch = sft_batch(window, arch).to(device)
        nats += float(forward_loss(model, batch, reduction="sum"))
        count += batch.tokens
    model.train(was_training)
    return {"response_loss": nats / max(count, 1), "response_tokens": float(count)}


# fine-tuning's own defaults (fewer steps, a lower peak rate, no decay of adapters), under
# whatever the config's finetune.train sets
FINETUNE_TRAIN = {"steps": 100, "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 10,
                  "weight_decay": 0.0, "eval_every": 50, "batch_size": 8, "alias": "sft"}


class FinetuneConfig(BaseModel):
    """The ``finetune:`` section: instruction data, the method, and its own optimisation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    data: SFTDataConfig = Field(description="instruction/chat files and how they are packed")
    method: MethodSpec = Field(default_factory=METHODS["lora"].config,  # type: ignore
                               description=f"one of {sorted(METHODS)}, with its settings")
    base: Path | None = Field(None, description="model.pt to start from (default: the run's "
                              "own DIR/model/model.pt)")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(**FINETUNE_TRAIN),
                               description="optimisation, parallelism and checkpointing "
                               "(train.alias: the registry alias, default sft)")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        return under_train_defaults(data, FINETUNE_TRAIN)


def under_train_defaults(data: Any, defaults: dict[str, Any]) -> Any:
    """A section's raw ``train`` mapping over its stage's own defaults (what the config sets
    wins; what it leaves out is the stage's default, not pretraining's)."""
    if isinstance(data, dict) and isinstance(data.get("train"), dict):
        data = {**data, "train": {**defaults, **data["train"]}}
    return data
