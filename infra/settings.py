"""Process environment for lmforge: the only place (with the CLI, and ``tasks.credentials`` for
secrets a config refers to) that reads environment variables. Sets offline-safe defaults before
Prefect, MLflow, presidio or HF libraries load, and hides credentials in log records."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    install_log_redaction()


def lmforge_home() -> Path:
    """State folder of local services and embedded stores (``$LMFORGE_HOME`` or ~/.lmforge)."""
    return Path(os.environ.get("LMFORGE_HOME", Path.home() / ".lmforge")).expanduser()


def env(name: str) -> str | None:
    return os.environ.get(name) or None


def set_env(name: str, value: str) -> None:
    os.environ[name] = value


def unset_env(name: str) -> None:
    os.environ.pop(name, None)


SECRET_KEY = re.compile(r"(^|[_-])(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
                        r"credentials?|private[_-]?key|salt)($|[_-])", re.IGNORECASE)
URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@",
                          re.IGNORECASE)


def redact(key: str, value: str) -> str:
    """What may be logged of a setting: secrets by key name become ``***``, credentials inside
    URLs (``scheme://user:pass@host``) become ``scheme://***@host``. Applied to everything that
    leaves for MLflow params/tags and Prefect artifacts."""
    if SECRET_KEY.search(key.rsplit(".", 1)[-1]):
        return "***" if value not in ("", "None", "null") else value
    return redact_text(value)


def redact_text(text: str) -> str:
    """Free text (a log line, an error) with the credentials of every URL in it hidden."""
    return URL_USERINFO.sub(r"\g<scheme>***@", text) if "@" in text else text


def _redacting(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: left for logging's own error report
            return record
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    make.lmforge_redacts = True  # type: ignore[attr-defined]
    return make


def install_log_redaction() -> None:
    """Every log record of this process, whoever emits it (lmforge, Prefect's API log handler,
    MLflow, Dask), has URL credentials hidden before any handler sees it. Idempotent; Dask
    workers get it through :class:`RedactLogsPlugin`, torchrun ranks at start-up."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "lmforge_redacts", False):
        logging.setLogRecordFactory(_redacting(current))


def mlflow_backend(home: Path) -> tuple[str, str]:
    """(backend store URI, artifact destination) of the MLflow server: SQLite and a local
    folder under ``home``, or PostgreSQL and object storage from
    ``LMFORGE_MLFLOW_BACKEND_URI`` / ``LMFORGE_MLFLOW_ARTIFACTS`` (credentials stay in the
    environment: the URI's password, ``AWS_*`` keys; never in logs)."""
    root = home / "mlflow"
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    return (env("LMFORGE_MLFLOW_BACKEND_URI") or f"sqlite:///{root / 'mlflow.db'}",
            env("LMFORGE_MLFLOW_ARTIFACTS") or str(root / "artifacts"))
