"""The alignment flows on preference pairs: ``dpo`` (the model tuned with DPO against a frozen
copy of itself, registered as the next version with the alias ``aligned`` and evaluated by the
whole suite, security probes included) and ``reward-model`` (a reward model: the model with a
scalar head trained on the pairs; its held-out pair accuracy and margin are logged and the
model is kept as an artifact of the run).

Each MLflow run is nested under the caller's run, or under the run of the model it starts from,
and tagged with that run and its registry version. A rerun resumes from the newest checkpoint
of ``DIR/align/<objective>``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lmforge.flows.config import RunConfig
from lmforge.flows.evaluate import evaluate_model
from lmforge.flows.finetune import _base_version, base_info
from lmforge.flows.progress import step_progress
from lmforge.flows.steps import align_task, prepare_pairs_task
from lmforge.flows.tracking import system_metrics, tracked_run
from lmforge.flows.train import registered_name
from lmforge.model.checkpoint import load_model
from lmforge.model.data import Rows
from lmforge.tasks.alignment import AlignConfig, Objective, pair_metrics
from lmforge.tasks.finetuning import base_state
from lmforge.tasks.readers.base import expand_paths
from lmforge.tasks.shards import Layout
from lmforge.tasks.training import resumable_run_id
from prefect import flow


def start_model(cfg: RunConfig) -> Path:
    """``align.base``, else the fine-tuned model when there is one, else the trained one."""
    assert cfg.align is not None
    root = Layout(cfg.output.resolve()).root
    tuned = root / "finetune" / "model.pt"
    return (cfg.align.base or (tuned if tuned.is_file() else root / "model" / "model.pt")
            ).resolve()


def _files(section: AlignConfig) -> list[Path]:
    files = sorted({Path(url.removeprefix("file://")) for pattern in section.data.paths
                    for url, _, _ in expand_paths(pattern, want_dirs=False)})
    if not files:
        raise FileNotFoundError(f"align.data.paths {list(section.data.paths)} match no file")
    return files


@flow(name="align", flow_run_name="align-{cfg.output.name}")
def align_model(cfg: RunConfig, objective: Objective | None = None,
                parent_run_id: str | None = None) -> dict[str, Any]:
    """DPO or a reward model (``objective``, default ``align.objective``); returns the model's
    path, its registry version (DPO) and the held-out pair metrics."""
    section = cfg.align
    if section is None:
        raise ValueError("the config has no align: section (data, objective, method, train)")
    objective = objective or section.objective
    flow_fn = dpo_flow if objective == "dpo" else reward_model_flow
    return flow_fn(cfg, parent_run_id)


def _run(cfg: RunConfig, objective: Objective, parent_run_id: str | None) -> dict[str, Any]:
    section = cfg.align
    assert section is not None
    if section.train.launch.world > 1:
        raise ValueError("align runs in one process here (align.train.launch: 1 process); "
                         "the trainer itself would take torchrun, the launcher does not yet")
    root = Layout(cfg.output.resolve()).root
    out_dir, base = root / "align" / objective, start_model(cfg)
    info = base_info(base)
    tokenizer = root / "tokenizer" / "tokenizer.json"
    arch = base_state(base)["model_config"]["arch"]
    manifest = prepare_pairs_task(_files(section), tokenizer, section.data, out_dir / "pairs",
                                  arch)
    if section.train.resume == "never":
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    previous = resumable_run_id(out_dir) if section.train.resume == "auto" else None
    stage = "dpo" if objective == "dpo" else "reward-model"
    tags = {"lmforge.base_model": str(base), "lmforge.align_objective": objective}
    if info["mlflow_run_id"]:
        tags["lmforge.base_run_id"] = info["mlflow_run_id"]
    with tracked_run(stage, cfg.tracking.experiment, parent_run_id or info["mlflow_run_id"],
                     tags=tags, resume_run_id=previous) as tracker:
        base_version = _base_version(tracker, info["mlflow_run_id"])
        if base_version:
            tracker.set_tags({"lmforge.base_model_version": base_version})
        if tracker.run_id != previous:
            tracker.log_params({"align.objective": objective, "align.beta": section.beta,
                                **{f"method.{k}": v for k, v in section.method.model_dump()
                                   .items()},
                                **{f"pairs.{k}": manifest[k] for k in (
                                    "records", "pairs", "decontaminated", "too_long")}})
            tracker.log_artifact(out_dir / "pairs" / "manifest.json", "pairs")
        with system_metrics(tracker.run_id), step_progress(section.train.steps, stage) as on_step:
            result = align_task(out_dir / "pairs", base, objective, section.train, out_dir,
                                section.method, section.beta, tracker.log_metrics,
                                tracker.run_id, on_step)
        val = Rows(out_dir / "pairs" / "val.npy")
        metrics: dict[str, float] = {}
        if len(val):
            reference = load_model(base) if objective == "dpo" else None
            got = pair_metrics(load_model(result.model_path), val, arch, objective,
                               reference=reference, beta=section.beta)
            metrics = {f"pairs/{k}": v for k, v in got.items()}
            tracker.log_metrics(result.steps, metrics)
        registered = None
        if objective == "dpo":
            name = section.train.register_as or registered_name(cfg)
            version = tracker.register_model(name, result.model_path, tokenizer,
                                             section.train.alias, chat=True)
            registered = f"{name}/{version}@{section.train.alias}"
        else:
            tracker.log_artifact(result.model_path, "reward-model")
    if objective == "dpo":  # the suite (security probes included) on the aligned model
        evaluated = evaluate_model(cfg, result.model_path, tracker.run_id,
                                   training_run=tracker.run_id)
        metrics |= {f"eval/{k}": v for k, v in evaluated.items()}
    return {"model": str(result.model_path), "registered": registered,
            "base_model_version": base_version, "mlflow_run_id": tracker.run_id,
            "mlflow_url": tracker.url, "metrics": metrics}


@flow(name="dpo", flow_run_name="dpo-{cfg.output.name}")
def dpo_flow(cfg: RunConfig, parent_run_id: str | None = None) -> dict[str, Any]:
    return _run(cfg, "dpo", parent_run_id)


@flow(name="reward-model", flow_run_name="reward-model-{cfg.output.name}")
def reward_model_flow(cfg: RunConfig, parent_run_id: str | None = None) -> dict[str, Any]:
    return _run(cfg, "reward", parent_run_id)
