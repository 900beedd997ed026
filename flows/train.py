"""The train flow: train the configured model on the token shards, tracked in MLflow."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.config import RunConfig
from flows.progress import step_progress
from flows.tracking import tracked_run
from tasks.shards import Layout
from tasks.training import load_dataset_manifest, train_task


@flow(name="train", flow_run_name="train-{cfg.output.name}")
def train_model(cfg: RunConfig, parent_run_id: str | None = None) -> Path:
    """Returns the final checkpoint path."""
    layout = Layout(cfg.output.resolve())
    tokens = layout.root / "tokens"
    dataset = load_dataset_manifest(tokens)
    with tracked_run("train", cfg.tracking.experiment, parent_run_id) as tracker:
        tracker.log_config(cfg.model)
        tracker.log_params({f"train.{k}": v for k, v in cfg.train.model_dump().items()})
        tracker.set_tags({"dataset.version": dataset["version"],
                          "dataset.tokens_train": str(dataset["splits"]["train"]["tokens"])})
        tracker.log_dataset("tokens", str(tokens), dataset["version"])
        with step_progress(cfg.train.steps, "train") as on_step:
            result = train_task(tokens, cfg.model, cfg.train, layout.root / "model",
                                tracker.log_metrics, on_step)
        tracker.log_metrics(cfg.train.steps, {"train/seconds": result.seconds,
                                              "train/final_loss": result.train_loss})
        tracker.log_artifact(result.checkpoint, "model")
    return result.checkpoint
