"""One end-to-end run of the real pipeline flow: real Prefect server (API checked for the run
and its artifacts), real Dask LocalCluster, real MLflow tracking server (runs, params, metrics,
artifacts checked through its API), on the embedded sample corpus in its real formats."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from lmforge.flows.train import registered_name
from lmforge.tasks.schema import SCHEMA_VERSION
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
    assert manifest["schema_version"] == SCHEMA_VERSION


def test_curated_output_opens_in_datasets_and_duckdb(pipeline_run) -> None:
    """What a user does next: HF ``datasets`` and DuckDB on DIR/curated as it is."""
    import datasets
    import duckdb

    cfg, _, _, _ = pipeline_run
    curated = cfg.output / "curated"
    rows = datasets.load_dataset("parquet", data_dir=str(curated), split="train")
    assert len(rows) == ds.dataset(curated, format="parquet").count_rows()
    assert any(s["name"] == "language_score" for s in rows[0]["scores"])
    per_source = dict(duckdb.sql(
        f"SELECT source, count(*) FROM read_parquet('{curated}/*.parquet') GROUP BY source"
    ).fetchall())
    assert sum(per_source.values()) == len(rows) and set(per_source) >= {"wikipedia", "books"}


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
    by_name = {r.data.tags["lmforge.stage"]: r for r in children}
    assert set(by_name) == {"curate", "tokenize", "train", "evaluate", "finetune"}
    # named as in Prefect; the description links back to the flow run and the dashboard
    assert parent.info.run_name == f"pipeline-{cfg.output.name}"
    assert {r.info.run_name for r in children} == {
        f"{stage}-{cfg.output.name}" for stage in by_name}
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    note = parent.data.tags["mlflow.note.content"]
    assert f"]({endpoints.prefect_ui}/runs/flow-run/{flow_run_id})" in note
    assert "Dask dashboard" in note
    assert by_name["curate"].data.metrics["toxicity.docs_out"] > 100
    history = client.get_metric_history(by_name["train"].info.run_id, "train/loss")
    assert len(history) >= 4 and history[-1].value < history[0].value
    assert by_name["evaluate"].data.metrics["eval/perplexity"] == pytest.approx(
        result["metrics"]["perplexity"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "manifest.json" in artifacts
    version = client.get_model_version_by_alias(registered_name(cfg), "candidate")
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
        f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.`lmforge.stage` = 'train'"))
    evals = client.search_runs([parent.info.experiment_id], filter_string=(
        f"tags.mlflow.parentRunId = '{train.info.run_id}'"))
    by_name = {r.data.tags["mlflow.runName"]: r for r in evals}
    assert set(by_name) == {"eval-final", "eval-step-0000040"}
    candidate = client.get_model_version_by_alias(registered_name(cfg), "candidate")
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


def test_registered_model_is_an_mlflow_model_that_generates(pipeline_run, monkeypatch) -> None:
    """``models:/NAME@candidate`` loads with ``mlflow.pyfunc`` and writes text; the run's
    logged model is the same one."""
    import mlflow

    cfg, result, _, endpoints = pipeline_run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", endpoints.mlflow_uri)  # no global URI set
    loaded = mlflow.pyfunc.load_model(f"models:/{registered_name(cfg)}@candidate")
    prompts = ["The history of", "A function that"]
    out = loaded.predict(prompts, params={"max_new_tokens": 8})
    assert len(out) == 2 and all(isinstance(t, str) and t for t in out)
    assert loaded.predict(prompts, params={"max_new_tokens": 8}) == out  # greedy
    assert [t.name for t in loaded.metadata.get_input_schema().input_types()] == ["string"]
    client = MlflowClient(endpoints.mlflow_uri)
    parent = client.get_run(result["mlflow_run_id"])
    [train] = client.search_runs([parent.info.experiment_id], filter_string=(
        f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.`lmforge.stage` = 'train'"))
    logged = client.search_logged_models([train.info.experiment_id])
    assert any(m.source_run_id == train.info.run_id for m in logged)


def test_finetune_is_nested_linked_registered_as_sft_and_generates(pipeline_run,
                                                                    monkeypatch) -> None:
    """The sample config fine-tunes the trained model (LoRA on the sample instruction set):
    its run sits under the pipeline's, names the base run and registry version, lowers the
    held-out response loss, logs the adapter, and is the next version of the same registered
    model with the alias sft, which loads with mlflow.pyfunc and generates."""
    import mlflow

    cfg, result, _, endpoints = pipeline_run
    client = MlflowClient(endpoints.mlflow_uri)
    parent = client.get_run(result["mlflow_run_id"])
    stages = {r.data.tags["lmforge.stage"]: r for r in client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = "
        f"'{parent.info.run_id}'")}
    tuned, train = stages["finetune"], stages["train"]
    candidate = client.get_model_version_by_alias(registered_name(cfg), "candidate")
    sft = client.get_model_version_by_alias(registered_name(cfg), "sft")
    assert tuned.data.tags["lmforge.base_run_id"] == train.info.run_id
    assert tuned.data.tags["lmforge.base_model_version"] == \
        f"{candidate.name}/{candidate.version}"
    assert sft.run_id == tuned.info.run_id and int(sft.version) > int(candidate.version)
    assert f"/runs/{train.info.run_id})" in tuned.data.tags["mlflow.note.content"]
    metrics = tuned.data.metrics
    assert metrics["sft/response_loss"] < metrics["sft/base_response_loss"]
    assert tuned.data.params["method.kind"] == "lora"
    assert "adapter/adapter.safetensors" in {a.path for a in client.list_artifacts(
        tuned.info.run_id, "adapter")}
    evals = {r.data.tags["mlflow.runName"]: r for r in client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = "
        f"'{tuned.info.run_id}'")}
    assert "eval/loss" in evals["eval-final"].data.metrics
    assert result["finetuned"]["registered"] == f"{sft.name}/{sft.version}@sft"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", endpoints.mlflow_uri)
    loaded = mlflow.pyfunc.load_model(f"models:/{registered_name(cfg)}@sft")
    out = loaded.predict(["What is two plus three?"], params={"max_new_tokens": 6})
    assert len(out) == 1 and isinstance(out[0], str)
