"""Deployments through a real worker: `lmforge deploy` registers them on the session's Prefect
server, the worker of `services up` runs the curate deployment, and its artifacts are checked
through the Prefect API."""

from __future__ import annotations

import pytest
import yaml
from lmforge.flows.launch import platform
from lmforge.infra.settings import SAMPLE_DIR

from tests.flows.test_cli import lmforge, small_config

pytestmark = pytest.mark.e2e


def test_curate_deployment_runs_through_the_worker(services_up, lmforge_home, tmp_path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.deployments import run_deployment

    cfg_path = small_config(tmp_path)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["sources"] = [{"kind": "books", "paths": [str(SAMPLE_DIR / "books" / "*.txt")]},
                      {"kind": "reddit", "paths": [str(SAMPLE_DIR / "reddit" / "*.zst")]}]
    cfg["curate"]["pii"] = {"ner_model": None}
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "deployed"
    done = lmforge("deploy", "-c", str(cfg_path), "-o", str(out), home=lmforge_home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nightly-ingest: 0 2 * * *" in done.stdout and "weekly-train: 0 4 * * 0" in done.stdout

    with platform(), get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("nightly-ingest/nightly-ingest")
        assert nightly.schedules[0].schedule.cron == "0 2 * * *"
        assert nightly.global_concurrency_limit.limit == 1  # two nightly runs never overlap
        assert nightly.work_pool_name == "lmforge"
        serve = client.read_deployment_by_name("serve/serve")  # the API server, on demand
        assert not serve.schedules and serve.parameters["output"] == str(out.resolve())
        run = run_deployment("curate-on-demand/curate", timeout=900)
        assert run.state.is_completed(), run.state
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])))
        [curate] = [c for c in children if c.name.startswith("curate-")]
        artifacts = {a.key for a in client.read_artifacts() if a.flow_run_id == curate.id}
    assert {"curate-counts", "curate-rules", "curate-dedup", "mlflow-curate"} <= artifacts
    assert (out / "manifest.json").exists() and list((out / "curated").glob("part-*.parquet"))
