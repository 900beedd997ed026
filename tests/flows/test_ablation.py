"""The data ablation end to end on the embedded sample, then `lmforge compare` on three real
runs in the session's MLflow server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from lmforge.flows.ablation import better, uncurated
from lmforge.flows.config import RunConfig, load_config
from lmforge.flows.launch import platform
from mlflow.tracking import MlflowClient

from tests.flows.test_cli import lmforge


@pytest.fixture(scope="module")
def ablation(services_up, tmp_path_factory) -> tuple[RunConfig, dict]:
    from lmforge.flows.ablation import run_ablation

    base = load_config(output=tmp_path_factory.mktemp("ablation") / "abl")
    cfg = RunConfig.model_validate({
        **base.model_dump(), "train": {**base.train.model_dump(), "steps": 30, "eval_every": 15},
        "evaluate": {**base.evaluate.model_dump(), "checkpoints": "final"},
        "tracking": {"experiment": "ablation"}, "dask": {"n_workers": 2,
                                                         "dashboard_address": ":0"}})
    with platform():
        state = run_ablation(cfg, heldout_docs=50, return_state=True)
        assert state.is_completed(), state.message
        return cfg, state.result()


def test_uncurated_arm_switches_every_curation_stage_off() -> None:
    cfg = uncurated(load_config())
    assert cfg.curate.pii is None and cfg.curate.toxicity is None
    assert cfg.curate.dedup.minhash is None and not cfg.curate.dedup.exact
    assert cfg.curate.quality.commoncrawl.gopher is None
    assert cfg.curate.quality.wikipedia.language is None
    assert better("eval/loss", 1.0, 2.0) == "a" and better("hellaswag/acc", 0.2, 0.5) == "b"
    assert better("security/bias/age/gap_nats", -3.0, 1.0) == "b"  # nearer 0
    assert better("security/bias/stereotype_rate", 0.45, 0.7) == "a"  # nearer 0.5
    assert better("security/pii/entities/EMAIL_ADDRESS", 3, 1) == "b"


def test_ablation_trains_both_arms_on_the_same_budget(ablation) -> None:
    cfg, result = ablation
    root = cfg.output.resolve()
    arms = result["arms"]
    assert set(arms) == {"curated", "uncurated"}
    cur, unc = arms["curated"]["metrics"], arms["uncurated"]["metrics"]
    assert cur["train/tokens_seen"] == unc["train/tokens_seen"] > 0
    for key in ("heldout_clean/bits_per_byte", "heldout_raw/bits_per_byte",
                "eval/bits_per_byte", "eval/hellaswag/acc"):
        assert key in cur and key in unc
    assert result["heldout_documents"]["clean"] > 0
    # curation removed documents in one arm only
    docs = {arm: json.loads((root / arm / "manifest.json").read_text())["outputs"]["curated"]
            ["documents"] for arm in arms}
    assert docs["uncurated"] > docs["curated"]
    assert Path(result["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {r["metric"]: r for r in result["rows"]}
    assert rows["heldout_clean/bits_per_byte"]["better"] in {"curated", "uncurated", "tie"}


def test_ablation_arms_are_nested_mlflow_runs(ablation) -> None:
    _, result = ablation
    client = MlflowClient(os.environ.get("MLFLOW_TRACKING_URI") or _uri())
    parent = client.get_run(result["mlflow_run_id"])
    children = client.search_runs([parent.info.experiment_id], filter_string=(
        f"tags.mlflow.parentRunId = '{parent.info.run_id}'"))
    assert {c.info.run_id for c in children} == {a["mlflow_run_id"]
                                                  for a in result["arms"].values()}
    assert "curated/heldout_clean/bits_per_byte" in parent.data.metrics
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "ablation")} >= {
        "ablation/ablation.json", "ablation/ablation.png"}


def _uri() -> str:
    with platform() as endpoints:
        return endpoints.mlflow_uri


def test_compare_three_real_runs(ablation, pipeline_run, lmforge_home, tmp_path) -> None:
    _, result = ablation
    _, e2e, _, endpoints = pipeline_run
    ids = [a["mlflow_run_id"] for a in result["arms"].values()] + [e2e["mlflow_run_id"]]
    done = lmforge("compare", *ids, "-o", str(tmp_path / "cmp"), home=lmforge_home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lmforge compare" in done.stdout  # the table, printed
    pngs = sorted(p.name for p in (tmp_path / "cmp").glob("*.png"))
    assert {"curve-train_loss.png", "curve-val_loss.png", "metrics.png"} <= set(pngs)
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert table.count("|") > 20 and "param curate.pii" in table
    assert "| param train.steps | 30 | 30 | 40 |" in table  # the arms vs the e2e run
    assert "| eval/hellaswag/acc |" in table
    client = MlflowClient(endpoints.mlflow_uri)
    run_id = done.stdout.split("MLflow compare run:")[1].split()[0]
    logged = {a.path for a in client.list_artifacts(run_id, "compare")}
    assert "compare/curve-train_loss.png" in logged and "compare/comparison.md" in logged
