"""Dask cluster specs: where shard tasks run, chosen by config alone (no code changes).

- ``local`` (default): a LocalCluster of worker processes on this machine;
- ``address``: an existing scheduler (``dask scheduler`` + ``dask worker`` processes, a
  Kubernetes DaskCluster's scheduler service, a Coiled/Saturn cluster, ...);
- ``kubernetes``: a cluster started through the Dask Kubernetes operator (``KubeCluster``
  from ``dask-kubernetes``), or, without that package, the DaskCluster manifest that
  ``lmforge cluster-spec`` prints for ``kubectl apply`` and then ``address``;
- ``slurm``: a ``dask-jobqueue`` SLURMCluster whose workers are batch jobs.

See ``infra/README.md`` for the commands.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import dask
from distributed import Client, LocalCluster, WorkerPlugin
from lmforge.infra.settings import install_log_redaction
from pydantic import BaseModel, ConfigDict, Field, model_validator

log = logging.getLogger(__name__)


class KubernetesSpec(BaseModel):
    """A DaskCluster for the Dask Kubernetes operator."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field("lmforge", description="DaskCluster resource name")
    namespace: str = Field("default", description="Kubernetes namespace")
    image: str = Field("ghcr.io/dask/dask:latest", description="worker/scheduler image; must "
                       "have lmforge installed (the same version as the flow)")
    cpu: str = Field("2", description="CPU limit and request per worker")
    memory: str = Field("8Gi", description="memory limit and request per worker")
    env: dict[str, str] = Field({}, description="extra environment of the pods (no secrets: "
                                "reference Kubernetes secrets in the manifest instead)")


class SlurmSpec(BaseModel):
    """Workers as SLURM batch jobs (dask-jobqueue)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    queue: str | None = Field(None, description="partition (sbatch -p)")
    account: str | None = Field(None, description="account (sbatch -A)")
    cores: int = Field(8, ge=1, description="cores per job")
    processes: int = Field(1, ge=1, description="Dask worker processes per job")
    memory: str = Field("32GB", description="memory per job")
    walltime: str = Field("04:00:00", description="job time limit")
    job_extra_directives: list[str] = Field([], description="extra #SBATCH lines")
    local_directory: str | None = Field(None, description="node-local scratch for spilling")


class DaskConfig(BaseModel):
    """Where shard tasks run."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["local", "address", "kubernetes", "slurm"] = Field(
        "local", description="local = LocalCluster; address = an existing scheduler; "
        "kubernetes = Dask operator KubeCluster; slurm = dask-jobqueue SLURMCluster")
    address: str | None = Field(None, description="scheduler of kind 'address', e.g. "
                                "tcp://10.0.0.5:8786 (setting it implies kind 'address')")
    n_workers: int = Field(2, ge=1, description="workers (local), or pods / SLURM jobs")
    threads_per_worker: int = Field(1, ge=1, description="threads per LocalCluster worker")
    memory_limit: str = Field("4GiB", description="memory per LocalCluster worker")
    dashboard_address: str = Field("127.0.0.1:8787", description="LocalCluster dashboard; "
                                   "a busy port falls back to a free one")
    connect_timeout: str = Field("60s", description="how long to try reaching dask.address")
    kubernetes: KubernetesSpec = Field(default_factory=KubernetesSpec,
                                       description="kind 'kubernetes'")
    slurm: SlurmSpec = Field(default_factory=SlurmSpec, description="kind 'slurm'")

    @model_validator(mode="after")
    def _address_means_address(self) -> DaskConfig:
        if self.address and self.kind == "local":
            object.__setattr__(self, "kind", "address")
        if self.kind == "address" and not self.address:
            raise ValueError("dask.kind 'address' needs dask.address (tcp://host:8786)")
        return self


@dataclass(frozen=True)
class ClusterInfo:
    address: str
    dashboard_link: str | None
    workers: int


def kube_cluster_spec(cfg: DaskConfig) -> dict[str, Any]:
    """The DaskCluster custom resource (kubernetes.dask.org/v1) of the Dask operator."""
    spec = cfg.kubernetes
    resources = {"limits": {"cpu": spec.cpu, "memory": spec.memory},
                 "requests": {"cpu": spec.cpu, "memory": spec.memory}}
    env = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]

    def container(name: str, args: list[str], ports: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": name, "image": spec.image, "args": args, "env": env,
                "resources": resources, "ports": ports}

    scheduler_ports = [{"name": "tcp-comm", "containerPort": 8786, "protocol": "TCP"},
                       {"name": "http-dashboard", "containerPort": 8787, "protocol": "TCP"}]
    return {
        "apiVersion": "kubernetes.dask.org/v1", "kind": "DaskCluster",
        "metadata": {"name": spec.name, "namespace": spec.namespace},
        "spec": {
            "worker": {"replicas": cfg.n_workers, "spec": {"containers": [container(
                "worker", ["dask-worker", "--name", "$(DASK_WORKER_NAME)", "--nthreads",
                           spec.cpu, "--memory-limit", spec.memory, "--dashboard",
                           "--dashboard-address", "8788"],
                [{"name": "http-dashboard", "containerPort": 8788, "protocol": "TCP"}])]}},
            "scheduler": {
                "spec": {"containers": [container("scheduler", ["dask-scheduler"],
                                                  scheduler_ports)]},
                "service": {"type": "ClusterIP", "selector": {
                    "dask.org/cluster-name": spec.name, "dask.org/component": "scheduler"},
                    "ports": [{"name": p["name"], "protocol": "TCP", "port": p["containerPort"],
                               "targetPort": p["name"]} for p in scheduler_ports]}}}}


