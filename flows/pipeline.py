"""The pipeline flow: curate → tokenize → train → evaluate (→ fine-tune → evaluate, when the
config has a ``finetune:`` section), one MLflow parent run with a nested run per stage, Dask
for the shard work."""

from __future__ import annotations

from typing import Any

from lmforge.flows.config import RunConfig
from lmforge.flows.curate import curate_corpus
from lmforge.flows.evaluate import evaluate_model
from lmforge.flows.finetune import finetune_model
from lmforge.flows.tokens import tokenize_corpus
from lmforge.flows.tracking import tracked_run
from lmforge.flows.train import train_model
from lmforge.infra.cluster import dask_cluster
from prefect import flow
from prefect.artifacts import create_link_artifact
from prefect_dask import DaskTaskRunner


@flow(name="pipeline", flow_run_name="pipeline-{cfg.output.name}")
def run_pipeline(cfg: RunConfig, parent_run_id: str | None = None) -> dict[str, Any]:
    """Run every stage on ``cfg``; returns output paths, metrics and links."""
    with tracked_run("pipeline", cfg.tracking.experiment, parent_run_id,
                     tags={"config_hash": cfg.digest()}) as tracker:
        tracker.log_config(cfg)
        with dask_cluster(cfg.dask) as dask:
            tracker.describe()  # now with the dashboard's link
            if dask.dashboard_link:
                create_link_artifact(dask.dashboard_link, link_text="Dask dashboard",
                                     key="dask-dashboard", description="Live while the run's "
                                     "cluster is up")
            runner = DaskTaskRunner(address=dask.address)
            manifest = curate_corpus.with_options(task_runner=runner)(cfg, tracker.run_id)
            tokens = tokenize_corpus.with_options(task_runner=runner)(cfg, tracker.run_id)
            # training launches its own processes (torchrun); the idle workers wait for the
            # evaluation, which fans out over the model and its checkpoints
            checkpoint = train_model(cfg, tracker.run_id)
            metrics = evaluate_model.with_options(task_runner=runner)(cfg, None, tracker.run_id)
            tuned = finetune_model.with_options(task_runner=runner)(cfg, tracker.run_id) \
                if cfg.finetune is not None else None
        tracker.log_metrics(0, {f"eval/{k}": v for k, v in metrics.items()})
        if tuned is not None:
            tracker.log_metrics(0, {f"finetuned/{k}": v for k, v in tuned["metrics"].items()})
        tracker.log_artifact(manifest)
    return {"manifest": str(manifest), "tokens": str(tokens), "checkpoint": str(checkpoint),
            "metrics": metrics, "finetuned": tuned, "mlflow_run_id": tracker.run_id,
            "mlflow_url": tracker.url,
            "dask_dashboard": dask.dashboard_link}
