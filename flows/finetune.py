"""The finetune flow (alias ``sft``): instruction files -> packed rows -> the configured method
(full, LoRA, prefix, P-tuning) on the base model through the trainer (in this process or on
torchrun ranks) -> the fine-tuned model registered as a new version of the base's registered
model with the alias ``sft`` -> the evaluation suite on it.

Its MLflow run is nested under the caller's run (the pipeline's) or, run alone, under the base
model's training run; either way it is tagged with the base run and model version and its
description links to them. A rerun resumes from the newest checkpoint of ``DIR/finetune``.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmforge.flows.config import RunConfig
from lmforge.flows.evaluate import evaluate_model
from lmforge.flows.progress import step_progress
from lmforge.flows.steps import finetune_task, prepare_sft_task
from lmforge.flows.tracking import system_metrics, tracked_run
from lmforge.flows.train import launch_task, registered_name
from lmforge.model.checkpoint import load_model
from lmforge.model.data import Rows
from lmforge.tasks.finetuning import base_state, heldout_loss
from lmforge.tasks.readers.base import expand_paths
from lmforge.tasks.shards import Layout
from lmforge.tasks.training import resumable_run_id
from prefect import flow


def base_model(cfg: RunConfig) -> Path:
    """The model fine-tuning starts from: ``finetune.base``, else the run's own export."""
    assert cfg.finetune is not None
    return (cfg.finetune.base or Layout(cfg.output.resolve()).root / "model" / "model.pt"
            ).resolve()


def base_info(base: Path) -> dict[str, Any]:
    """Where the base came from, for the adapter's metadata and the checkpoints: its path and
    the MLflow run that trained it (from its checkpoints, when they sit beside it)."""
    run = resumable_run_id(base.parent) if (base.parent / "checkpoints").is_dir() else None
    return {"path": str(base), "mlflow_run_id": run}


def data_files(patterns: Sequence[str], key: str) -> list[Path]:
    """The local files the config key's patterns match, sorted; none is an error naming it."""
    files = sorted({Path(url.removeprefix("file://")) for pattern in patterns
                    for url, _, _ in expand_paths(pattern, want_dirs=False)})
    if not files:
        raise FileNotFoundError(f"{key} {list(patterns)} match no file")
    return files


@flow(name="finetune", flow_run_name="finetune-{cfg.output.name}")
def finetune_model(cfg: RunConfig, parent_run_id: str | None = None) -> dict[str, Any]:
    """Returns the fine-tuned model's path, the registry version and base vs tuned metrics."""
    ft = cfg.finetune
    if ft is None:
        raise ValueError("the config has no finetune: section (data, method, train)")
    root = Layout(cfg.output.resolve()).root
    out_dir, base = root / "finetune", base_model(cfg)
    info = base_info(base)
    tokenizer = root / "tokenizer" / "tokenizer.json"
    arch = base_state(base)["model_config"]["arch"]
    manifest = prepare_sft_task(data_files(ft.data.paths, "finetune.data.paths"), tokenizer,
                                ft.data, out_dir / "sft", arch)
    if ft.train.resume == "never":
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    previous = resumable_run_id(out_dir) if ft.train.resume == "auto" else None
    name = ft.train.register_as or registered_name(cfg)
    tags = {"lmforge.base_model": str(base), "lmforge.finetune_method": ft.method.kind}
    if info["mlflow_run_id"]:
        tags["lmforge.base_run_id"] = info["mlflow_run_id"]
    with tracked_run("finetune", cfg.tracking.experiment,
                     parent_run_id or info["mlflow_run_id"], tags=tags,
                     resume_run_id=previous) as tracker:
        base_version = _base_version(tracker, info["mlflow_run_id"])
        if tracker.run_id != previous:
            tracker.log_params({f"method.{k}": v for k, v in ft.method.model_dump().items()})
            tracker.log_params({f"finetune.{k}": v for k, v in ft.train.model_dump(
                mode="json", exclude={"deepspeed", "launch", "objective"}).items()})
            tracker.log_params({f"sft.{k}": manifest[k] for k in (
                "records", "examples", "decontaminated", "too_long", "truncated")})
            tracker.log_artifact(out_dir / "sft" / "manifest.json", "sft")
        if base_version:
            tracker.set_tags({"lmforge.base_model_version": base_version})
        if ft.train.launch.world == 1:
            with system_metrics(tracker.run_id), \
                    step_progress(ft.train.steps, "finetune") as on_step:
                result = finetune_task(out_dir / "sft", base, ft.method, ft.train, out_dir,
                                       tracker.log_metrics, tracker.run_id, info, on_step)
        else:
            result = launch_task(cfg, tracker.run_id, out_dir, "finetune")
        val = Rows(out_dir / "sft" / "val.npy")
        compared = {}
        if len(val):
            compared = {"sft/base_response_loss": heldout_loss(load_model(base), val, arch)[
                "response_loss"], "sft/response_loss": heldout_loss(
                    load_model(result.model_path), val, arch)["response_loss"]}
            tracker.log_metrics(result.steps, compared)
        adapter = out_dir / "adapter.safetensors"
        if adapter.exists():
            tracker.log_artifact(adapter, "adapter")
        version = tracker.register_model(name, result.model_path, tokenizer, ft.train.alias,
                                         chat=True)
    metrics = evaluate_model(cfg, result.model_path, tracker.run_id, training_run=tracker.run_id)
    return {"model": str(result.model_path), "registered": f"{name}/{version}@{ft.train.alias}",
            "base_model_version": base_version, "mlflow_run_id": tracker.run_id,
            "mlflow_url": tracker.url,
            "metrics": {**compared, **{f"eval/{k}": v for k, v in metrics.items()}}}


def _base_version(tracker: Any, base_run: str | None) -> str | None:
    """``name/version`` of the registered model the base run produced, if any; the run's
    description links the base run."""
    if not base_run:
        return None
    versions = tracker.client.search_model_versions(f"run_id='{base_run}'")
    note = tracker.client.get_run(tracker.run_id).data.tags.get("mlflow.note.content", "")
    link = f"{tracker.url.rsplit('/runs/', 1)[0]}/runs/{base_run}"
    if link not in note:
        tracker.set_tags({"mlflow.note.content": f"{note}\n- Base model's run: [{base_run}]"
                                                 f"({link})".lstrip()})
    if not versions:
        return None
    newest = max(versions, key=lambda v: int(v.version))
    return f"{newest.name}/{newest.version}"
