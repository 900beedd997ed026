"""Which model a command means: ``NAME@ALIAS`` or ``models:/NAME@ALIAS`` / ``models:/NAME/3``
(the MLflow registry), ``runs:/RUN_ID`` (the model that run registered), a pipeline output
folder (its newest stage: aligned, else fine-tuned, else trained), a folder holding
``model.pt``, or a ``model.pt``. Resolved to the local ``model.pt``, the ``tokenizer.json`` it
was trained with, and where it came from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.flows.tracking import tracking_uri

REGISTRY = re.compile(r"^(?:models:/)?(?P<name>[\w.\-]+)(?:@(?P<alias>[\w\-]+)|/(?P<v>\d+))$")


@dataclass(frozen=True)
class ResolvedModel:
    model: Path
    tokenizer: Path
    source: dict[str, Any] = field(default_factory=dict)


def resolve_model(ref: str, cache: Path | None = None) -> ResolvedModel:
    """``cache``: where registry artifacts are downloaded (default: a temporary folder)."""
    path = Path(ref).expanduser()
    if path.exists():
        return _local(path.resolve())
    if ref.startswith("runs:/"):
        return _from_run(ref.removeprefix("runs:/").strip("/"), cache)
    match = REGISTRY.match(ref)
    if match and (match["alias"] or match["v"] or ref.startswith("models:/")):
        return _registered(match["name"], match["alias"], match["v"], cache)
    raise FileNotFoundError(f"{ref!r}: no such file or folder, and not a registry reference "
                            "(NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID)")


def _tokenizer_near(model: Path) -> Path:
    for folder in (model.parent, *model.parents):
        for candidate in (folder / "tokenizer.json", folder / "tokenizer" / "tokenizer.json"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"no tokenizer.json beside {model} or in a parent's tokenizer/")


def _local(path: Path) -> ResolvedModel:
    if path.is_dir():
        stages = [path / "model.pt", *(path / s / "model.pt" for s in (
            "align/ppo", "align/safety", "align/dpo", "finetune", "model"))]
        found = [p for p in stages if p.is_file()]
        if not found:
            raise FileNotFoundError(f"{path}: no model.pt in it or in its stage folders "
                                    "(model/, finetune/, align/...)")
        path = found[0] if found[0].parent == path else max(found, key=lambda p: p.stat()
                                                             .st_mtime)
    return ResolvedModel(path, _tokenizer_near(path), {"path": str(path)})


def _registered(name: str, alias: str | None, version: str | None, cache: Path | None
                ) -> ResolvedModel:
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri())
    try:
        mv = (client.get_model_version_by_alias(name, alias) if alias
              else client.get_model_version(name, version or "1"))
    except MlflowException as err:
        raise FileNotFoundError(f"registered model {name}@{alias or version}: "
                                f"{err.message}") from err
    target = cache or Path(tempfile.mkdtemp(prefix="lmforge-model-"))
    uri = f"models:/{name}@{alias}" if alias else f"models:/{name}/{mv.version}"
    local = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=uri, dst_path=str(target / f"{name}-{mv.version}"),
        tracking_uri=tracking_uri()))
    model = next(local.rglob("model.pt"), None)
    tokenizer = next(local.rglob("tokenizer.json"), None)
    if model is None or tokenizer is None:
        raise FileNotFoundError(f"{uri}: the logged model holds no model.pt/tokenizer.json "
                                "(not an lmforge model?)")
    return ResolvedModel(model, tokenizer, {"registered_model": f"{name}/{mv.version}",
                                            "mlflow_run_id": mv.run_id})


def _from_run(run_id: str, cache: Path | None) -> ResolvedModel:
    from mlflow.tracking import MlflowClient

    tag = MlflowClient(tracking_uri()).get_run(run_id).data.tags.get(
        "lmforge.registered_model")
    if not tag:
        raise FileNotFoundError(f"run {run_id} registered no model")
    name, rest = tag.split("/", 1)
    return _registered(name, None, rest.split("@", 1)[0], cache)
