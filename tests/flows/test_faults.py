"""Faults that really kill processes: a Dask worker mid-stage, the flow process mid-run, a
training rank mid-training; and multi-node torchrun as two "nodes" on localhost. Each checks
that nothing was lost, duplicated or corrupted against an uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
import torch
from lmforge.flows.config import RunConfig, save_config
from lmforge.flows.launch import platform
from lmforge.infra.services import free_port
from lmforge.model.checkpoint import load_model
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.e2e
LMFORGE = str(Path(sys.executable).parent / "lmforge")


def _start(args: list[str], home: Path) -> subprocess.Popen:
    env = {**os.environ, "LMFORGE_HOME": str(home), "GLOO_SOCKET_IFNAME": "lo"}
    for key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)  # the CLI finds the session's services through LMFORGE_HOME
    return subprocess.Popen([LMFORGE, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 600):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"finished before the fault: {proc.stdout.read()}"
        assert time.monotonic() < deadline, "the fault point was never reached"
        time.sleep(0.05)


def _finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    """Exit code and output; a hung process group is killed and its output shown (within
    pytest's own timeout, which would show only this test's stack)."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(proc.args)} hung for {timeout:.0f} s:\n{out[-5000:]}")
    return proc.returncode, out


def curated_content(root: Path) -> dict[str, str]:
    """Document id -> SHA-256 of its text, over every curated shard (raises on duplicates)."""
    out: dict[str, str] = {}
    for shard in sorted((root / "curated").glob("part-*.parquet")):
        table = pq.read_table(shard, columns=["id", "text"]).to_pydict()
        for doc_id, text in zip(table["id"], table["text"], strict=True):
            assert doc_id not in out, f"duplicated document {doc_id}"
            out[doc_id] = hashlib.sha256(text.encode()).hexdigest()
    return out


def rejected_ids(root: Path) -> list[str]:
    return sorted(i for p in (root / "rejected").glob("*.parquet")
                  for i in pq.read_table(p, columns=["id"]).column("id").to_pylist())


def curate_config(pipeline_run, tmp_path: Path, **dask) -> Path:
    cfg = pipeline_run[0]
    cfg = RunConfig.model_validate({**cfg.model_dump(), "output": tmp_path / "out",
                                    "dask": {**cfg.dask.model_dump(), **dask}})
    return save_config(cfg, tmp_path / "curate.yaml")


def _reports(root: Path, stage: str) -> list[Path]:
    return sorted((root / "_work" / "reports" / stage).glob("part-*.json"))


def test_dask_worker_killed_mid_stage(pipeline_run, external_dask, lmforge_home, tmp_path):
    out = tmp_path / "out"
    cfg = curate_config(pipeline_run, tmp_path, address=external_dask.address)
    proc = _start(["curate", "-c", str(cfg), "-o", str(out)], lmforge_home)
    _wait_for(lambda: len(_reports(out, "quality")) >= 1, proc)
    victim = external_dask.workers[0]
    victim.send_signal(signal.SIGKILL)  # the node is gone, its running task with it
    code, log = _finish(proc)
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert code == 0, log
    reference = pipeline_run[0].output
    assert curated_content(out) == curated_content(reference)
    assert rejected_ids(out) == rejected_ids(reference)
    assert not list(out.rglob("*.tmp")), "a temporary file of the killed task was left behind"


