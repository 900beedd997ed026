"""Glue between token shards and the trainer: build loaders from the dataset manifest, train,
evaluate. Plain functions first; thin Prefect task wrappers at the end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from model.checkpoint import load_model
from model.config import ModelConfig
from model.data import PackedSequences, PlanStream, SequenceLoader
from model.evaluate import evaluate_lm
from model.gpt import GPT
from model.trainer import LogMetrics, TrainConfig, TrainResult, fit, resolve_device


def load_dataset_manifest(tokens_dir: Path) -> dict[str, Any]:
    path = tokens_dir / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"no token dataset at {tokens_dir}: run `lmforge tokenize` first")
    return json.loads(path.read_text())


def sequences(tokens_dir: Path, manifest: dict[str, Any], split: str) -> PackedSequences:
    """The split's packed sequences: the mixture plan's document segments as one stream."""
    stream = PlanStream(tokens_dir, tokens_dir / manifest["plans"][split], manifest["dtype"])
    return PackedSequences(stream, manifest["seq_len"])


def train(tokens_dir: Path, model_cfg: ModelConfig, cfg: TrainConfig, out_dir: Path,
          log_metrics: LogMetrics, on_step: Any = None) -> TrainResult:
    """Train a fresh model on the token dataset; returns the final checkpoint."""
    manifest = load_dataset_manifest(tokens_dir)
    model_cfg = model_cfg.model_copy(update={"vocab_size": manifest["vocab_size"],
                                             "block_size": max(model_cfg.block_size,
                                                               manifest["seq_len"])})
    torch.manual_seed(cfg.seed)
    model = GPT(model_cfg)
    loader = SequenceLoader(sequences(tokens_dir, manifest, "train"), cfg.batch_size,
                            seed=cfg.seed)
    return fit(model, model_cfg, loader, sequences(tokens_dir, manifest, "val"), cfg,
               out_dir=out_dir, log_metrics=log_metrics, on_step=on_step)


def evaluate(checkpoint: Path, tokens_dir: Path, *, batch_size: int,
             max_batches: int | None, device: str = "auto") -> dict[str, float]:
    """Held-out loss, perplexity and bits per byte of a checkpoint."""
    manifest = load_dataset_manifest(tokens_dir)
    dev = resolve_device(device)
    model = load_model(checkpoint).to(dev)
    return evaluate_lm(model, sequences(tokens_dir, manifest, "val"), batch_size=batch_size,
                       max_batches=max_batches, text_bytes=manifest["splits"]["val"]["bytes"],
                       device=str(dev))


@task(name="train-model", cache_policy=NO_CACHE)
def train_task(tokens_dir: Path, model_cfg: ModelConfig, cfg: TrainConfig, out_dir: Path,
               log_metrics: LogMetrics, on_step: Any = None) -> TrainResult:
    return train(tokens_dir, model_cfg, cfg, out_dir, log_metrics, on_step)


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_task(checkpoint: Path, tokens_dir: Path, batch_size: int,
                  max_batches: int | None) -> dict[str, float]:
    return evaluate(checkpoint, tokens_dir, batch_size=batch_size, max_batches=max_batches)
