"""The evaluate flow: held-out perplexity and bits per byte of a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.config import RunConfig
from flows.tracking import tracked_run
from tasks.shards import Layout
from tasks.training import evaluate_task


@flow(name="evaluate", flow_run_name="evaluate-{cfg.output.name}")
def evaluate_model(cfg: RunConfig, checkpoint: Path | None = None,
                   parent_run_id: str | None = None) -> dict[str, float]:
    layout = Layout(cfg.output.resolve())
    checkpoint = checkpoint or layout.root / "model" / "model.pt"
    if not checkpoint.exists():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}: run `lmforge train` first")
    with tracked_run("evaluate", cfg.tracking.experiment, parent_run_id) as tracker:
        metrics = evaluate_task(checkpoint, layout.root / "tokens", cfg.evaluate.batch_size,
                                cfg.evaluate.max_batches)
        tracker.log_metrics(0, {f"eval/{k}": v for k, v in metrics.items()})
        out = layout.root / "eval" / "metrics.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"checkpoint": str(checkpoint), **metrics}, indent=1))
        tracker.log_artifact(out, "eval")
        create_table_artifact([{"metric": k, "value": round(v, 4)} for k, v in metrics.items()],
                              key="evaluate-metrics", description="Held-out metrics")
    return metrics
