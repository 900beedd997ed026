"""The train flow launching torchrun: 2 gloo ranks, rank 0 reporting into one MLflow run that a
rerun reattaches to; a crashing launch marks its run FAILED."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from lmforge.flows.config import RunConfig
from lmforge.flows.launch import platform
from lmforge.flows.train import torchrun_command
from lmforge.model.checkpoint import load_model
from lmforge.model.distributed import LaunchConfig
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.e2e


def config(base: RunConfig, out: Path, **train) -> RunConfig:
    return RunConfig.model_validate({
        **base.model_dump(), "output": out, "tracking": {"experiment": "train-flow"},
        "train": {**base.train.model_dump(), "steps": 6, "batch_size": 4, "log_every": 1,
                  "eval_every": 3, "eval_batches": 1, "checkpoint_every": 3,
                  "launch": {"nproc_per_node": 2},
                  "deepspeed": {"zero_optimization": {"stage": 2}}, **train}})


def tokens_copy(pipeline_run, out: Path) -> None:
    src = pipeline_run[0].output
    shutil.copytree(src / "tokens", out / "tokens")


def runs(client: MlflowClient, out: Path) -> list:
    experiment = client.get_experiment_by_name("train-flow")
    return [r for r in client.search_runs([experiment.experiment_id])
            if r.data.tags.get("lmforge.stage") == "train"
            and r.data.params.get("train.launch.nproc_per_node") == "2"
            and r.data.tags.get("checkpoint.uri", "").startswith(out.as_uri())]


def test_torchrun_launch_reports_and_resumes_into_one_run(pipeline_run, tmp_path) -> None:
    from lmforge.flows.train import registered_name, train_model

    out = tmp_path / "dist"
    tokens_copy(pipeline_run, out)
    with platform() as endpoints:
        client = MlflowClient(endpoints.mlflow_uri)
        model_path = train_model(config(pipeline_run[0], out))
        first = runs(client, out)
        assert len(first) == 1 and first[0].info.status == "FINISHED"
        run_id = first[0].info.run_id
        metrics = first[0].data.metrics
        assert {"memory/rank0/optimizer_mb", "memory/rank1/optimizer_mb"} <= set(metrics)
        assert metrics["train/tokens_per_s"] > 0 and "val/loss" in metrics
        model = load_model(model_path)
        assert model(torch.zeros(1, 8, dtype=torch.long)).shape[-1] == model.cfg.vocab_size

        # a longer rerun continues from step 6 in the same MLflow run
        train_model(config(pipeline_run[0], out, steps=8))
        again = runs(client, out)
        assert [r.info.run_id for r in again] == [run_id]
        assert again[0].data.tags["lmforge.resumed_from_step"] == "6"
        steps = [m.step for m in client.get_metric_history(run_id, "train/loss")]
        assert steps == [1, 2, 3, 4, 5, 6, 7, 8]
        name = registered_name(config(pipeline_run[0], out))
        versions = client.search_model_versions(f"name='{name}'")
        ours = [v for v in versions if v.run_id == run_id]
        assert len(ours) == 2  # one registered version per finished training, of one model
        assert client.get_model_version_by_alias(name, "candidate").version \
            == max(v.version for v in versions)


def test_a_crashing_launch_marks_the_run_failed(pipeline_run, tmp_path) -> None:
    from lmforge.flows.train import train_model

    out = tmp_path / "crash"
    tokens_copy(pipeline_run, out)
    with platform() as endpoints:
        state = train_model(config(pipeline_run[0], out, device="cuda"), return_state=True)
        assert state.is_failed()
        assert "torchrun exited with code" in str(state.result(raise_on_failure=False))
        client = MlflowClient(endpoints.mlflow_uri)
        experiment = client.get_experiment_by_name("train-flow")
        crashed = [r for r in client.search_runs([experiment.experiment_id])
                   if r.data.params.get("train.device") == "cuda"]
        assert [r.info.status for r in crashed] == ["FAILED"]


def test_torchrun_command_for_one_and_many_nodes() -> None:
    one = torchrun_command(LaunchConfig(nproc_per_node=4), ["--x"])
    assert "--standalone" in one and "--nproc-per-node=4" in one
    assert one[-3:] == ["-m", "lmforge.flows.train_worker", "--x"]
    many = torchrun_command(LaunchConfig(nproc_per_node=8, nnodes=2, node_rank=1,
                                         rdzv_endpoint="10.0.0.1:29500", rdzv_id="job"), [])
    assert {"--nnodes=2", "--node-rank=1", "--rdzv-endpoint=10.0.0.1:29500",
            "--rdzv-id=job", "--rdzv-backend=c10d"} <= set(many)
    with pytest.raises(ValueError, match="fixed host:port"):
        torchrun_command(LaunchConfig(nnodes=2), [])


def test_every_trainer_stage_can_be_launched_and_every_align_objective_has_a_flow() -> None:
    """The align objectives the config accepts are exactly the registered stages, and every
    stage that runs through the trainer has a torchrun worker record reading its section."""
    from typing import get_args

    from lmforge.flows.align import STAGES
    from lmforge.flows.config import load_config
    from lmforge.flows.train_worker import STAGES as WORKER
    from lmforge.infra.settings import SAMPLE_DIR
    from lmforge.tasks.alignment import Stage

    assert set(STAGES) == set(get_args(Stage))
    trainer = {name for name, stage in STAGES.items() if stage.trainer}
    assert trainer == {"dpo", "reward", "safety"} and trainer <= set(WORKER)
    assert {"train", "finetune"} <= set(WORKER)
    cfg = load_config(SAMPLE_DIR / "pipeline.yaml")
    assert cfg.align is not None and cfg.finetune is not None
    sections = {name: WORKER[name].section(cfg) for name in WORKER}
    assert sections["dpo"] is cfg.align.train and sections["finetune"] is cfg.finetune.train
    assert sections["train"] is cfg.train
    with pytest.raises(ValueError, match="no align: section"):
        WORKER["dpo"].section(cfg.model_copy(update={"align": None}))