def test_flow_process_killed_mid_run_and_rerun(pipeline_run, lmforge_home, tmp_path) -> None:
    out = tmp_path / "out"
    cfg = curate_config(pipeline_run, tmp_path, dashboard_address=":0")
    proc = _start(["curate", "-c", str(cfg), "-o", str(out)], lmforge_home)
    _wait_for(lambda: len(_reports(out, "quality")) >= 3, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the flow process, its Dask cluster, everything
    proc.wait(timeout=30)
    finished = {p: p.stat().st_mtime_ns for p in _reports(out, "quality")}
    assert not (out / "manifest.json").exists()
    rerun = _start(["curate", "-c", str(cfg), "-o", str(out)], lmforge_home)
    code, log = _finish(rerun)
    assert code == 0, log
    # finished shard x stage work was skipped, not redone
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    reference = pipeline_run[0].output
    assert curated_content(out) == curated_content(reference)
    assert rejected_ids(out) == rejected_ids(reference)
    # the killed process's MLflow run is closed as KILLED, not left "live"
    with platform() as endpoints:
        client = MlflowClient(endpoints.mlflow_uri)
        experiment = client.get_experiment_by_name(pipeline_run[0].tracking.experiment)
        killed = client.search_runs([experiment.experiment_id], filter_string=(
            f"tags.`lmforge.pid` = '{proc.pid}'"))
    assert killed and {r.info.status for r in killed} == {"KILLED"}


def _train_config(pipeline_run, out: Path, **launch) -> RunConfig:
    base = pipeline_run[0]
    shutil.copytree(base.output / "tokens", out / "tokens")
    return RunConfig.model_validate({
        **base.model_dump(), "output": out, "tracking": {"experiment": "faults"},
        # the kill lands as the first checkpoint (step 10) appears: 110 steps before the end
        # (each a gloo all-reduce between 2 processes) is well before it on any machine
        "train": {**base.train.model_dump(), "steps": 120, "batch_size": 4, "eval_every": 100,
                  "eval_batches": 1, "checkpoint_every": 10,
                  "launch": {"nproc_per_node": 2, **launch},
                  "deepspeed": {"zero_optimization": {"stage": 1}}}})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path).state_dict()


def test_training_rank_killed_then_resumed(pipeline_run, lmforge_home, tmp_path) -> None:
    from lmforge.flows.train import train_model

    with platform():
        reference = _weights(train_model(_train_config(pipeline_run, tmp_path / "ref")))
    cfg = _train_config(pipeline_run, tmp_path / "out")
    path = save_config(cfg, tmp_path / "train.yaml")
    proc = _start(["train", "-c", str(path)], lmforge_home)
    checkpoints = cfg.output / "model" / "checkpoints"
    _wait_for(lambda: any((c / "meta.json").exists() for c in checkpoints.glob("step-*")), proc)
    launched = [p for p in psutil.Process(proc.pid).children(recursive=True)
                if "lmforge.flows.train_worker" in " ".join(p.cmdline())]
    parents = {p.ppid() for p in launched}
    ranks = [p for p in launched if p.pid not in parents]  # not the torchrun agent
    assert len(ranks) == 2
    ranks[1].kill()  # one rank dies mid-training
    code, log = _finish(proc)
    assert code != 0 and "torchrun exited with code" in log
    assert not (cfg.output / "model" / "model.pt").exists()
    with platform():
        resumed = _weights(train_model(cfg))  # continues from the newest complete checkpoint
    assert resumed.keys() == reference.keys()
    for name, tensor in reference.items():
        torch.testing.assert_close(resumed[name], tensor, atol=1e-5, rtol=1e-4, msg=name)


def test_two_nodes_on_localhost(pipeline_run, lmforge_home, tmp_path) -> None:
    """torchrun with c10d rendezvous, one process per "node", the output on a shared folder."""
    endpoint = f"127.0.0.1:{free_port()}"
    # a lost loopback connection on a loaded machine restarts the group from its checkpoint,
    # as torchrun's max_restarts does on real clusters
    cfg = _train_config(pipeline_run, tmp_path / "out", nproc_per_node=1, nnodes=2,
                        rdzv_endpoint=endpoint, rdzv_id="faults", max_restarts=2,
                        collective_timeout_s=120)
    cfg = RunConfig.model_validate({**cfg.model_dump(), "train": {
        **cfg.train.model_dump(), "steps": 10, "checkpoint_every": 5}})
    nodes = []
    for rank in (0, 1):
        node = RunConfig.model_validate({**cfg.model_dump(), "train": {
            **cfg.train.model_dump(), "launch": {**cfg.train.launch.model_dump(),
                                                 "node_rank": rank}}})
        path = save_config(node, tmp_path / f"node{rank}.yaml")
        nodes.append(_start(["train", "-c", str(path)], lmforge_home))
    deadline = time.monotonic() + 600
    try:
        results = [_finish(n, max(deadline - time.monotonic(), 1)) for n in nodes]
    finally:
        for n in nodes:
            if n.poll() is None:
                os.killpg(n.pid, signal.SIGKILL)
    assert [code for code, _ in results] == [0, 0], [out[-3000:] for _, out in results]
    model = cfg.output / "model" / "model.pt"
    assert model.exists() and load_model(model).cfg.vocab_size > 0
    meta = sorted((cfg.output / "model" / "checkpoints").glob("step-*"))[-1] / "meta.json"
    assert '"world": 2' in meta.read_text()
