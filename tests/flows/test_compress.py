"""The compress flow on the pipeline's trained model: three variants (4-bit weights;
magnitude pruning with a recovery fine-tune; a one-block student distilled through the
trainer) made, evaluated with the suite beside the base, measured in fresh processes, compared
in one MLflow run with a nested run per variant, each registered under its own alias and
loadable; table and chart artifacts in the Prefect UI."""

from __future__ import annotations

import json
import shutil

import pytest
from lmforge.flows.config import RunConfig
from lmforge.flows.launch import platform
from lmforge.model.checkpoint import load_model
from lmforge.model.compress.quant import Int4WeightLinear
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.e2e


def test_compress_flow_compares_registers_and_publishes(pipeline_run, tmp_path) -> None:
    from lmforge.flows.compress import compress_model
    from lmforge.flows.train import registered_name
    from prefect.client.orchestration import get_client

    base_cfg = pipeline_run[0]
    out = tmp_path / "c"
    for folder in ("tokens", "tokenizer", "model"):
        shutil.copytree(base_cfg.output / folder, out / folder)
    cfg = RunConfig.model_validate({
        **base_cfg.model_dump(), "output": out, "tracking": {"experiment": "compress-flow"},
        "compress": {"methods": [{"kind": "int4-weight", "group": 32},
                                 {"kind": "magnitude", "sparsity": 0.5},
                                 {"kind": "distill", "layers": 1, "steps": 4}],
                     "recover_steps": 3, "batch_size": 4, "measure_prompts": 4,
                     "new_tokens": 8}})
    with platform() as endpoints:
        result = compress_model(cfg)
        client = MlflowClient(endpoints.mlflow_uri)
        rows = {r["variant"]: r for r in result["variants"]}
        assert list(rows) == ["base", "int4-weight", "magnitude", "distill-layers1-steps4"]
        assert rows["base"]["size_ratio"] == 1.0
        assert rows["int4-weight"]["size_ratio"] < 0.6 and rows["magnitude"]["size_ratio"] < 0.8
        assert rows["magnitude"]["recovered_steps"] == 3
        student = rows["distill-layers1-steps4"]
        assert student["recovered_steps"] == 4 and student["weight_bytes"] < rows["base"][
            "weight_bytes"]
        for row in rows.values():  # the suite and the engine ran on every variant
            assert row["perplexity"] > 1 and row["tokens_per_s"] > 0
            assert row["memory_mb"] > 0 and "eval/loss" in row
        # int4 of a tiny sample model: the perplexity moves, but not far
        assert abs(rows["int4-weight"]["perplexity_change"]) < 0.5
        stage = client.get_run(result["mlflow_run_id"])
        assert stage.data.metrics["int4-weight/size_ratio"] == rows["int4-weight"]["size_ratio"]
        children = client.search_runs(
            [stage.info.experiment_id],
            f"tags.mlflow.parentRunId = '{stage.info.run_id}'")
        assert {c.data.tags["lmforge.compression"] for c in children} == set(rows) - {"base"}
        name = registered_name(cfg)
        for alias in set(rows) - {"base"}:
            version = client.get_model_version_by_alias(name, alias)
            assert version.run_id in {c.info.run_id for c in children}
        artifacts = {a.path for a in client.list_artifacts(stage.info.run_id, "compress")}
        assert {"compress/comparison.json", "compress/chart.md"} <= artifacts

        async def keys() -> set[str]:
            async with get_client() as prefect:
                return {a.key for a in await prefect.read_artifacts() if a.key}

        import asyncio

        assert {"compress-comparison", "compress-chart"} <= asyncio.run(keys())
    table = json.loads((out / "compress" / "comparison.json").read_text())
    assert [r["variant"] for r in table] == list(rows)
    model = load_model(out / "compress" / "int4-weight" / "model.pt")
    assert any(isinstance(m, Int4WeightLinear) for m in model.modules())
    assert load_model(out / "compress" / "distill-layers1-steps4" / "model.pt").cfg.n_layer == 1
