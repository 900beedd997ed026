"""Deployments: what runs on a schedule, through the ``lmforge`` process work pool (the worker
of ``lmforge services up``, or ``prefect worker start --pool lmforge`` on any machine).

- ``nightly-ingest`` (cron ``0 2 * * *``): incremental ingest of the config's sources (the
  landing area): new inputs only, deduped against every earlier batch, a new dataset version;
- ``weekly-train`` (cron ``0 4 * * 0``): tokenize the current dataset version, train, evaluate;
- ``curate`` (no schedule): one curate run on demand;
- ``serve`` (no schedule): the OpenAI-compatible server over the newest model, until cancelled.

Each deployment has a concurrency limit of 1 with the ENQUEUE strategy: a run that comes due
while the previous one is still going waits, so two nightly runs never overlap. Entry flows
take the config *path* (and optional output folder), which the worker reads at run time.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.flows.config import load_config
from lmforge.flows.curate import curate_corpus
from lmforge.flows.evaluate import evaluate_model
from lmforge.flows.ingest import ingest_new
from lmforge.flows.serve import serve_flow
from lmforge.flows.tokens import tokenize_corpus
from lmforge.flows.train import train_model
from lmforge.infra.cluster import dask_cluster
from lmforge.infra.services import WORK_POOL
from lmforge.tasks.ingest import Ledger
from prefect import Flow, flow
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect_dask import DaskTaskRunner

ROOT = Path(__file__).resolve().parents[1]  # the project: the worker loads flows from here


@flow(name="nightly-ingest")
def nightly_ingest(config: str, output: str | None = None) -> dict[str, Any]:
    cfg = load_config(Path(config), output=output)
    new = Ledger(cfg.output.resolve()).new_inputs(cfg.sources)
    if not new:  # a quiet night: no cluster
        return ingest_new(cfg, None, new)
    with dask_cluster(cfg.dask) as dask:
        return ingest_new.with_options(task_runner=DaskTaskRunner(address=dask.address))(
            cfg, None, new)


@flow(name="weekly-train")
def weekly_train(config: str, output: str | None = None) -> dict[str, Any]:
    cfg = load_config(Path(config), output=output)
    with dask_cluster(cfg.dask) as dask:
        runner = DaskTaskRunner(address=dask.address)
        tokens = tokenize_corpus.with_options(task_runner=runner)(cfg)
        model = train_model(cfg)
        metrics = evaluate_model.with_options(task_runner=runner)(cfg)
    return {"tokens": str(tokens), "model": str(model), "metrics": metrics}


@flow(name="curate-on-demand")
def curate_on_demand(config: str, output: str | None = None) -> str:
    cfg = load_config(Path(config), output=output)
    with dask_cluster(cfg.dask) as dask:
        return str(curate_corpus.with_options(task_runner=DaskTaskRunner(
            address=dask.address))(cfg))


@dataclass(frozen=True)
class Schedule:
    name: str
    flow: Flow[..., Any]
    cron: str | None
    description: str


SCHEDULES = (
    Schedule("nightly-ingest", nightly_ingest, "0 2 * * *",
             "New inputs of the landing area, deduped against every batch: a dataset version"),
    Schedule("weekly-train", weekly_train, "0 4 * * 0",
             "Tokenize the current dataset version, train, evaluate"),
    Schedule("curate", curate_on_demand, None, "One curate run on demand"),
    Schedule("serve", serve_flow, None,
             "Serve the newest model of the output folder over the OpenAI API (127.0.0.1:8000) "
             "until the run is cancelled"),
)


def ensure_work_pool(name: str = WORK_POOL) -> None:
    """Create the process work pool if the server does not have it yet."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=name, type="process"))


def deploy_all(config: Path, output: Path | None = None, *, pool: str = WORK_POOL,
               only: tuple[str, ...] | None = None,
               crons: dict[str, str | None] | None = None) -> dict[str, str]:
    """Register the deployments; returns name -> deployment id."""
    ensure_work_pool(pool)
    ids = {}
    for schedule in SCHEDULES:
        if only and schedule.name not in only:
            continue
        cron = (crons or {}).get(schedule.name, schedule.cron)
        entry = f"{Path(__file__).relative_to(ROOT)}:{schedule.flow.fn.__name__}"
        deployable = Flow.from_source(source=str(ROOT), entrypoint=entry)
        deployment_id = deployable.deploy(
            name=schedule.name, work_pool_name=pool, cron=cron,
            parameters={"config": str(config.resolve()),
                        "output": str(output.resolve()) if output else None},
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
            description=schedule.description, tags=["lmforge"], print_next_steps=False,
            build=False, push=False)
        ids[schedule.name] = str(deployment_id)
    return ids
