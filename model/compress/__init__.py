"""Compression methods: every module of this package ending with ``METHOD = Compression(...)``
(or ``METHODS = (...)`` for a family, such as the quantizers) registers them: ``int8-dynamic``,
``int8-weight``, ``int4-weight``, ``magnitude``, ``structured``, ``lowrank``, ``share``,
``distill``. The config union ``CompressSpec`` and the registry are derived from those
records, so adding a method is one module. A compressed model is saved as a ``model.pt``
naming its methods and loads back through :func:`restore` (``model.checkpoint`` does it for
every ``model.pt``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Union

from lmforge.model.compress.base import (
    CompressConfig,
    Compression,
    State,
    stored_bytes,
    target_linears,
)
from lmforge.model.registry import discover
from pydantic import Field, TypeAdapter
from torch import nn

__all__ = ["COMPRESSIONS", "CompressSpec", "Compression", "compress", "encoded_state",
           "parse_compression", "restore", "stored_bytes", "target_linears"]


COMPRESSIONS: dict[str, Compression] = discover(__name__, __path__, Compression, "compression")
CompressSpec = Annotated[Union[tuple(m.config for m in COMPRESSIONS.values())],  # noqa: UP007
                         Field(discriminator="kind")]
_SPEC: TypeAdapter[Any] = TypeAdapter(CompressSpec)


def parse_compression(value: dict[str, Any] | CompressConfig) -> CompressConfig:
    return value if isinstance(value, CompressConfig) else _SPEC.validate_python(value)


def compress(model: nn.Module, spec: CompressConfig | dict[str, Any]) -> nn.Module:
    """Apply one method to ``model`` in place (and return it)."""
    cfg = parse_compression(spec)
    COMPRESSIONS[cfg.kind].apply(model, cfg)
    return model


def encoded_state(model: nn.Module, specs: Sequence[dict[str, Any]]) -> State:
    """The state as stored: each method's encoding applied in order."""
    state = dict(model.state_dict())
    for spec in specs:
        state = COMPRESSIONS[parse_compression(spec).kind].encode(state)
    return state


def restore(model: nn.Module, specs: Sequence[dict[str, Any]], state: State) -> nn.Module:
    """A freshly built ``model`` given the modules of the methods that made ``state``, then
    the stored weights."""
    for spec in reversed(specs):
        state = COMPRESSIONS[parse_compression(spec).kind].decode(state)
    for spec in specs:
        cfg = parse_compression(spec)
        COMPRESSIONS[cfg.kind].rebuild(model, cfg, state)
    model.load_state_dict(state)
    return model
