"""Dask cluster specs: a LocalCluster by default, or an existing scheduler by address."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dask
from distributed import Client, LocalCluster
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)


class DaskConfig(BaseModel):
    """Where shard tasks run."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    address: str | None = Field(None, description="an existing scheduler, e.g. "
                                "tcp://10.0.0.5:8786; null starts a LocalCluster")
    n_workers: int = Field(2, ge=1, description="LocalCluster worker processes")
    threads_per_worker: int = Field(1, ge=1, description="threads per LocalCluster worker")
    memory_limit: str = Field("4GiB", description="memory per LocalCluster worker")
    dashboard_address: str = Field("127.0.0.1:8787", description="LocalCluster dashboard; "
                                   "a busy port falls back to a free one")


@dataclass(frozen=True)
class ClusterInfo:
    address: str
    dashboard_link: str | None
    workers: int


@contextmanager
def dask_cluster(cfg: DaskConfig) -> Iterator[ClusterInfo]:
    """Connect to ``cfg.address`` or start a LocalCluster for the duration of the block."""
    if cfg.address:
        with Client(cfg.address, timeout="60s") as client:
            workers = len(client.scheduler_info(n_workers=-1)["workers"])
            yield ClusterInfo(cfg.address, client.dashboard_link, workers)
        return
    # Workers must not be daemonic: readers run HTML extraction in a child process with a time
    # limit, and daemonic processes may not have children.
    with dask.config.set({"distributed.worker.daemon": False}), LocalCluster(
            n_workers=cfg.n_workers, threads_per_worker=cfg.threads_per_worker, processes=True,
            memory_limit=cfg.memory_limit, dashboard_address=cfg.dashboard_address,
            host="127.0.0.1", silence_logs=logging.WARNING) as cluster:
        yield ClusterInfo(cluster.scheduler_address, cluster.dashboard_link, cfg.n_workers)
