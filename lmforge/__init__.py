"""lmforge: curated corpora to trained, evaluated and tracked language models.

The distribution installs one namespace over the repository's top-level folders (see
pyproject.toml): ``lmforge.flows`` (Prefect flows and the CLI), ``lmforge.tasks`` (the work as
plain functions), ``lmforge.model`` (torch models and the trainer), ``lmforge.infra`` (services,
clusters, the sample corpus).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lmforge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
