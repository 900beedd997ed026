"""Local services: a Prefect server (SQLite), an MLflow tracking server (SQLite backend, local
artifact folder) and a Prefect process worker polling the ``lmforge`` work pool (it runs the
deployments of ``lmforge deploy``), started as background processes whose pids, ports and logs
live in the state folder (``$LMFORGE_HOME``, default ~/.lmforge). Everything binds to
127.0.0.1.

``lmforge services up`` keeps both running across commands. When they are not up, a run starts
a temporary Prefect server on the same SQLite database for its own duration and writes MLflow
straight into the same SQLite store, so every run shows up once the services are started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from lmforge.infra.settings import lmforge_home, mlflow_backend, redact_text
from lmforge.model.atomic import write_json

START_TIMEOUT_S = 240.0  # two busy cores can need well over a minute for a first start
WORK_POOL = "lmforge"  # the process work pool the local worker polls


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}" if self.port else f"work pool {WORK_POOL!r}"

    @property
    def health_url(self) -> str:
        return f"{self.url}/api/health" if self.name == "prefect" else f"{self.url}/health"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api" if self.name == "prefect" else self.url


def state_dir(home: Path | None = None) -> Path:
    path = home or lmforge_home()
    path.mkdir(parents=True, exist_ok=True)
    return path


def mlflow_store(home: Path | None = None) -> tuple[str, str]:
    """(backend store URI, artifact destination) shared by the server and embedded use:
    SQLite + a local folder, or PostgreSQL + object storage (``infra.settings.mlflow_backend``)."""
    return mlflow_backend(state_dir(home))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def healthy(service: Service, timeout: float = 2.0) -> bool:
    if service.name == "worker":  # no endpoint: alive is healthy
        return service.pid is not None and _alive(service.pid)
    try:
        with urllib.request.urlopen(service.health_url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _command(name: str, port: int, home: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if name == "prefect":
        env.update(PREFECT_HOME=str(home / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api",
                   PREFECT_SERVER_API_HOST="127.0.0.1")
        env.pop("PREFECT_API_URL", None)
        return [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
                "--analytics-off", "--no-background"], env
    backend, artifacts = mlflow_store(home)
    # through the environment, not argv: a PostgreSQL URI may hold a password, and any local
    # user can read a process's command line
    env["MLFLOW_BACKEND_STORE_URI"] = backend
    return [_bin("mlflow"), "server",
            "--default-artifact-root", str(artifacts), "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1"], env


def _worker_command(prefect_api: str, mlflow_uri: str, home: Path
                    ) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, PREFECT_API_URL=prefect_api, MLFLOW_TRACKING_URI=mlflow_uri,
               LMFORGE_HOME=str(home), PREFECT_HOME=str(home / "prefect"))
    return [_bin("prefect"), "worker", "start", "--pool", WORK_POOL, "--type", "process",
            "--name", f"lmforge-{os.uname().nodename}"], env


def start(name: str, port: int, home: Path | None = None,
          endpoints: tuple[str, str] | None = None) -> Service:
    """Start one service in its own session (so ``stop`` can end its whole process group);
    the worker needs the (Prefect API, MLflow) ``endpoints`` it reports to."""
    home = state_dir(home)
    if name == "worker":
        assert endpoints is not None
        cmd, env = _worker_command(*endpoints, home)
    else:
        cmd, env = _command(name, port, home)
    log = (home / f"{name}.log").open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, cwd=home)
    return Service(name, port, proc.pid)


def wait_healthy(service: Service, timeout: float = START_TIMEOUT_S,
                 home: Path | None = None) -> None:
    """Poll the health endpoint; fail early, with the log tail, if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(service):
            return
        if service.pid is not None and not _alive(service.pid):
            break
        time.sleep(0.5)
    log = state_dir(home) / f"{service.name}.log"
    tail = redact_text(log.read_text(errors="replace")[-2000:]) if log.exists() else ""
    raise RuntimeError(f"{service.name} server did not become healthy at {service.health_url} "
                       f"within {timeout:.0f} s; its log ({log}) ends with:\n{tail}")


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(service: Service, timeout: float = 20.0) -> None:
    if service.pid is None or not _alive(service.pid):
        return
    try:
        os.killpg(service.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(service.pid):
        time.sleep(0.2)
    if _alive(service.pid):
        os.killpg(service.pid, signal.SIGKILL)


# --- the persistent pair (`lmforge services up|down|status`) ------------------------------

def _state_file(home: Path | None) -> Path:
    return state_dir(home) / "services.json"


def recorded(home: Path | None = None) -> dict[str, Service]:
    path = _state_file(home)
    if not path.exists():
        return {}
    return {name: Service(**data) for name, data in json.loads(path.read_text()).items()}


def running(home: Path | None = None) -> dict[str, Service]:
    """Recorded services that answer their health check."""
    return {name: s for name, s in recorded(home).items() if healthy(s)}


def up(home: Path | None = None, prefect_port: int = 4200, mlflow_port: int = 5000,
       timeout: float = START_TIMEOUT_S, worker: bool = True) -> dict[str, Service]:
    """Start whichever of the servers is not running and wait until they are healthy; then
    the process worker of the ``lmforge`` work pool (unless ``worker`` is false)."""
    current = running(home)
    services = dict(current)
    for name, port in (("prefect", prefect_port), ("mlflow", mlflow_port)):
        if name in services:
            continue
        if not port_free(port):
            raise RuntimeError(f"port {port} for the {name} server is taken by another program; "
                               f"pick another with --{name}-port")
        services[name] = start(name, port, home)
    write_json(_state_file(home), {n: asdict(s) for n, s in services.items()})
    for service in services.values():
        wait_healthy(service, timeout, home)
    if worker and "worker" not in services:
        services["worker"] = start("worker", 0, home, (services["prefect"].api_url,
                                                       services["mlflow"].api_url))
        write_json(_state_file(home), {n: asdict(s) for n, s in services.items()})
    return services


def down(home: Path | None = None) -> list[str]:
    stopped = []
    for name, service in recorded(home).items():
        stop(service)
        stopped.append(name)
    _state_file(home).unlink(missing_ok=True)
    return stopped


@contextmanager
def temporary_prefect_server(home: Path | None = None,
                             timeout: float = START_TIMEOUT_S) -> Iterator[Service]:
    """A Prefect server on a free port for the duration of one run (same SQLite database as
    ``services up``, so the run's history stays browsable later)."""
    service = start("prefect", free_port(), home)
    try:
        wait_healthy(service, timeout, home)
        yield service
    finally:
        stop(service)
