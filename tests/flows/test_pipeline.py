"""One end-to-end run of the real pipeline flow: real Prefect server (API checked for the run
and its artifacts), real Dask LocalCluster, real MLflow tracking server (runs, params, metrics,
artifacts checked through its API), on the embedded sample corpus in its real formats."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.e2e


def test_outputs_exist_and_follow_the_contract(pipeline_run) -> None:
    cfg, result, _, _ = pipeline_run
    out = cfg.output
    curated = ds.dataset(out / "curated", format="parquet").to_table()
    assert curated.num_rows > 100
    assert {"id", "source", "text"} <= set(curated.column_names)
    manifest = json.loads(Path(result["manifest"]).read_text())
    assert manifest["config_hash"] == cfg.digest()
    assert manifest["outputs"]["curated"]["documents"] == curated.num_rows
    assert Path(result["checkpoint"]).exists()
    assert math.isfinite(result["metrics"]["perplexity"])
    assert result["metrics"]["bits_per_byte"] > 0
    assert (out / "tokenizer" / "tokenizer.json").exists()


def test_prefect_api_has_the_runs_and_artifacts(pipeline_run) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _, _, flow_run_id, endpoints = pipeline_run
    assert not endpoints.prefect_temporary  # the session's real server was used
    with temporary_settings(updates={PREFECT_API_URL: endpoints.prefect_api}), \
            get_client(sync_client=True) as c:
        run = c.read_flow_run(flow_run_id)
        assert run.state.is_completed()
        children = c.read_flow_runs()
        names = {r.name.split("-")[0] for r in children if r.parent_task_run_id}
        assert {"curate", "tokenize", "train", "evaluate"} <= names
        keys = {a.key for a in c.read_artifacts() if a.key}
        assert {"curate-counts", "mlflow-pipeline", "mlflow-curate", "evaluate-metrics",
                "curate-report", "progress-filter", "progress-evaluate"} <= keys
        own = c.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
        assert any(a.key == "mlflow-pipeline" for a in own)


def test_mlflow_has_parent_and_nested_stage_runs(pipeline_run) -> None:
    cfg, result, flow_run_id, endpoints = pipeline_run
    assert endpoints.mlflow_uri.startswith("http://127.0.0.1")  # the tracking server
    client = MlflowClient(endpoints.mlflow_uri)
    parent = client.get_run(result["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["prefect.flow_run_id"] == str(flow_run_id)
    assert parent.data.params["train.steps"] == "40"
    assert "curate.quality.books.gopher.min_words" in parent.data.params
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_name = {r.data.tags["mlflow.runName"]: r for r in children}
    assert set(by_name) == {"curate", "tokenize", "train", "evaluate"}
    assert by_name["curate"].data.metrics["toxicity.docs_out"] > 100
    history = client.get_metric_history(by_name["train"].info.run_id, "train/loss")
    assert len(history) >= 4 and history[-1].value < history[0].value
    assert by_name["evaluate"].data.metrics["eval/perplexity"] == pytest.approx(
        result["metrics"]["perplexity"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "manifest.json" in artifacts
    assert {a.path for a in client.list_artifacts(by_name["train"].info.run_id, "model")} == {
        "model/model.pt", "model/tokenizer.json"}
    version = client.get_model_version_by_alias(f"lmforge-{cfg.output.name}", "candidate")
    assert version.run_id == by_name["train"].info.run_id
    system = [k for k in by_name["train"].data.metrics if k.startswith("system/")]
    assert system, "MLflow system metrics were not recorded"


def test_evaluations_are_nested_under_the_training_run(pipeline_run) -> None:
    """The model and its checkpoint, each evaluated on Dask, each a run under the train run
    with per-example predictions; held-out metrics per source; every configured task."""
    cfg, result, _, endpoints = pipeline_run
    client = MlflowClient(endpoints.mlflow_uri)
    parent = client.get_run(result["mlflow_run_id"])
    [train] = client.search_runs([parent.info.experiment_id], filter_string=(
        f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.mlflow.runName = 'train'"))
    evals = client.search_runs([parent.info.experiment_id], filter_string=(
        f"tags.mlflow.parentRunId = '{train.info.run_id}'"))
    by_name = {r.data.tags["mlflow.runName"]: r for r in evals}
    assert set(by_name) == {"eval-final", "eval-step-0000040"}
    candidate = client.get_model_version_by_alias(f"lmforge-{cfg.output.name}", "candidate")
    assert by_name["eval-final"].data.tags["lmforge.model_version"] == \
        f"{candidate.name}/{candidate.version}"  # linked to the registered model version
    metrics = by_name["eval-final"].data.metrics
    for task in cfg.evaluate.tasks:
        assert any(k.startswith(f"eval/{task.name}/") for k in metrics), task.name
    for key in ("eval/wikipedia/bits_per_byte", "eval/reddit/perplexity",
                "eval/security/memorisation/exact_rate", "eval/security/pii/leak_rate",
                "eval/security/toxicity/toxicity/expected_max",
                "eval/security/bias/stereotype_rate", "eval/summaries/rougeL"):
        assert key in metrics, key
    # the final model is the step-40 checkpoint, exported: same held-out loss
    assert metrics["eval/loss"] == pytest.approx(
        by_name["eval-step-0000040"].data.metrics["eval/loss"], rel=1e-4)
    predictions = {a.path for a in client.list_artifacts(by_name["eval-final"].info.run_id,
                                                         "predictions")}
    assert {"predictions/hellaswag.jsonl", "predictions/security_memorisation.jsonl"} <= predictions
    rows = (cfg.output / "eval" / "final" / "predictions" / "piqa.jsonl").read_text().splitlines()
    assert len(rows) == 6 and {"gold", "pred", "logprobs"} <= set(json.loads(rows[0]))
