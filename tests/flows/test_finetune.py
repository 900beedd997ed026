"""The finetune flow on torchrun: 2 gloo ranks with ZeRO-2, bf16 and activation checkpointing
fine-tune the pipeline's model with prefix tuning; rank 0 reports into the finetune run, which
registers the result @sft and evaluates it."""

from __future__ import annotations

import shutil

import pytest
import torch
from lmforge.flows.config import RunConfig
from lmforge.flows.launch import platform
from lmforge.model.checkpoint import load_model
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.e2e


def test_finetune_on_two_ranks_registers_and_evaluates(pipeline_run, tmp_path) -> None:
    from lmforge.flows.finetune import finetune_model
    from lmforge.flows.train import registered_name

    base_cfg = pipeline_run[0]
    out = tmp_path / "ft"
    for folder in ("tokens", "tokenizer", "model"):
        shutil.copytree(base_cfg.output / folder, out / folder)
    assert base_cfg.finetune is not None
    cfg = RunConfig.model_validate({
        **base_cfg.model_dump(), "output": out, "tracking": {"experiment": "finetune-flow"},
        "finetune": {**base_cfg.finetune.model_dump(), "method": {"kind": "prefix", "length": 4},
                     "train": {"steps": 4, "batch_size": 4, "log_every": 1, "eval_every": 4,
                               "eval_batches": 1, "checkpoint_every": 2, "lr": 0.01,
                               "launch": {"nproc_per_node": 2},
                               "deepspeed": {"zero_optimization": {"stage": 2},
                                             "bf16": {"enabled": True},
                                             "activation_checkpointing": {"enabled": True}}}}})
    with platform() as endpoints:
        result = finetune_model(cfg)
        client = MlflowClient(endpoints.mlflow_uri)
        run = client.get_run(result["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        metrics = run.data.metrics
        assert {"memory/rank0/params_mb", "memory/rank1/params_mb"} <= set(metrics)
        assert "val/loss" in metrics and "sft/response_loss" in metrics
        assert run.data.params["method.kind"] == "prefix"
        assert run.data.tags["lmforge.base_model"] == str(out / "model" / "model.pt")
        name = registered_name(cfg)
        assert client.get_model_version_by_alias(name, "sft").run_id == run.info.run_id
        assert result["metrics"]["eval/perplexity"] > 1  # the suite ran on the tuned model
    model = load_model(out / "finetune" / "model.pt")  # rebuilds the prefix modules
    assert any(getattr(m, "kv_prefix", None) is not None for m in model.modules())
    assert model(torch.zeros(1, 8, dtype=torch.long)).shape[-1] == model.cfg.vocab_size
    assert (out / "finetune" / "adapter.safetensors").stat().st_size > 0


@pytest.mark.parametrize("objective", ["dpo", "reward"])
def test_align_flows_on_the_pipeline_output(pipeline_run, tmp_path, objective) -> None:
    """DPO from the pipeline's fine-tuned model on 2 torchrun ranks with ZeRO-2: nested under
    its run, a positive held-out margin, registered @aligned, the suite (security probes
    included) on the result; the reward model (in process): held-out pair accuracy above
    chance, the model kept as an artifact."""
    from lmforge.flows.align import align_model
    from lmforge.flows.train import registered_name

    base_cfg = pipeline_run[0]
    out = tmp_path / objective
    for folder in ("tokens", "tokenizer", "model", "finetune"):
        shutil.copytree(base_cfg.output / folder, out / folder)
    data = {**base_cfg.model_dump(), "output": out, "tracking": {"experiment": "align-flow"}}
    if objective == "dpo":
        train = data["align"]["train"]
        data["align"] = {**data["align"], "train": {
            **train, "launch": {**train["launch"], "nproc_per_node": 2},
            "deepspeed": {"zero_optimization": {"stage": 2}}}}
    cfg = RunConfig.model_validate(data)
    with platform() as endpoints:
        result = align_model(cfg, objective)
        client = MlflowClient(endpoints.mlflow_uri)
        run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["lmforge.base_model"] == str(out / "finetune" / "model.pt")
    metrics = result["metrics"]
    assert metrics["pairs/pairs"] > 20
    if objective == "dpo":
        assert {"memory/rank0/params_mb", "memory/rank1/params_mb"} <= set(run.data.metrics)
        assert metrics["pairs/margin"] > 0 and metrics["pairs/pair_accuracy"] > 0.5, metrics
        assert "eval/security/toxicity/toxicity/expected_max" in metrics
        name = registered_name(cfg)
        assert result["registered"].startswith(f"{name}/") and result["registered"].endswith(
            "@aligned")
    else:
        assert metrics["pairs/pair_accuracy"] > 0.6, metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "reward-model")}
        assert artifacts == {"reward-model/model.pt"}
        assert load_model(out / "align" / "reward" / "model.pt").reward_head is not None


def test_ppo_and_safety_flows_register_aligned_and_report(pipeline_run, tmp_path) -> None:
    """PPO against a reward model trained first (with the safety term), then safety tuning
    (refusals + safe-context distillation): each run registers @aligned, logs its metrics and
    is evaluated with the suite."""
    from lmforge.flows.align import align_model

    base_cfg = pipeline_run[0]
    out = tmp_path / "rl"
    for folder in ("tokens", "tokenizer", "model", "finetune"):
        shutil.copytree(base_cfg.output / folder, out / folder)
    cfg = RunConfig.model_validate({**base_cfg.model_dump(), "output": out,
                                    "tracking": {"experiment": "rl-flow"}})
    with platform() as endpoints:
        align_model(cfg, "reward")
        rl = align_model(cfg, "ppo")
        safe = align_model(cfg, "safety")
        client = MlflowClient(endpoints.mlflow_uri)
        ppo_run, safety_run = (client.get_run(r["mlflow_run_id"]) for r in (rl, safe))
    for run, result in ((ppo_run, rl), (safety_run, safe)):
        assert run.info.status == "FINISHED" and result["registered"].endswith("@aligned")
        assert "eval/security/pii/leak_rate" in result["metrics"]
    history = [m.value for m in MlflowClient(endpoints.mlflow_uri).get_metric_history(
        ppo_run.info.run_id, "ppo/kl")]
    assert len(history) == cfg.align.ppo.iterations
    assert all(k < cfg.align.ppo.kl_target for k in history)
    assert 0 <= rl["metrics"]["ppo/win_rate"] <= 1
    assert ppo_run.data.params["ppo.safety_weight"] == "0.5"
    metrics = safe["metrics"]
    assert metrics["safety/refusal_rate"] >= metrics["safety/refusal_rate_before"]
    assert (out / "align" / "safety" / "distilled.jsonl").exists()  # refusals it gave, if any
    assert "safety.distilled" in safety_run.data.params
    assert load_model(out / "align" / "ppo" / "model.pt").cfg.vocab_size > 0
