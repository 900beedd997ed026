"""The record every compression method registers, and what the methods share: which layers
they touch and how many bytes a model's weights take."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

State = dict[str, torch.Tensor]


class CompressConfig(BaseModel):
    """Base of every method's config; ``kind`` names the method."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str


def _keep(state: State) -> State:
    return state


@dataclass(frozen=True)
class Compression:
    """One compression method.

    ``apply(model, cfg)`` compresses a float model in place. ``rebuild(model, cfg, state)``
    gives a freshly built model the modules a saved compressed ``state`` fits (shapes, ties),
    so ``load_state_dict`` works; ``encode``/``decode`` turn the in-memory state into the
    stored one and back (a pruned weight stored as a bit mask and its kept values).
    ``recover``: the method is followed by a short fine-tune (pruning, sharing), during
    which ``hold(model)`` keeps what the method decided (pruned weights stay zero).
    ``teacher``: the method trains against the uncompressed model through the trainer
    (distillation)."""

    kind: str
    config: type[CompressConfig]
    apply: Callable[[nn.Module, CompressConfig], None]
    rebuild: Callable[[nn.Module, CompressConfig, State], None]
    encode: Callable[[State], State] = _keep
    decode: Callable[[State], State] = _keep
    recover: bool = False
    hold: Callable[[nn.Module], None] | None = None
    teacher: bool = False  # trained against the uncompressed model (distillation)


def target_linears(model: nn.Module) -> list[tuple[str, nn.Module, str, nn.Linear]]:
    """(qualified name, parent, attribute, layer) of every linear layer inside the blocks:
    attention projections and MLPs. Embeddings and the (tied) LM head stay as they are."""
    found = []
    for name, module in model.named_modules():
        if name.split(".")[0] not in ("layers", "encoder"):
            continue
        for attr, child in module.named_children():
            if isinstance(child, nn.Linear):
                found.append((f"{name}.{attr}", module, attr, child))
    return found


def stored_bytes(state: State) -> int:
    """Bytes of a state's tensors, a storage shared by several names counted once."""
    seen: dict[int, int] = {}
    for t in state.values():
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
    return sum(seen.values())
