"""The train flow: train the configured model on the token shards, in this process or on
``torchrun`` ranks, tracked in one MLflow run.

* one process (``train.launch`` at its default): the ``train-model`` task trains in-process;
* several processes or nodes: the ``launch-torchrun`` task starts ``torchrun`` with
  :mod:`flows.train_worker`, streams its output and fails (marking the MLflow run FAILED) when
  any rank fails. Rank 0 logs to the same MLflow run by id.

A rerun continues from the newest complete checkpoint and reattaches to its MLflow run; the
final model is logged and registered with an alias.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path

from lmforge.flows.config import RunConfig, save_config
from lmforge.flows.progress import step_progress
from lmforge.flows.steps import train_task
from lmforge.flows.tracking import system_metrics, tracked_run, tracking_uri
from lmforge.flows.train_worker import PROGRESS, STAGES
from lmforge.model.distributed import LaunchConfig
from lmforge.model.train_config import TrainResult
from lmforge.tasks.shards import Layout
from lmforge.tasks.training import load_dataset_manifest, resumable_run_id
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

log = logging.getLogger(__name__)



def torchrun_command(launch: LaunchConfig, worker_args: list[str]) -> list[str]:
    """``python -m torch.distributed.run`` for one node of the launch."""
    cmd = [sys.executable, "-m", "torch.distributed.run",
           f"--nproc-per-node={launch.nproc_per_node}", f"--nnodes={launch.nnodes}",
           f"--max-restarts={launch.max_restarts}"]
    host, _, port = launch.rdzv_endpoint.rpartition(":")
    if launch.nnodes == 1 and port == "0":
        cmd.append("--standalone")  # a free local port, no shared endpoint needed
    else:
        if port == "0":
            raise ValueError("train.launch.rdzv_endpoint needs a fixed host:port reachable "
                             "from every node when nnodes > 1")
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={host}:{port}",
                f"--rdzv-id={launch.rdzv_id}", f"--node-rank={launch.node_rank}"]
    return [*cmd, "-m", "lmforge.flows.train_worker", *worker_args]


@task(name="launch-torchrun", cache_policy=NO_CACHE)
def launch_task(cfg: RunConfig, run_id: str, out_dir: Path, stage: str = "train"
                ) -> TrainResult:
    """Run the ranks of this node under torchrun (``stage``: a ``train_worker.STAGES`` record,
    which section's ``train`` settings apply and what the ranks run); returns rank 0's
    result."""
    train_cfg = STAGES[stage].section(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    # one file of each per node: the nodes may share the output folder
    node = train_cfg.launch.node_rank
    config = save_config(cfg, out_dir / f"launch-config-node{node}.yaml")
    result = out_dir / f"result-node{node}.json"
    result.unlink(missing_ok=True)
    cmd = torchrun_command(train_cfg.launch, ["--config", str(config), "--run-id", run_id,
                                              "--result", str(result), "--stage", stage])
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(), "PYTHONUNBUFFERED": "1"}
    log.info("launching %s", " ".join(cmd))
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env) as proc, step_progress(train_cfg.steps, stage) as on_step:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(PROGRESS):
                on_step(int(line[len(PROGRESS):]))
                continue
            tail.append(line.rstrip())
            log.info("%s", line.rstrip())
        code = proc.wait()
    if code != 0 or not result.exists():
        raise RuntimeError(f"torchrun exited with code {code}; last output:\n"
                           + "\n".join(tail))
    data = json.loads(result.read_text())
    return TrainResult(**{**data, "checkpoint": Path(data["checkpoint"]),
                          "model_path": Path(data["model_path"])})


@flow(name="train", flow_run_name="train-{cfg.output.name}")
def train_model(cfg: RunConfig, parent_run_id: str | None = None) -> Path:
    """Returns the consolidated model (``model/model.pt``)."""
    layout = Layout(cfg.output.resolve())
    tokens = layout.root / "tokens"
    dataset = load_dataset_manifest(tokens)
    out_dir = layout.root / "model"
    if cfg.train.launch.node_rank > 0:
        # another node of a multi-node launch: its ranks join node 0's rendezvous; global
        # rank 0 (on node 0) reports into node 0's MLflow run and owns the output folder
        return launch_task(cfg, "", out_dir).model_path
    if cfg.train.resume == "never":
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    previous = resumable_run_id(out_dir) if cfg.train.resume == "auto" else None
    with tracked_run("train", cfg.tracking.experiment, parent_run_id,
                     resume_run_id=previous) as tracker:
        if tracker.run_id != previous:
            tracker.log_config(cfg.model)
            tracker.log_params({f"train.{k}": v for k, v in _flat(cfg.train.model_dump(
                mode="json")).items()})
            tracker.set_tags({"dataset.version": dataset["version"],
                              "dataset.tokens_train": str(dataset["splits"]["train"]["tokens"])})
            tracker.log_dataset("tokens", str(tokens), dataset["version"])
        else:
            tracker.set_tags({"lmforge.resumed": "true"})
        if cfg.train.launch.world == 1:
            with system_metrics(tracker.run_id), \
                    step_progress(cfg.train.steps, "train") as on_step:
                result = train_task(tokens, cfg.model, cfg.train, out_dir, tracker.log_metrics,
                                    tracker.run_id, on_step)
        else:
            result = launch_task(cfg, tracker.run_id, out_dir)
        tracker.log_metrics(result.steps, {"train/seconds": result.seconds,
                                           "train/final_loss": result.train_loss,
                                           "train/avg_tokens_per_s": result.tokens_per_s})
        tags = {"checkpoint.uri": result.checkpoint.as_uri(),
                "checkpoint.step": str(result.steps)}
        if result.resumed_from is not None:
            tags["lmforge.resumed_from_step"] = str(result.resumed_from)
        tracker.set_tags(tags)
        name = registered_name(cfg)
        registered = tracker.client.get_run(tracker.run_id).data.tags.get(
            "lmforge.registered_model")
        if result.resumed_from != result.steps or registered is None:  # something new
            tracker.register_model(name, result.model_path, Path(dataset["tokenizer"]),
                                   cfg.train.alias)
    return result.model_path


def registered_name(cfg: RunConfig) -> str:
    """The registered model a run's final model becomes a version of: ``train.register_as``,
    else ``<experiment>-<arch>`` (reruns of one config, wherever they write, are versions of
    one model; a prefix LM and a causal LM of one experiment are not)."""
    return cfg.train.register_as or f"{cfg.tracking.experiment}-{cfg.model.arch}"


def _flat(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out
