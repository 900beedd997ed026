"""Fine-tuning methods, one module each: every module of this package that ends with
``METHOD = Method(...)`` is a method (``full``, ``lora``, ``prefix``, ``ptuning``); the config
union ``MethodSpec`` and the registry are derived from those records, so adding a method is one
module. Adapters are saved apart from the base (safetensors, with the method and the base in
the metadata) and load onto it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Union

from lmforge.model.atomic import atomic_path
from lmforge.model.finetune.base import (
    Method,
    MethodConfig,
    count_trainable,
    trainable_state,
)
from lmforge.model.registry import discover
from pydantic import Field, TypeAdapter
from torch import nn

__all__ = ["METHODS", "MethodSpec", "apply_method", "count_trainable", "load_adapter",
           "parse_method", "save_adapter", "trainable_state", "unload"]


METHODS: dict[str, Method] = discover(__name__, __path__, Method, "fine-tuning method")
MethodSpec = Annotated[Union[tuple(m.config for m in METHODS.values())],  # noqa: UP007
                       Field(discriminator="kind")]
_SPEC: TypeAdapter[Any] = TypeAdapter(MethodSpec)


def parse_method(value: dict[str, Any] | MethodConfig) -> MethodConfig:
    return value if isinstance(value, MethodConfig) else _SPEC.validate_python(value)


def apply_method(model: nn.Module, spec: MethodConfig | dict[str, Any]) -> nn.Module:
    """Give ``model`` the method's adapter and freeze what it does not train (in place)."""
    cfg = parse_method(spec)
    METHODS[cfg.kind].apply(model, cfg)
    return model


def unload(model: nn.Module, spec: MethodConfig | dict[str, Any]) -> nn.Module | None:
    """The plain architecture with the adapter folded in, for methods that can (LoRA); None
    for those whose adapter stays a module of its own (prefix, P-tuning)."""
    cfg = parse_method(spec)
    fold = METHODS[cfg.kind].unload
    return fold(model) if fold is not None else None


def save_adapter(path: Path, model: nn.Module, spec: MethodConfig,
                 base: dict[str, Any]) -> Path:
    """The trained parameters alone, as safetensors; the metadata names the method (with its
    config) and the base model they belong on (``base``: path, step, registry version...)."""
    from safetensors.torch import save_file

    state = {n: t.contiguous().cpu() for n, t in trainable_state(model).items()}
    meta = {"method": json.dumps(spec.model_dump(mode="json")), "base": json.dumps(base),
            "format": "lmforge-adapter-1"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def load_adapter(model: nn.Module, path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Apply the adapter file's method to ``model`` (the base it was trained on) and load its
    parameters; returns the model and the adapter's ``base`` metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "lmforge-adapter-1":
        raise ValueError(f"{path} is not an lmforge adapter (no lmforge-adapter-1 metadata)")
    apply_method(model, json.loads(meta["method"]))
    state = load_file(str(path))
    missing = set(trainable_state(model)) - set(state)
    unexpected = set(state) - {n for n, _ in model.named_parameters()}
    if missing or unexpected:
        raise ValueError(f"adapter {path} does not fit this model: missing {sorted(missing)[:3]}"
                         f", unexpected {sorted(unexpected)[:3]}")
    model.load_state_dict(state, strict=False)
    return model, json.loads(meta["base"])
