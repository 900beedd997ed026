"""Glue between token shards and the trainer: read the dataset manifest, size the model for it,
train on this rank, evaluate a model. Plain functions first; thin Prefect task wrappers at the
end. Every rank of a torchrun launch calls :func:`train` with its own ``Runtime``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmforge.model.checkpoint import META, CheckpointManager, load_model
from lmforge.model.config import ModelConfig
from lmforge.model.data import PackedSequences, PlanStream
from lmforge.model.distributed import Runtime, resolve_device
from lmforge.model.evaluate import evaluate_lm
from lmforge.model.objectives import ObjectiveConfig, SpecialTokens, denoise_lengths
from lmforge.model.train_config import LogMetrics, TrainConfig, TrainResult
from lmforge.model.trainer import Trainer
from lmforge.tasks.tokenizer import EOT, PAD, load_tokenizer


def load_dataset_manifest(tokens_dir: Path) -> dict[str, Any]:
    path = tokens_dir / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"no token dataset at {tokens_dir}: run `lmforge tokenize` first")
    return json.loads(path.read_text())


def sequences(tokens_dir: Path, manifest: dict[str, Any], split: str) -> PackedSequences:
    """The split's packed sequences: the mixture plan's document segments as one stream."""
    stream = PlanStream(tokens_dir, tokens_dir / manifest["plans"][split], manifest["dtype"])
    return PackedSequences(stream, manifest["seq_len"])


def special_token_ids(tokenizer_path: str) -> SpecialTokens:
    """Padding, end-of-document and the ``<extra_id_N>`` sentinels of the dataset's tokenizer."""
    tok = load_tokenizer(tokenizer_path)
    sentinels = []
    while (i := tok.token_to_id(f"<extra_id_{len(sentinels)}>")) is not None:
        sentinels.append(i)
    pad, eot = tok.token_to_id(PAD), tok.token_to_id(EOT)
    if pad is None or eot is None:
        raise ValueError(f"tokenizer {tokenizer_path} lacks {PAD} or {EOT}")
    return SpecialTokens(pad=pad, eot=eot, sentinels=tuple(sentinels))


def sized_model(model_cfg: ModelConfig, objective: ObjectiveConfig,
                manifest: dict[str, Any]) -> ModelConfig:
    """The model config with the tokenizer's vocabulary and a block long enough for the
    objective's sequences (span corruption lengthens a prefix decoder's input)."""
    seq = int(manifest["seq_len"])
    need = seq
    if objective.kind == "denoise":
        src, tgt = denoise_lengths(seq, objective)
        need = max(src, tgt) if model_cfg.arch == "encoder_decoder" else src + tgt
    return model_cfg.model_copy(update={"vocab_size": int(manifest["vocab_size"]),
                                        "block_size": max(model_cfg.block_size, need)})


def resumable_run_id(out_dir: Path) -> str | None:
    """The MLflow run of the newest complete checkpoint, which a resumed run reattaches to."""
    latest = CheckpointManager(out_dir / "checkpoints").latest()
    if latest is None:
        return None
    return json.loads((latest / META).read_text()).get("mlflow_run_id")


def train(tokens_dir: Path, model_cfg: ModelConfig, cfg: TrainConfig, out_dir: Path,
          runtime: Runtime, *, log_metrics: LogMetrics | None = None,
          run_id: str | None = None, on_step: Callable[[int], None] | None = None
          ) -> TrainResult:
    """This rank's share of training; continues from the newest checkpoint when asked to."""
    manifest = load_dataset_manifest(tokens_dir)
    sized = sized_model(model_cfg, cfg.objective, manifest)
    trainer = Trainer(sized, cfg, runtime, train=sequences(tokens_dir, manifest, "train"),
                      val=sequences(tokens_dir, manifest, "val"), out_dir=out_dir,
                      special=special_token_ids(manifest["tokenizer"]),
                      log_metrics=log_metrics, run_id=run_id)
    if cfg.resume == "auto":
        trainer.resume()
    return trainer.fit(on_step)


def evaluate(checkpoint: Path, tokens_dir: Path, *, batch_size: int,
             max_batches: int | None, device: str = "auto") -> dict[str, float]:
    """Held-out loss, perplexity and bits per byte of a consolidated model."""
    manifest = load_dataset_manifest(tokens_dir)
    dev = resolve_device(device)
    model = load_model(checkpoint).to(dev)
    return evaluate_lm(model, sequences(tokens_dir, manifest, "val"), batch_size=batch_size,
                       max_batches=max_batches, text_bytes=manifest["splits"]["val"]["bytes"],
                       device=str(dev), special=special_token_ids(manifest["tokenizer"]))
