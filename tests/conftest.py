"""Shared fixtures: offline environment, the sample corpus, and one real Prefect server plus one
real MLflow server for the whole test session (started by the same code as
`lmforge services up`, in a temporary state folder on free ports)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lmforge.infra.settings import SAMPLE_DIR, prepare_environment

prepare_environment()


REPO = Path(__file__).resolve().parents[1]
STRAY_STORES = ("mlflow.db", "mlruns")  # what MLflow writes when a call names no store


@pytest.fixture(scope="session", autouse=True)
def no_stray_mlflow_store() -> Iterator[None]:
    """Every MLflow call of lmforge names the run's store: none may fall back to MLflow's
    default of a ``mlflow.db`` or ``mlruns/`` in the working folder."""
    before = {name for name in STRAY_STORES if (REPO / name).exists()}
    yield
    stray = {name for name in STRAY_STORES if (REPO / name).exists()} - before
    assert not stray, f"an MLflow call without a tracking URI wrote {sorted(stray)} in {REPO}"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def chat_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small byte-level BPE with lmforge's special tokens (roles included), trained on the
    sample instruction, preference and safety sets: what the tuning tests tokenize with."""
    from lmforge.tasks.tokenizer import special_tokens
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = [line for folder in ("instruct", "preference", "safety")
             for f in sorted((SAMPLE_DIR / folder).iterdir())
             for line in f.read_text().splitlines()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=600, special_tokens=special_tokens(8), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path_factory.mktemp("chat-tokenizer") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    """A writable copy of the sample corpus."""
    dest = tmp_path / "sample"
    shutil.copytree(SAMPLE_DIR, dest)
    return dest


@pytest.fixture(scope="session")
def jigsaw_csv() -> Path:
    """The 282 labelled Jigsaw comments kept beside the repository (../shared/data)."""
    path = Path(__file__).resolve().parents[2] / "shared/data/jigsaw-sample/train.csv"
    if not path.exists():
        pytest.skip(f"labelled toxicity sample not found at {path}")
    return path


@pytest.fixture(scope="session")
def lmforge_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("lmforge-home")
    old = os.environ.get("LMFORGE_HOME")
    os.environ["LMFORGE_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("LMFORGE_HOME", None)
    else:
        os.environ["LMFORGE_HOME"] = old


@pytest.fixture(scope="session")
def services_up(lmforge_home: Path) -> Iterator[dict]:
    """Real Prefect and MLflow servers for the session."""
    from lmforge.infra import services

    running = services.up(lmforge_home, prefect_port=services.free_port(),
                          mlflow_port=services.free_port())
    yield running
    services.down(lmforge_home)


class ExternalDask:
    """A `dask scheduler` and `dask worker` processes started by hand, as on a real cluster
    (workers without a nanny: a killed worker stays dead, as after a lost node)."""

    def __init__(self, env: dict[str, str], log_dir: Path, workers: int = 2) -> None:
        from lmforge.infra.services import free_port

        self.env, self.log_dir = env, log_dir
        self.address = f"tcp://127.0.0.1:{free_port()}"
        port = self.address.rsplit(":", 1)[1]
        self.scheduler = self._spawn("scheduler", ["scheduler", "--host", "127.0.0.1", "--port",
                                                   port, "--dashboard-address", ":0"])
        self.workers: list[subprocess.Popen] = []
        for _ in range(workers):
            self.workers.append(self.add_worker())
        self.wait_for(workers)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        dask = str(Path(sys.executable).parent / "dask")
        log = (self.log_dir / f"{name}.log").open("ab")
        return subprocess.Popen([dask, *args], env=self.env, stdout=log, stderr=log)

    def add_worker(self) -> subprocess.Popen:
        n = len(self.workers)
        return self._spawn(f"worker-{n}", ["worker", self.address, "--nthreads", "1",
                                           "--no-nanny", "--memory-limit", "4GiB",
                                           "--name", f"w{n}", "--dashboard-address", ":0"])

    def wait_for(self, workers: int, timeout: float = 120.0) -> None:
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=timeout)

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def external_dask(services_up, tmp_path: Path) -> Iterator[ExternalDask]:
    env = {**os.environ, "PREFECT_API_URL": services_up["prefect"].api_url,
           "MLFLOW_TRACKING_URI": services_up["mlflow"].api_url}
    cluster = ExternalDask(env, tmp_path)
    yield cluster
    cluster.close()
