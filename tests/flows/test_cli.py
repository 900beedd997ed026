"""The `lmforge` command as a user runs it (subprocesses, real services)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.settings import SAMPLE_DIR

LMFORGE = str(Path(sys.executable).parent / "lmforge")


def lmforge(*args: str, home: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LMFORGE_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([LMFORGE, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def small_config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load((SAMPLE_DIR / "pipeline.yaml").read_text())
    for source in cfg["sources"]:
        source["paths"] = [str(SAMPLE_DIR / p) for p in source["paths"]]
    for task in cfg["evaluate"]["tasks"]:
        task.update({k: str(SAMPLE_DIR / task[k]) for k in ("path", "fewshot_path") if k in task})
    security = cfg["evaluate"]["security"]
    security.update({k: str(SAMPLE_DIR / v) for k, v in security.items() if isinstance(v, str)})
    cfg["train"].update(steps=10, eval_every=5)
    cfg["tracking"] = {"experiment": "cli"}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.e2e
def test_stage_commands_one_after_another_without_services(tmp_path) -> None:
    """No services up: each command starts a temporary Prefect server and writes MLflow into
    the embedded SQLite store of $LMFORGE_HOME."""
    cfg, out, home = small_config(tmp_path), tmp_path / "out", tmp_path / "home"
    for stage in ("curate", "tokenize", "train", "evaluate"):
        done = lmforge(stage, "-c", str(cfg), "-o", str(out), home=home)
        assert done.returncode == 0, f"{stage}: {done.stdout}\n{done.stderr}"
        assert "Prefect flow run:  http://127.0.0.1:" in done.stdout
    assert json.loads((out / "manifest.json").read_text())["outputs"]["curated"]["documents"]
    assert (out / "tokens" / "manifest.json").exists() and (out / "model" / "model.pt").exists()
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["perplexity"] > 1
    assert (home / "mlflow" / "mlflow.db").exists() and (home / "prefect").is_dir()
    assert "perplexity" in done.stdout


def test_bad_config_exits_2_before_any_work(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - kind: tweets\n    paths: [x]\n")
    done = lmforge("curate", "-c", str(bad), "-o", str(tmp_path / "out"), home=tmp_path)
    assert done.returncode == 2
    assert "sources.0" in done.stderr and "commoncrawl" in done.stderr
    assert not (tmp_path / "out").exists()


def test_config_command_prints_resolved_defaults(tmp_path) -> None:
    done = lmforge("config", home=tmp_path)
    assert done.returncode == 0
    assert "min_words: 50" in done.stdout and "kind: wikipedia" in done.stdout


def test_services_status_reports_running_servers(services_up, lmforge_home) -> None:
    done = lmforge("services", "status", home=lmforge_home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "prefect: up" in done.stdout and "mlflow: up" in done.stdout
    assert "worker: up" in done.stdout and "work pool 'lmforge'" in done.stdout


def test_services_status_when_nothing_runs(tmp_path) -> None:
    done = lmforge("services", "status", home=tmp_path)
    assert done.returncode == 1 and "lmforge services up" in done.stdout
