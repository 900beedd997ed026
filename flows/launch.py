"""Process set-up shared by the CLI and the tests: which Prefect API and MLflow store a run
talks to, and the Dask task runner of stage flows run on their own."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from lmforge.infra import services
from lmforge.infra.settings import env, prepare_environment, set_env, unset_env

log = logging.getLogger(__name__)


PERSISTENT_PREFECT_UI = "http://127.0.0.1:4200"  # `lmforge services up`'s default port


@dataclass(frozen=True)
class Endpoints:
    prefect_api: str
    mlflow_uri: str
    prefect_temporary: bool
    prefect_ui_url: str = ""

    @property
    def prefect_ui(self) -> str:
        """The UI that shows this run for good: with a temporary server (same database as
        ``services up``), the persistent server's, never the temporary port."""
        return self.prefect_ui_url or self.prefect_api.removesuffix("/api")


@contextmanager
def platform(home: Path | None = None) -> Iterator[Endpoints]:
    """Point this process (and the Dask workers it starts) at a Prefect API and an MLflow store.

    Order: what the environment already names; else the services of ``lmforge services up``;
    else a temporary Prefect server for this block and the embedded MLflow SQLite store.
    """
    prepare_environment()
    up = services.running(home)
    with ExitStack() as stack:
        temporary = False
        prefect_api = env("PREFECT_API_URL")
        if prefect_api is None and "prefect" in up:
            prefect_api = up["prefect"].api_url
        if prefect_api is None:
            log.info("Prefect services are not up: starting a temporary Prefect server "
                     "(start `lmforge services up` to keep one running)")
            prefect_api = stack.enter_context(services.temporary_prefect_server(home)).api_url
            temporary = True
        ui = prefect_api.removesuffix("/api")
        if temporary:
            persistent = services.recorded(home).get("prefect")
            ui = persistent.url if persistent else PERSISTENT_PREFECT_UI
        mlflow_uri = env("MLFLOW_TRACKING_URI")
        if mlflow_uri is None and "mlflow" in up:
            mlflow_uri = up["mlflow"].api_url
        if mlflow_uri is None:
            mlflow_uri = services.mlflow_store(home)[0]
        saved = {k: env(k) for k in ("PREFECT_API_URL", "PREFECT_UI_URL",
                                     "MLFLOW_TRACKING_URI")}
        stack.callback(_restore, saved)
        set_env("PREFECT_API_URL", prefect_api)  # inherited by LocalCluster workers
        set_env("PREFECT_UI_URL", ui)  # every link Prefect or lmforge prints or stores
        set_env("MLFLOW_TRACKING_URI", mlflow_uri)
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: prefect_api,
                                                        PREFECT_UI_URL: ui}))
        stack.callback(_drain_prefect_workers)  # runs before the temporary server stops
        yield Endpoints(prefect_api, mlflow_uri, temporary, ui)


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            unset_env(key)
        else:
            set_env(key, value)


def _drain_prefect_workers(timeout: float = 30.0) -> None:
    """Send buffered Prefect logs and events while the API is still up."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=timeout)
    EventsWorker.drain_all(timeout=timeout)