def slurm_cluster(cfg: DaskConfig) -> Any:
    """A SLURMCluster (not yet scaled): its ``job_script()`` is what sbatch receives."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as err:
        raise ImportError("dask.kind 'slurm' needs dask-jobqueue: pip install "
                          "'lmforge[slurm]'") from err
    spec = cfg.slurm
    return SLURMCluster(queue=spec.queue, account=spec.account, cores=spec.cores,
                        processes=spec.processes, memory=spec.memory, walltime=spec.walltime,
                        job_extra_directives=spec.job_extra_directives,
                        local_directory=spec.local_directory, silence_logs=logging.WARNING)


@contextmanager
def _external(cluster: Any, n_workers: int) -> Iterator[ClusterInfo]:
    with cluster, Client(cluster) as client:
        _prepare_workers(client)
        cluster.scale(n_workers)
        client.wait_for_workers(1, timeout=600)
        yield ClusterInfo(cluster.scheduler_address, cluster.dashboard_link, n_workers)


class RedactLogsPlugin(WorkerPlugin):
    """Hides URL credentials in the log records of every worker, present and future (the
    scheduler keeps the plugin for workers that join later)."""

    name = "lmforge-redact-logs"

    def setup(self, worker: Any) -> None:
        install_log_redaction()


def _prepare_workers(client: Client) -> None:
    client.register_plugin(RedactLogsPlugin(), name=RedactLogsPlugin.name)


@contextmanager
def dask_cluster(cfg: DaskConfig) -> Iterator[ClusterInfo]:
    """Connect to or start the configured cluster for the duration of the block; while it is
    up, $LMFORGE_DASK_DASHBOARD names its dashboard (the MLflow run descriptions link it)."""
    with _dask_cluster(cfg) as info:
        before = os.environ.get(DASHBOARD_ENV)
        if info.dashboard_link:
            os.environ[DASHBOARD_ENV] = info.dashboard_link
        try:
            yield info
        finally:
            if before is None:
                os.environ.pop(DASHBOARD_ENV, None)
            else:
                os.environ[DASHBOARD_ENV] = before


DASHBOARD_ENV = "LMFORGE_DASK_DASHBOARD"


@contextmanager
def _dask_cluster(cfg: DaskConfig) -> Iterator[ClusterInfo]:
    if cfg.kind == "address":
        try:
            client = Client(cfg.address, timeout=cfg.connect_timeout)
        except OSError as err:
            raise ConnectionError(
                f"cannot reach the Dask scheduler at dask.address={cfg.address} ({err}); start "
                "one (`dask scheduler`, then `dask worker <address>` on each machine) or remove "
                "dask.address to use a LocalCluster") from err
        with client:
            _prepare_workers(client)
            workers = len(client.scheduler_info(n_workers=-1)["workers"])
            if workers == 0:
                log.warning("the Dask scheduler at %s has no workers yet: tasks wait until "
                            "`dask worker %s` runs somewhere", cfg.address, cfg.address)
            yield ClusterInfo(str(cfg.address), client.dashboard_link, workers)
        return
    if cfg.kind == "slurm":
        with _external(slurm_cluster(cfg), cfg.n_workers) as info:
            yield info
        return
    if cfg.kind == "kubernetes":
        try:
            from dask_kubernetes.operator import KubeCluster
        except ImportError as err:
            raise ImportError(
                "dask.kind 'kubernetes' needs dask-kubernetes in this environment (pip install "
                "dask-kubernetes); or apply the manifest of `lmforge cluster-spec -c FILE` "
                "with kubectl and set dask.address to its scheduler service") from err
        cluster = KubeCluster(custom_cluster_spec=kube_cluster_spec(cfg),
                              namespace=cfg.kubernetes.namespace)
        with _external(cluster, cfg.n_workers) as info:
            yield info
        return
    # Workers must not be daemonic: readers run HTML extraction in a child process with a time
    # limit, and daemonic processes may not have children.
    with dask.config.set({"distributed.worker.daemon": False}), LocalCluster(
            n_workers=cfg.n_workers, threads_per_worker=cfg.threads_per_worker, processes=True,
            memory_limit=cfg.memory_limit, dashboard_address=cfg.dashboard_address,
            host="127.0.0.1", silence_logs=logging.WARNING) as cluster:
        with Client(cluster) as client:
            _prepare_workers(client)
        yield ClusterInfo(cluster.scheduler_address, cluster.dashboard_link, cfg.n_workers)
