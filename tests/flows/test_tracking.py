"""MLflow bookkeeping that needs no server: runs of dead processes are closed, secrets are
redacted on the way out."""

from __future__ import annotations

import os
import socket
import subprocess

from lmforge.flows.tracking import Tracker, close_orphans
from mlflow.tracking import MlflowClient


def test_runs_of_dead_processes_are_marked_killed(tmp_path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("orphans", artifact_location=tmp_path.as_uri())
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    orphan = client.create_run(experiment, tags={"lmforge.host": host,
                                                 "lmforge.pid": str(dead.pid)})
    live = client.create_run(experiment, tags={"lmforge.host": host,
                                               "lmforge.pid": str(os.getpid())})
    remote = client.create_run(experiment, tags={"lmforge.host": "another-node",
                                                 "lmforge.pid": str(dead.pid)})
    assert close_orphans(client, experiment) == [orphan.info.run_id]
    status = {r.info.run_id: client.get_run(r.info.run_id).info.status
              for r in (orphan, live, remote)}
    assert status == {orphan.info.run_id: "KILLED", live.info.run_id: "RUNNING",
                      remote.info.run_id: "RUNNING"}  # another host's processes: unknown
    assert "died" in client.get_run(orphan.info.run_id).data.tags["lmforge.ended"]


def test_params_and_tags_are_redacted(tmp_path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("secrets", artifact_location=tmp_path.as_uri())
    run = client.create_run(experiment)
    tracker = Tracker(client, run.info.run_id, experiment)
    tracker.log_params({"sources.0.paths": "['s3://AKIA:hunter2@bucket/x.warc.gz']",
                        "tracking.api_token": "tok-123", "train.steps": 5})
    tracker.set_tags({"db.password": "pw"})
    data = client.get_run(run.info.run_id).data
    assert data.params == {"sources.0.paths": "['s3://***@bucket/x.warc.gz']",
                           "tracking.api_token": "***", "train.steps": "5"}
    assert data.tags["db.password"] == "***"
    assert "hunter2" not in str(data) and "tok-123" not in str(data)
