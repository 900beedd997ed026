"""Shared fixtures: offline environment, the sample corpus, and one real Prefect server plus one
real MLflow server for the whole test session (started by the same code as
`lmforge services up`, in a temporary state folder on free ports)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.settings import SAMPLE_DIR, prepare_environment

prepare_environment()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE_DIR


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
    from infra import services

    running = services.up(lmforge_home, prefect_port=services.free_port(),
                          mlflow_port=services.free_port())
    yield running
    services.down(lmforge_home)
