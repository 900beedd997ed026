"""Process environment for lmforge: the only place (with the CLI) that reads environment
variables. Sets offline-safe defaults before Prefect, MLflow, presidio or HF libraries load."""

from __future__ import annotations

import os
from pathlib import Path

SAMPLE_DIR = Path(__file__).parent / "sample"
DEFAULT_CONFIG = SAMPLE_DIR / "pipeline.yaml"

# Defaults that keep runs offline, quiet and patient on small machines; a value the user has
# already set always wins.
OFFLINE_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # a temporary Prefect server can take > 20 s (Prefect's default) to start on 2 busy cores
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_API_REQUEST_TIMEOUT": "120",
    # tldextract (used by presidio's e-mail and URL recognisers) must use its bundled list
    "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false",
    "TOKENIZERS_PARALLELISM": "false",
    "GIT_PYTHON_REFRESH": "quiet",
}


def prepare_environment() -> None:
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)


def lmforge_home() -> Path:
    """State folder of local services and embedded stores (``$LMFORGE_HOME`` or ~/.lmforge)."""
    return Path(os.environ.get("LMFORGE_HOME", Path.home() / ".lmforge")).expanduser()


def env(name: str) -> str | None:
    return os.environ.get(name) or None


def set_env(name: str, value: str) -> None:
    os.environ[name] = value


def unset_env(name: str) -> None:
    os.environ.pop(name, None)
