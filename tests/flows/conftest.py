"""Fixtures shared by the flow tests: one end-to-end pipeline run on the embedded sample."""

from __future__ import annotations

from uuid import UUID

import pytest
from lmforge.flows.config import RunConfig, load_config
from lmforge.flows.launch import Endpoints, platform


@pytest.fixture(scope="session")
def pipeline_run(services_up, tmp_path_factory) -> tuple[RunConfig, dict, UUID, Endpoints]:
    from lmforge.flows.pipeline import run_pipeline

    out = tmp_path_factory.mktemp("e2e") / "run"
    base = load_config(output=out)
    cfg = RunConfig.model_validate({
        **base.model_dump(), "train": {**base.train.model_dump(), "steps": 40, "eval_every": 20},
        "tracking": {"experiment": "e2e"}, "dask": {"n_workers": 2, "dashboard_address": ":0"}})
    with platform() as endpoints:
        state = run_pipeline(cfg, return_state=True)
        assert state.is_completed(), state.message
        return cfg, state.result(), state.state_details.flow_run_id, endpoints


