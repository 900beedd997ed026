"""MLflow runs and Prefect artifacts: the two records every flow leaves.

Runs are addressed by id through ``MlflowClient`` (not MLflow's thread-local "active run"), so
nested stage runs attach to their parent whatever thread or process a flow runs in.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from lmforge.infra.cluster import DASHBOARD_ENV
from lmforge.infra.services import mlflow_store
from lmforge.infra.settings import env, redact
from lmforge.tasks.manifest import counts_table, rules_table
from lmforge.tasks.report import StageReport
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.context import FlowRunContext
from prefect.settings import PREFECT_UI_URL
from pydantic import BaseModel

log = logging.getLogger(__name__)
MLFLOW_UI_DEFAULT = "http://127.0.0.1:5000"


def tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI when set (a server), else the embedded SQLite store."""
    return env("MLFLOW_TRACKING_URI") or mlflow_store()[0]


def mlflow_ui() -> str:
    uri = tracking_uri()
    return uri.rstrip("/") if uri.startswith("http") else (env("LMFORGE_MLFLOW_UI")
                                                            or MLFLOW_UI_DEFAULT)


def prefect_flow_run() -> tuple[str | None, str | None]:
    """(id, UI URL) of the current flow run, if inside one."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None, None
    ui = PREFECT_UI_URL.value()
    run_id = str(ctx.flow_run.id)
    return run_id, f"{ui}/runs/flow-run/{run_id}" if ui else None


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                out.update(flatten(item, f"{name}.{i}."))
        else:
            out[name] = str(value)[:6000]
    return out


@dataclass
class Tracker:
    """One MLflow run, written by id."""

    client: MlflowClient
    run_id: str
    experiment_id: str

    @property
    def url(self) -> str:
        return f"{mlflow_ui()}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [Param(k, redact(k, str(v))[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, redact(k, str(v)))
                                                 for k, v in tags.items()])

    def describe(self) -> None:
        """Rewrite the run's description with the links known now (e.g. once the Dask cluster
        is up)."""
        name = self.client.get_run(self.run_id).data.tags.get("mlflow.runName", "")
        self.set_tags({"mlflow.note.content": _description(name, prefect_flow_run()[1])})

    def log_config(self, cfg: BaseModel) -> None:
        self.log_params(flatten(cfg.model_dump(mode="json")))

    def log_reports(self, reports: Sequence[StageReport]) -> None:
        """Per-stage and per-source counts, the same numbers as the manifest."""
        values: dict[str, float] = {}
        for report in reports:
            total = report.total
            values[f"{report.stage}.docs_in"] = total.docs_in
            values[f"{report.stage}.docs_out"] = total.docs_out
            values[f"{report.stage}.seconds"] = report.seconds
            for source, c in report.sources.items():
                values[f"{report.stage}.{source}.docs_out"] = c.docs_out
                for reason, n in c.dropped.items():
                    values[f"{report.stage}.{source}.dropped.{reason}"] = n
        self.log_metrics(0, values)

    def log_dataset(self, name: str, uri: str, digest: str, context: str = "training") -> None:
        """Record a dataset version as an MLflow input of this run (source and digest only;
        nothing is loaded)."""
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource
        from mlflow.entities import DatasetInput, InputTag

        dataset = MetaDataset(source=LocalArtifactDatasetSource(uri), name=name, digest=digest)
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(
            dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])])

    def register_model(self, name: str, model_path: Path, tokenizer_path: Path,
                       alias: str, *, chat: bool = False) -> str:
        """Log the model as the run's MLflow Model (``flows/mlflow_model.py``), register it as
        a new version of ``name`` and point ``alias`` at that version; returns the version."""
        from lmforge.flows.mlflow_model import log_text_model

        model_uri = log_text_model(self.client, self.run_id, model_path, tokenizer_path,
                                   chat=chat)
        try:
            self.client.create_registered_model(name, description=(
                "Causal LMs trained by lmforge; load one with mlflow.pyfunc.load_model("
                f"'models:/{name}@{alias}').predict(['prompt'])"))
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = self.client.create_model_version(
            name, model_uri, run_id=self.run_id, model_id=model_uri.removeprefix("models:/"),
            await_creation_for=0)
        self.client.set_registered_model_alias(name, alias, version.version)
        self.set_tags({"lmforge.registered_model": f"{name}/{version.version}@{alias}"})
        return str(version.version)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)


@contextmanager
def system_metrics(run_id: str, interval: float = 10.0) -> Iterator[None]:
    """MLflow's system metrics (CPU, memory, disk, network, GPU when present) sampled into the
    run as ``system/*`` while the block runs; a resumed run continues their steps."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval, resume_logging=True,
                                   tracking_uri=tracking_uri())
    first = monitor._logging_step
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
        if monitor._logging_step == first:  # shorter than one interval: log one sample
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()


# the MLflow UI opens an experiment on its model-training pages with this kind (without it,
# MLflow 3 guesses, and opens an empty GenAI page)
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def _experiment(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        if "mlflow.experimentKind" not in found.tags:  # created before lmforge set it
            client.set_experiment_tag(found.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
        return found.experiment_id
    location = None
    uri = tracking_uri()
    if not uri.startswith("http"):
        artifacts = mlflow_store()[1]
        location = f"{artifacts.rstrip('/')}/{name}" if "://" in artifacts \
            else (Path(artifacts) / name).as_uri()
    return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)


@contextmanager
def tracked_run(name: str, experiment: str, parent_run_id: str | None = None,
                tags: Mapping[str, str] | None = None,
                resume_run_id: str | None = None) -> Iterator[Tracker]:
    """An MLflow run (nested under ``parent_run_id``) tagged with the Prefect flow run; marked
    FAILED if the block raises. Also leaves a link artifact to it in the Prefect run. With
    ``resume_run_id`` (an interrupted run), that run is reopened instead of a new one."""
    client = MlflowClient(tracking_uri(), registry_uri=tracking_uri())  # never a global one
    experiment_id = _experiment(client, experiment)
    flow_run_id, flow_run_url = prefect_flow_run()
    close_orphans(client, experiment_id)
    resumed = _reopen(client, resume_run_id) if resume_run_id else None
    ctx = FlowRunContext.get()
    # the run is named as in Prefect ("curate-out") when it is its flow's own run
    run_name = (ctx.flow_run.name if ctx is not None and ctx.flow_run is not None
                and ctx.flow is not None and ctx.flow.name == name else name)
    run_tags = {"mlflow.runName": run_name, "lmforge.stage": name, **(tags or {}),
                "lmforge.host": socket.gethostname(), "lmforge.pid": str(os.getpid())}
    if parent_run_id:
        run_tags["mlflow.parentRunId"] = parent_run_id
    if flow_run_id:
        run_tags["prefect.flow_run_id"] = flow_run_id
        run_tags["prefect.flow_run_url"] = flow_run_url or ""
        run_tags["mlflow.note.content"] = _description(run_name, flow_run_url)
    if resumed is not None:
        tracker = Tracker(client, resumed.info.run_id, resumed.info.experiment_id)
        tracker.set_tags({k: v for k, v in run_tags.items()  # now this process's run
                          if k.startswith("prefect.") or k in ("lmforge.host", "lmforge.pid")})
    else:
        run = client.create_run(experiment_id, run_name=run_name, tags=run_tags)
        tracker = Tracker(client, run.info.run_id, experiment_id)
    if flow_run_id:
        create_link_artifact(tracker.url, link_text=f"MLflow run: {name}",
                             key=f"mlflow-{name}".lower().replace("_", "-"),
                             description=f"The MLflow run of this {name} flow run")
    try:
        yield tracker
    except BaseException:
        client.set_terminated(tracker.run_id, status="FAILED")
        raise
    client.set_terminated(tracker.run_id, status="FINISHED")


def _description(run_name: str, flow_run_url: str | None) -> str:
    """The run's description (MLflow shows it as Markdown): clickable links back to Prefect
    and to the Dask dashboard of the run."""
    lines = [f"lmforge run **{run_name}**", ""]
    if flow_run_url:
        lines.append(f"- Prefect flow run: [{flow_run_url}]({flow_run_url})")
    if dashboard := env(DASHBOARD_ENV):
        lines.append(f"- Dask dashboard (while the run lasts): [{dashboard}]({dashboard})")
    return "\n".join(lines)


def close_orphans(client: MlflowClient, experiment_id: str) -> list[str]:
    """Runs left RUNNING by a process of this host that no longer exists (killed, or its
    machine rebooted) are marked KILLED, so the MLflow UI does not show them as live."""
    host = socket.gethostname()
    stale = client.search_runs([experiment_id], filter_string=(
        f"attributes.status = 'RUNNING' and tags.`lmforge.host` = '{host}'"), max_results=200)
    closed = []
    for run in stale:
        pid = int(run.data.tags.get("lmforge.pid", "0") or 0)
        if pid and not psutil.pid_exists(pid):
            client.set_tag(run.info.run_id, "lmforge.ended", f"process {pid} on {host} died "
                           "while the run was live; a rerun resumes from its outputs")
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
    if closed:
        log.warning("marked %d MLflow run(s) of dead processes KILLED: %s", len(closed),
                    ", ".join(closed))
    return closed


def _reopen(client: MlflowClient, run_id: str) -> Any:
    """The run, set back to RUNNING; None when it is gone (deleted, another store)."""
    try:
        run = client.get_run(run_id)
    except Exception:
        log.warning("MLflow run %s of the checkpoint is gone; starting a new run", run_id)
        return None
    if run.info.lifecycle_stage != "active":
        return None
    client.update_run(run_id, status="RUNNING")
    return run


def publish_counts(flow: str, reports: Sequence[StageReport], tracker: Tracker) -> None:
    """The per-stage, per-source counts table: a Prefect artifact keyed ``<flow>-counts`` and the
    same numbers as MLflow metrics."""
    rows = counts_table(reports)
    create_table_artifact(rows, key=f"{flow}-counts",
                          description=f"Documents in/out per stage and source ({flow})")
    if rules := rules_table(reports):
        create_table_artifact(rules, key=f"{flow}-rules",
                              description=f"Documents removed per rule ({flow})")
    tracker.log_reports(reports)


def publish_dedup(report: StageReport, tracker: Tracker) -> None:
    """Duplicate rate per source and the cluster-size histogram, as a Prefect table and as
    MLflow metrics."""
    rows = [{"source": source, "documents": c.docs_in, "duplicates": c.docs_dropped,
             "rate": round(c.docs_dropped / c.docs_in, 4) if c.docs_in else 0.0,
             **dict(c.dropped)} for source, c in report.sources.items()]
    sizes = report.extra.get("cluster_sizes", {})
    rows += [{"source": f"clusters of size {size}", "documents": int(size) * count,
              "duplicates": (int(size) - 1) * count, "rate": None}
             for size, count in sizes.items()]
    create_table_artifact(rows, key="curate-dedup",
                          description="Duplicate rate per source and cluster sizes")
    metrics = {f"dedup.{r['source']}.duplicate_rate": r["rate"] for r in rows[:len(report.sources)]}
    metrics |= {f"dedup.clusters.size_{size}": count for size, count in sizes.items()}
    tracker.log_metrics(0, metrics)
