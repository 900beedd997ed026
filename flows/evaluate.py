"""The evaluate flow: every target model (the exported model, and with
``evaluate.checkpoints: all`` each kept checkpoint) is one task on the flow's task runner
(Dask when the caller attaches it). Each target gets its own MLflow run nested under the
training run that produced it, with metrics at the checkpoint's step and per-example
predictions as artifacts; the flow's own ``evaluate`` run carries the final model's metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.flows.config import RunConfig
from lmforge.flows.progress import wait_all
from lmforge.flows.steps import evaluate_target_task
from lmforge.flows.tracking import tracked_run
from lmforge.model.atomic import write_text
from lmforge.tasks.evals.suite import Outcome, Target, list_targets
from lmforge.tasks.shards import Layout
from lmforge.tasks.training import resumable_run_id
from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact


def _targets(model_dir: Path, checkpoint: Path | None, which: str) -> list[Target]:
    if checkpoint is not None:
        if not checkpoint.exists():
            raise FileNotFoundError(f"no model at {checkpoint}")
        label = "final" if checkpoint.is_file() else checkpoint.name
        step = int(checkpoint.name.split("-")[1]) if checkpoint.is_dir() else 0
        return [Target(checkpoint, step, label)]
    targets = list_targets(model_dir, which)
    if not targets:
        raise FileNotFoundError(f"no model in {model_dir}: run `lmforge train` first")
    return targets


def _log_outcome(outcome: Outcome, cfg: RunConfig, training_run: str | None,
                 stage_run: str) -> str:
    """One MLflow run per evaluated model, nested under its training run."""
    target = outcome.target
    with tracked_run(f"eval-{target.label}", cfg.tracking.experiment,
                     parent_run_id=training_run or stage_run,
                     tags={"lmforge.checkpoint": target.label, "lmforge.step": str(target.step),
                           "lmforge.evaluate_run": stage_run}) as tracker:
        tracker.log_params({"model_path": str(target.path), "step": target.step,
                            "tasks": ",".join(t.name for t in cfg.evaluate.tasks) or "-"})
        if training_run and target.label == "final":  # link the registered model version
            versions = tracker.client.search_model_versions(f"run_id='{training_run}'")
            if versions:
                newest = max(versions, key=lambda v: int(v.version))
                tracker.set_tags({"lmforge.model_version": f"{newest.name}/{newest.version}"})
        tracker.log_metrics(target.step, {f"eval/{k}": v for k, v in outcome.metrics.items()})
        tracker.log_metrics(target.step, {"eval/seconds": outcome.seconds})
        tracker.log_artifact(outcome.folder / "metrics.json", "eval")
        for path in outcome.predictions.values():
            tracker.log_artifact(path, "predictions")
        return tracker.run_id


@flow(name="evaluate", flow_run_name="evaluate-{cfg.output.name}")
def evaluate_model(cfg: RunConfig, checkpoint: Path | None = None,
                   parent_run_id: str | None = None, training_run: str | None = None
                   ) -> dict[str, float]:
    """Evaluate the trained model(s); returns the final (or only) model's metrics.
    ``training_run``: the MLflow run that produced the model (default: the run of DIR/model's
    newest checkpoint), under which each evaluation's run is nested."""
    layout = Layout(cfg.output.resolve())
    model_dir = layout.root / "model"
    targets = _targets(model_dir, checkpoint, cfg.evaluate.checkpoints)
    out = layout.root / "eval"
    pii, tox = cfg.curate.pii, cfg.curate.toxicity  # the same scorers as curation
    with tracked_run("evaluate", cfg.tracking.experiment, parent_run_id) as stage:
        outcomes = wait_all(evaluate_target_task.map(
            targets, unmapped(layout.root / "tokens"), unmapped(cfg.evaluate), unmapped(out),
            unmapped(tox), unmapped(pii)), "evaluate")
        training_run = training_run or resumable_run_id(model_dir)
        runs = {o.target.label: _log_outcome(o, cfg, training_run, stage.run_id)
                for o in outcomes}
        main = next((o for o in outcomes if o.target.label == "final"),
                    max(outcomes, key=lambda o: o.target.step))
        stage.log_metrics(0, {f"eval/{k}": v for k, v in main.metrics.items()})
        stage.set_tags({"lmforge.eval_runs": json.dumps(runs)})
        summary = out / "metrics.json"  # the main model's metrics, flat
        summary.parent.mkdir(parents=True, exist_ok=True)
        write_text(summary, json.dumps({"checkpoint": str(main.target.path), **main.metrics},
                                      indent=1))
        stage.log_artifact(summary, "eval")
        ordered = sorted(outcomes, key=lambda o: o.target.step)
        create_table_artifact(
            [{"metric": k, **{o.target.label: round(o.metrics[k], 4) for o in ordered
                              if k in o.metrics}} for k in main.metrics],
            key="evaluate-metrics", description="Metrics per evaluated model (columns: "
            "checkpoints by step)")
    return main.metrics
